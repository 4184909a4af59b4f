"""The bug zoo: small functions with known, deliberate gradient bugs, and correct controls.

Most cases are custom `torch.autograd.Function`s with a hand-written backward; some are
plain autograd code with a `.detach()`/`.data` slip or a stale saved tensor; some are jax
`custom_vjp` functions and numpy functions with hand-written gradients. Every case has a
`reference` (the same forward with trusted derivatives), so `Case.buggy` can be confirmed
independently with `benchmarks.ground_truth.case_truth`.

Categories follow issue 2: sign/factor/transpose, reused input, reduction, element/region,
tiny gradients, huge values, kinks, stale saved tensors, detach/.data, nondeterministic
backward, second order, hard float32 (correct functions that are numerically hard in
float32), and correct controls.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .cases import Case, Problem

__all__ = ["zoo_cases"]

Tensor = torch.Tensor
_DT = {"float64": torch.float64, "float32": torch.float32}


def _tensor(values: np.ndarray, dtype: str, *, requires_grad: bool = True) -> Tensor:
    """A leaf tensor holding `values` (computed in float64, then rounded to `dtype`)."""
    return torch.tensor(np.asarray(values, dtype=np.float64), dtype=_DT[dtype]).requires_grad_(requires_grad)


def _normal(seed: int, shape: Sequence[int], *, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
    return shift + scale * np.random.default_rng(seed).standard_normal(tuple(shape))


def _uniform(seed: int, shape: Sequence[int], low: float, high: float) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, tuple(shape))


def custom_function(
    name: str, forward: Callable[..., Tensor], backward: Callable[..., Any]
) -> Callable[..., Tensor]:
    """A `torch.autograd.Function` computing `forward(*xs)` with backward `backward(g, *xs)`.

    `backward` returns one gradient per input (a tensor, or a tuple for several inputs).
    It is written with differentiable torch ops on the saved inputs, so it can itself be
    differentiated (second order) unless the case deliberately breaks that.
    """

    def fwd(ctx: Any, *xs: Tensor) -> Tensor:
        ctx.save_for_backward(*xs)
        return forward(*xs)

    def bwd(ctx: Any, g: Tensor) -> Any:
        out = backward(g, *ctx.saved_tensors)
        return out if isinstance(out, tuple) else (out,)

    cls = type(name, (torch.autograd.Function,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd)})
    return cls.apply


def _torch_case(
    name: str,
    category: str,
    buggy: bool,
    fn: Callable[..., Tensor],
    reference: Callable[..., Tensor],
    inputs: Callable[[str], tuple[Tensor, ...]],
    description: str = "",
    *,
    order: int = 1,
) -> Case:
    return Case(
        name=name,
        suite="zoo",
        category=category,
        framework="torch",
        buggy=buggy,
        build=lambda dtype: Problem(fn, inputs(dtype)),
        reference=lambda dtype: Problem(reference, inputs(dtype)),
        order=order,
        description=description,
    )


def _unary(name: str, category: str, buggy: bool, forward: Callable[[Tensor], Tensor],
           backward: Callable[[Tensor, Tensor], Tensor], inputs: Callable[[str], tuple[Tensor, ...]],
           description: str, *, order: int = 1) -> Case:
    return _torch_case(name, category, buggy, custom_function(name, forward, backward), forward, inputs,
                       order=order, description=description)


def _vec(seed: int, n: int, **kw: float) -> Callable[[str], tuple[Tensor, ...]]:
    return lambda dtype: (_tensor(_normal(seed, (n,), **kw), dtype),)


def _torch_sign_factor_transpose() -> list[Case]:
    cat = "sign/factor/transpose"
    cases = [
        _unary("sin_wrong_sign", cat, True, torch.sin, lambda g, x: -g * torch.cos(x), _vec(1, 5),
               "sin with backward -cos"),
        _unary("exp_factor_two", cat, True, torch.exp, lambda g, x: 2 * g * torch.exp(x), _vec(2, 5),
               "exp with backward 2 exp"),
        _unary("sigmoid_wrong_derivative", cat, True, torch.sigmoid,
               lambda g, x: g * torch.sigmoid(x) * (1 + torch.sigmoid(x)), _vec(3, 6),
               "sigmoid with backward s(1+s) instead of s(1-s)"),
        _unary("tanh_wrong_derivative", cat, True, torch.tanh, lambda g, x: g * (1 + torch.tanh(x) ** 2),
               _vec(4, 6), "tanh with backward 1+t^2"),
        _unary("log_wrong_power", cat, True, torch.log, lambda g, x: g / x**2,
               lambda dtype: (_tensor(_uniform(5, (6,), 0.5, 3.0), dtype),), "log with backward 1/x^2"),
        _unary("softmax_missing_term", cat, True, lambda x: torch.softmax(x, 0),
               lambda g, x: g * torch.softmax(x, 0), _vec(6, 7),
               "softmax backward s*g without the -s*sum(s*g) term"),
        _unary("logsumexp_correct", "control", False, lambda x: torch.logsumexp(x, 0),
               lambda g, x: g * torch.softmax(x, 0), _vec(7, 8), "logsumexp, correct hand-written backward"),
        _unary("softmax_correct", "control", False, lambda x: torch.softmax(x, 0),
               lambda g, x: torch.softmax(x, 0) * (g - (g * torch.softmax(x, 0)).sum()), _vec(8, 7),
               "softmax, correct hand-written backward"),
    ]
    square = lambda dtype: (_tensor(_normal(9, (3, 3)), dtype), _tensor(_normal(10, (3, 3)), dtype))
    rect = lambda dtype: (_tensor(_normal(11, (3, 4)), dtype), _tensor(_normal(12, (4, 2)), dtype))
    cases.append(_torch_case(
        "matmul_transposed", cat, True,
        custom_function("matmul_transposed", torch.matmul, lambda g, a, b: (g @ b, a.T @ g)),
        torch.matmul, square, "a @ b with grad_a = g @ b (missing transpose)"))
    cases.append(_torch_case(
        "matmul_correct", "control", False,
        custom_function("matmul_correct", torch.matmul, lambda g, a, b: (g @ b.T, a.T @ g)),
        torch.matmul, rect, "a @ b, correct hand-written backward"))
    return cases


def _torch_reused_input() -> list[Case]:
    cat = "reused input"
    two = lambda dtype: (_tensor(_normal(20, (5,)), dtype), _tensor(_normal(21, (5,)), dtype))
    graph = lambda a, b: (a + b) * (b + 1)
    return [
        _torch_case("graph_e_missing_path", cat, True,
                    custom_function("graph_e_missing_path", graph, lambda g, a, b: (g * (b + 1), g * (a + b))),
                    graph, two, "e=(a+b)(b+1): de/db keeps only the (a+b) path"),
        _torch_case("graph_e_correct", "control", False,
                    custom_function("graph_e_correct", graph,
                                    lambda g, a, b: (g * (b + 1), g * (b + 1) + g * (a + b))),
                    graph, two, "e=(a+b)(b+1): both paths accumulated"),
        _unary("x_sin_x_missing_product_term", cat, True, lambda x: x * torch.sin(x),
               lambda g, x: g * torch.sin(x), _vec(22, 6), "x sin x with backward sin x (x used twice)"),
        _torch_case("mul_reused_input_correct", "control", False,
                    lambda x: custom_function("mul_correct", torch.mul, lambda g, a, b: (g * b, g * a))(x, x),
                    lambda x: x * x, _vec(23, 6),
                    "mul(x, x) with a correct two-input backward: autograd adds both gradients"),
    ]


def _torch_reduction() -> list[Case]:
    cat = "reduction"
    square = lambda dtype: (_tensor(_normal(30, (4, 4)), dtype),)
    return [
        _unary("sum_dim1_wrong_axis", cat, True, lambda x: x.sum(1), lambda g, x: g.unsqueeze(0).expand(4, 4),
               square, "x.sum(1) whose backward broadcasts g along the wrong axis"),
        _unary("mean_backward_as_sum", cat, True, lambda x: x.mean(0), lambda g, x: g.unsqueeze(0).expand(4, 4),
               square, "x.mean(0) whose backward forgets the 1/n"),
        _unary("sum_backward_as_mean", cat, True, lambda x: x.sum(), lambda g, x: (g / x.numel()).expand(4, 4),
               square, "x.sum() whose backward divides by n"),
        _unary("mean_dim_correct", "control", False, lambda x: x.mean(1),
               lambda g, x: g.unsqueeze(1).expand(4, 4) / 4, square, "x.mean(1), correct backward"),
    ]


def _one_element(g: Tensor, index: int, factor: float) -> Tensor:
    scale = torch.ones(g.numel(), dtype=g.dtype)
    scale[index] = factor
    return g * scale.reshape(g.shape)


def _torch_element_region() -> list[Case]:
    cat = "element/region"

    def region_bwd(g: Tensor, x: Tensor) -> Tensor:
        full = g * (torch.sin(x) + x * torch.cos(x))
        wrong = g * torch.sin(x)
        mask = torch.zeros_like(x, dtype=torch.bool)
        mask[:2, :2] = True
        return torch.where(mask, wrong, full)

    def cumsum_off_by_one(g: Tensor, x: Tensor) -> Tensor:
        # The exclusive reverse scan: every element misses its own cotangent.
        return g.flip(0).cumsum(0).flip(0) - g

    return [
        _unary("elementwise_one_of_2000", cat, True, lambda x: x**3,
               lambda g, x: _one_element(g * 3 * x**2, 1234, 1.01), _vec(40, 2000),
               "x^3 on 2000 elements; gradient of element 1234 off by 1%"),
        _unary("scalar_one_of_4096", cat, True, lambda x: torch.log1p(x**2).sum(),
               lambda g, x: _one_element(g * 2 * x / (1 + x**2), 2049, 1.01),
               lambda dtype: (_tensor(_normal(41, (64, 64)), dtype),),
               "sum log(1+x^2) over 64x64; one element's gradient off by 1%"),
        _unary("region_missing_term", cat, True, lambda x: x * torch.sin(x), region_bwd,
               lambda dtype: (_tensor(_normal(42, (8, 8)), dtype),),
               "x sin x on 8x8; the top-left 2x2 block misses the product-rule term"),
        _unary("cumsum_off_by_one", cat, True, lambda x: x.cumsum(0), cumsum_off_by_one, _vec(43, 10),
               "cumsum whose backward is the exclusive reverse scan"),
        _unary("one_of_2000_correct", "control", False, lambda x: x**3, lambda g, x: g * 3 * x**2,
               _vec(40, 2000), "x^3 on 2000 elements, correct backward"),
    ]


def _torch_tiny_huge() -> list[Case]:
    tiny, huge = "tiny gradients", "huge values"
    return [
        _unary("tiny_gradient_factor_two", tiny, True, lambda x: 1e-6 * torch.sin(x),
               lambda g, x: 2e-6 * g * torch.cos(x), _vec(50, 5),
               "1e-6 sin x with a factor-2 error in a gradient of size 1e-6"),
        _unary("tiny_gradient_sign", tiny, True, lambda x: 1e-7 * (x**2).sum(), lambda g, x: -2e-7 * g * x,
               _vec(51, 5), "1e-7 sum x^2 with the gradient's sign flipped"),
        _unary("tiny_inputs_factor", tiny, True, lambda x: x**3, lambda g, x: g * 2 * x**2,
               _vec(52, 5, scale=1e-3), "x^3 at x ~ 1e-3 (gradient ~ 3e-6) with 2x^2 instead of 3x^2"),
        _unary("tiny_gradient_correct", "control", False, lambda x: 1e-6 * torch.sin(x),
               lambda g, x: 1e-6 * g * torch.cos(x), _vec(50, 5), "1e-6 sin x, correct backward"),
        _unary("huge_values_0.1pct", huge, True, lambda x: x**2, lambda g, x: 1.001 * g * 2 * x,
               _vec(53, 6, scale=1e3), "x^2 at x ~ 1e3 with a 0.1% error in the gradient"),
        _unary("huge_scale_sign_one_element", huge, True, lambda x: 1e8 * torch.sin(x),
               lambda g, x: _one_element(1e8 * g * torch.cos(x), 3, -1.0), _vec(54, 6),
               "1e8 sin x with one element's gradient negated"),
        _unary("huge_exp_correct", "control", False, torch.exp, lambda g, x: g * torch.exp(x),
               lambda dtype: (_tensor(_uniform(55, (6,), 15.0, 20.0), dtype),),
               "exp x at x in [15, 20] (values up to 5e8), correct"),
        _unary("huge_sum_correct", "control", False, lambda x: (x**2).sum(), lambda g, x: 2 * g * x,
               _vec(56, 1000, scale=1e3), "sum x^2 over 1000 elements of size 1e3 (value 1e9), correct"),
    ]


def _near(values: np.ndarray, index: int, value: float) -> np.ndarray:
    values = values.copy()
    values.flat[index] = value
    return values


def _torch_kinks() -> list[Case]:
    cat = "kinks"
    relu_in = lambda dtype: (_tensor(_near(_near(_normal(60, (6,)), 1, 1e-8), 4, -5e-8), dtype),)

    def wrong_mask(g: Tensor, x: Tensor) -> Tensor:
        return g * (x > -0.5).to(g.dtype)

    def leaky(x: Tensor) -> Tensor:
        return torch.nn.functional.leaky_relu(x, 0.01)

    def two(dtype: str) -> tuple[Tensor, ...]:
        a = _normal(61, (5,))
        b = a.copy()
        b[2] += 2e-8
        b[[0, 1, 3, 4]] = _normal(62, (4,))
        return _tensor(a, dtype), _tensor(b, dtype)

    kink_in = lambda dtype: (_tensor(np.array([-1.3, -0.3, -0.2, 3e-8, 0.4, 1.1]), dtype),)
    return [
        _torch_case("relu_near_kink_correct", "kink control", False, torch.relu, torch.relu, relu_in,
                    description="relu with inputs 1e-8 and -5e-8, correct"),
        _torch_case("abs_near_kink_correct", "kink control", False, torch.abs, torch.abs,
                    lambda dtype: (_tensor(_near(_normal(63, (6,)), 2, 3e-8), dtype),),
                    description="abs with an input 3e-8, correct"),
        _torch_case("maximum_near_tie_correct", "kink control", False, torch.maximum, torch.maximum, two,
                    description="maximum(a, b) with a - b = -2e-8 at one element, correct"),
        _torch_case("clamp_near_bound_correct", "kink control", False,
                    lambda x: torch.clamp(x, -1.0, 1.0), lambda x: torch.clamp(x, -1.0, 1.0),
                    lambda dtype: (_tensor(_near(_normal(64, (6,)), 0, 1.0 - 4e-8), dtype),),
                    description="clamp(x, -1, 1) with an input 4e-8 below the bound, correct"),
        _unary("relu_wrong_mask", cat, True, torch.relu, wrong_mask, kink_in,
               "relu whose backward passes gradient for x > -0.5 (inputs near the kink too)"),
        _unary("leaky_relu_wrong_slope", cat, True, leaky,
               lambda g, x: g * torch.where(x > 0, torch.ones_like(x), 0.1 * torch.ones_like(x)), kink_in,
               "leaky_relu(0.01) whose backward uses slope 0.1 (inputs near the kink too)"),
    ]


def _torch_stale_saved() -> list[Case]:
    cat = "stale saved tensor"

    class SquareKeepsAttr(torch.autograd.Function):
        # Saves its input as a plain attribute, so autograd's version counter cannot see
        # the caller's in-place update below.
        @staticmethod
        def forward(ctx: Any, x: Tensor) -> Tensor:
            ctx.x = x
            return x**2

        @staticmethod
        def backward(ctx: Any, g: Tensor) -> Tensor:
            return 2 * g * ctx.x

    class ExpKeepsOutput(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Tensor) -> Tensor:
            out = torch.exp(x)
            ctx.out = out
            return out

        @staticmethod
        def backward(ctx: Any, g: Tensor) -> Tensor:
            return g * ctx.out

    class SquareSaved(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Tensor) -> Tensor:
            ctx.save_for_backward(x)
            return x**2

        @staticmethod
        def backward(ctx: Any, g: Tensor) -> Tensor:
            (x,) = ctx.saved_tensors
            return 2 * g * x

    def input_updated(x: Tensor) -> Tensor:
        buf = x * 1.0
        y = SquareKeepsAttr.apply(buf)
        buf.add_(1.0)
        return y + buf

    def output_updated(x: Tensor) -> Tensor:
        y = ExpKeepsOutput.apply(x)
        return y.add_(1.0) * 1.0

    def correct(x: Tensor) -> Tensor:
        buf = x * 1.0
        y = SquareSaved.apply(buf)
        return y + (buf + 1.0)

    return [
        _torch_case("stale_input_updated_in_place", cat, True, input_updated, lambda x: x**2 + x + 1.0,
                    _vec(70, 6), "a saved input is updated in place after the forward"),
        _torch_case("stale_output_updated_in_place", cat, True, output_updated, lambda x: torch.exp(x) + 1.0,
                    _vec(71, 6), "a saved output is updated in place after the forward"),
        _torch_case("saved_out_of_place_correct", "control", False, correct, lambda x: x**2 + x + 1.0,
                    _vec(70, 6), "the same function saving with save_for_backward, no in-place update"),
    ]


def _torch_detach_data() -> list[Case]:
    cat = "detach/.data"
    return [
        _torch_case("detach_in_product", cat, True, lambda x: x * x.detach(), lambda x: x * x, _vec(80, 6),
                    "x * x.detach() written for x^2"),
        _torch_case("data_in_normalisation", cat, True, lambda x: x / torch.linalg.norm(x.data),
                    lambda x: x / torch.linalg.norm(x), _vec(81, 6), "x / ||x.data|| written for x / ||x||"),
        _torch_case("detach_in_softmax_denominator", cat, True,
                    lambda x: torch.exp(x) / torch.exp(x).sum().detach(), lambda x: torch.softmax(x, 0),
                    _vec(82, 6), "exp(x) / sum(exp(x)).detach() written for softmax"),
        _torch_case("data_update_of_constant_correct", "control", False,
                    lambda x, c: x * c.detach(), lambda x, c: x * c.detach(),
                    lambda dtype: (_tensor(_normal(83, (6,)), dtype),
                                   _tensor(_normal(84, (6,)), dtype, requires_grad=False)),
                    "x * c with c a constant that does not require grad, correct"),
    ]


def _torch_nondeterministic() -> list[Case]:
    cat = "nondeterministic"
    gen = torch.Generator().manual_seed(90)

    def noisy(g: Tensor, x: Tensor) -> Tensor:
        noise = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.dtype)
        return g * torch.cos(x) * (1 + 1e-3 * noise)

    state: dict[str, Tensor] = {}

    def accumulating(g: Tensor, x: Tensor) -> Tensor:
        # The classic missing zero_grad: a persistent buffer keeps every earlier gradient.
        grad = g * torch.cos(x)
        acc = state.get("acc")
        acc = grad if acc is None or acc.shape != grad.shape or acc.dtype != grad.dtype else acc + grad
        state["acc"] = acc.detach()
        return acc

    return [
        _unary("nondeterministic_backward", cat, True, torch.sin, noisy, _vec(91, 6),
               "sin whose backward carries 1e-3 relative random noise"),
        _unary("accumulating_backward", cat, True, torch.sin, accumulating, _vec(92, 6),
               "sin whose backward returns the running sum of every gradient so far"),
    ]


def _torch_second_order() -> list[Case]:
    cat = "second order"
    two = lambda dtype: (_tensor(_normal(100, (4,)), dtype), _tensor(_normal(101, (4,)), dtype))

    cos_wrong = custom_function("cos_wrong_backward", torch.cos, lambda g, x: g * torch.sin(x))
    return [
        _unary("cube_detach_in_backward", cat, True, lambda x: x**3, lambda g, x: 3 * g * x.detach() ** 2,
               _vec(102, 5), "x^3 whose backward uses x.detach(): first order right, second order lost",
               order=2),
        _unary("sin_backward_with_wrong_cos", cat, True, torch.sin, lambda g, x: g * cos_wrong(x),
               _vec(103, 5), "sin whose backward calls a cos with backward +sin", order=2),
        _torch_case("mixed_partial_lost", cat, True,
                    custom_function("x2y_mixed_partial_lost", lambda x, y: x**2 * y,
                                    lambda g, x, y: (2 * g * x * y.detach(), g * x**2)),
                    lambda x, y: x**2 * y, two, "x^2 y whose d/dx uses y.detach(): d2/dxdy lost", order=2),
        _unary("cube_second_order_correct", "control", False, lambda x: x**3, lambda g, x: 3 * g * x**2,
               _vec(102, 5), "x^3 with a differentiable backward", order=2),
        _torch_case("sin_times_y_second_order_correct", "control", False, lambda x, y: torch.sin(x) * y,
                    lambda x, y: torch.sin(x) * y, two, "sin(x) y with plain autograd", order=2),
    ]


def _torch_hard_float32() -> list[Case]:
    cat = "hard float32 (correct)"

    def solve_in(dtype: str) -> tuple[Tensor, ...]:
        return _tensor(_normal(110, (4, 4)), dtype), _tensor(_normal(111, (4,)), dtype)

    return [
        _torch_case("logsumexp_large_values", cat, False, lambda x: torch.logsumexp(x, 0),
                    lambda x: torch.logsumexp(x, 0), _vec(112, 10, scale=10.0, shift=50.0),
                    description="logsumexp of values ~ 50 +- 10"),
        _torch_case("softmax_large_logits", cat, False, lambda x: torch.softmax(30 * x, 0),
                    lambda x: torch.softmax(30 * x, 0), _vec(113, 6), description="softmax(30 x)"),
        _torch_case("cancelling_offset_square", cat, False, lambda x: (x + 1e4) ** 2 - 1e8,
                    lambda x: (x + 1e4) ** 2 - 1e8, _vec(114, 6),
                    description="(x + 1e4)^2 - 1e8: the output loses most float32 digits"),
        _torch_case("tanh_saturated", cat, False, torch.tanh, torch.tanh,
                    lambda dtype: (_tensor(_uniform(115, (6,), 7.0, 9.0), dtype),),
                    description="tanh at x in [7, 9]: gradients ~ 1e-7 on outputs ~ 1"),
        _torch_case("sigmoid_saturated", cat, False, torch.sigmoid, torch.sigmoid,
                    lambda dtype: (_tensor(np.array([-20.0, -12.0, 12.0, 17.0, 20.0]), dtype),),
                    description="sigmoid at |x| in [12, 20]"),
        _torch_case("cumsum_1000", cat, False, lambda x: x.cumsum(0), lambda x: x.cumsum(0),
                    _vec(116, 1000, shift=100.0), description="cumsum of 1000 values ~ 100"),
        _torch_case("log_near_zero", cat, False, torch.log, torch.log,
                    lambda dtype: (_tensor(_uniform(117, (6,), 1e-3, 2e-3), dtype),),
                    description="log x at x in [1e-3, 2e-3]: curvature 1e6"),
        _torch_case("pow_ten", cat, False, lambda x: x**10, lambda x: x**10,
                    _vec(118, 6, scale=0.1, shift=1.5), description="x^10 at x ~ 1.5"),
        _torch_case("linalg_solve", cat, False, torch.linalg.solve, torch.linalg.solve, solve_in,
                    description="solve(A, b) for a random 4x4 A"),
        _torch_case("sin_large_argument", cat, False, lambda x: torch.sin(1000 * x),
                    lambda x: torch.sin(1000 * x), _vec(119, 6), description="sin(1000 x)"),
    ]


# ---- jax ------------------------------------------------------------------------------


def _jax_array(values: np.ndarray, dtype: str) -> Any:
    import jax.numpy as jnp

    from .frameworks import enable_jax_x64

    enable_jax_x64()
    return jnp.asarray(np.asarray(values, dtype=np.float64), dtype=dtype)


def _jax_custom(forward: Callable[..., Any], backward: Callable[..., Any]) -> Callable[..., Any]:
    import jax

    f = jax.custom_vjp(forward)
    f.defvjp(lambda *xs: (forward(*xs), xs), lambda xs, g: tuple(backward(g, *xs)))
    return f


def _jax_case(name: str, category: str, buggy: bool, make: Callable[[], tuple[Callable, Callable]],
              inputs: Callable[[str], tuple[Any, ...]], description: str, *, order: int = 1) -> Case:
    """`make()` returns `(fn, reference)`; it runs on first build so jax is imported lazily."""

    def build(dtype: str) -> Problem:
        return Problem(make()[0], inputs(dtype))

    def reference(dtype: str) -> Problem:
        return Problem(make()[1], inputs(dtype))

    return Case(name=name, suite="zoo", category=category, framework="jax", buggy=buggy, build=build,
                reference=reference, order=order, description=description)


def _jax_cases() -> list[Case]:
    def jnp() -> Any:
        import jax.numpy

        return jax.numpy

    def vec(seed: int, n: int, **kw: float) -> Callable[[str], tuple[Any, ...]]:
        return lambda dtype: (_jax_array(_normal(seed, (n,), **kw), dtype),)

    def sin_wrong() -> tuple[Callable, Callable]:
        np_ = jnp()
        return _jax_custom(np_.sin, lambda g, x: (-g * np_.cos(x),)), np_.sin

    def sin_right() -> tuple[Callable, Callable]:
        np_ = jnp()
        return _jax_custom(np_.sin, lambda g, x: (g * np_.cos(x),)), np_.sin

    def cube_one_element() -> tuple[Callable, Callable]:
        np_ = jnp()
        f = lambda x: x**3
        return _jax_custom(f, lambda g, x: ((g * 3 * x**2).at[300].multiply(1.01),)), f

    def tiny_factor() -> tuple[Callable, Callable]:
        np_ = jnp()
        f = lambda x: 1e-6 * np_.sin(x)
        return _jax_custom(f, lambda g, x: (2e-6 * g * np_.cos(x),)), f

    def relu() -> tuple[Callable, Callable]:
        import jax

        return jax.nn.relu, jax.nn.relu

    def logsumexp() -> tuple[Callable, Callable]:
        import jax

        return jax.nn.logsumexp, jax.nn.logsumexp

    def cube_stop_gradient() -> tuple[Callable, Callable]:
        import jax

        f = lambda x: x**3
        return _jax_custom(f, lambda g, x: (3 * g * jax.lax.stop_gradient(x) ** 2,)), f

    def sin_times_y() -> tuple[Callable, Callable]:
        np_ = jnp()
        f = lambda x, y: np_.sin(x) * y
        return f, f

    def sum_wrong_axis() -> tuple[Callable, Callable]:
        np_ = jnp()
        f = lambda x: x.sum(1)
        return _jax_custom(f, lambda g, x: (np_.broadcast_to(g[None, :], x.shape),)), f

    def tanh_float32_inside() -> tuple[Callable, Callable]:
        np_ = jnp()
        return (lambda x: np_.tanh(x.astype(np_.float32)).astype(x.dtype)), np_.tanh

    def tanh_float32_inside_wrong() -> tuple[Callable, Callable]:
        np_ = jnp()
        f = _jax_custom(np_.tanh, lambda g, x: (1.1 * g * (1 - np_.tanh(x) ** 2),))
        return (lambda x: f(x.astype(np_.float32)).astype(x.dtype)), np_.tanh

    return [
        _jax_case("jax_tanh_float32_inside_correct", "control", False, tanh_float32_inside, vec(209, 7),
                  "tanh(x.astype(float32)).astype(x.dtype), correct"),
        _jax_case("jax_tanh_float32_inside_x1.1", "float32 inside", True, tanh_float32_inside_wrong,
                  vec(209, 7), "custom_vjp tanh computed in float32 inside, backward 10% too large"),
        _jax_case("jax_sin_wrong_sign", "sign/factor/transpose", True, sin_wrong, vec(200, 5),
                  "custom_vjp sin with backward -cos"),
        _jax_case("jax_sin_correct", "control", False, sin_right, vec(200, 5), "custom_vjp sin, correct"),
        _jax_case("jax_one_of_512", "element/region", True, cube_one_element, vec(201, 512),
                  "custom_vjp x^3 on 512 elements; element 300 off by 1%"),
        _jax_case("jax_tiny_gradient_factor_two", "tiny gradients", True, tiny_factor, vec(202, 5),
                  "custom_vjp 1e-6 sin x with a factor-2 error"),
        _jax_case("jax_sum_wrong_axis", "reduction", True, sum_wrong_axis,
                  lambda dtype: (_jax_array(_normal(203, (4, 4)), dtype),), "x.sum(1) broadcast on the wrong axis"),
        _jax_case("jax_relu_near_kink_correct", "kink control", False, relu,
                  lambda dtype: (_jax_array(_near(_normal(204, (6,)), 1, 1e-8), dtype),),
                  "jax.nn.relu with an input 1e-8"),
        _jax_case("jax_logsumexp_large_values", "hard float32 (correct)", False, logsumexp,
                  vec(205, 10, scale=10.0, shift=50.0), "jax.nn.logsumexp of values ~ 50 +- 10"),
        _jax_case("jax_cube_stop_gradient_in_backward", "second order", True, cube_stop_gradient, vec(206, 5),
                  "custom_vjp x^3 whose backward stops the gradient of x", order=2),
        _jax_case("jax_sin_times_y_second_order_correct", "control", False, sin_times_y,
                  lambda dtype: (_jax_array(_normal(207, (4,)), dtype), _jax_array(_normal(208, (4,)), dtype)),
                  "sin(x) y, plain jax", order=2),
    ]


# ---- numpy with hand-written gradients -------------------------------------------------


def _numpy_case(name: str, category: str, buggy: bool, fn: Callable[..., Any], grad: Callable[..., Any],
                reference: Callable[..., Any], inputs: Callable[[], tuple[np.ndarray, ...]],
                description: str) -> Case:
    def build(dtype: str) -> Problem:
        return Problem(fn, tuple(x.astype(dtype) for x in inputs()), grad)

    def ref(dtype: str) -> Problem:
        return Problem(reference, tuple(_tensor(x, dtype) for x in inputs()))

    return Case(name=name, suite="zoo", category=category, framework="numpy", buggy=buggy, build=build,
                reference=ref, description=description)


def _numpy_cases() -> list[Case]:
    rng_x = _normal(300, (8, 20))
    rng_y = _normal(301, (8, 3))

    def two_layer(w1: np.ndarray, w2: np.ndarray) -> Any:
        x, y = rng_x.astype(w1.dtype), rng_y.astype(w1.dtype)
        h_relu = np.maximum(x @ w1, 0)
        return np.square(h_relu @ w2 - y).sum()

    def two_layer_grad(w1: np.ndarray, w2: np.ndarray, *, bug: bool = False) -> tuple[np.ndarray, ...]:
        x, y = rng_x.astype(w1.dtype), rng_y.astype(w1.dtype)
        h = x @ w1
        h_relu = np.maximum(h, 0)
        grad_y_pred = 2.0 * (h_relu @ w2 - y)
        grad_w2 = h_relu.T @ grad_y_pred
        grad_h = grad_y_pred @ w2.T
        # The bug masks by the post-ReLU value, which is never negative: no mask at all.
        grad_h[(h_relu if bug else h) < 0] = 0
        return x.T @ grad_h, grad_w2

    def two_layer_torch(w1: Tensor, w2: Tensor) -> Tensor:
        x, y = torch.tensor(rng_x, dtype=w1.dtype), torch.tensor(rng_y, dtype=w1.dtype)
        return ((torch.relu(x @ w1) @ w2 - y) ** 2).sum()

    weights = lambda: (_normal(302, (20, 10)), _normal(303, (10, 3)))

    xs = np.linspace(-math.pi, math.pi, 2000)

    def cubic(a: Any, b: Any, c: Any, d: Any) -> Any:
        x = xs.astype(np.asarray(a).dtype)
        return np.square(a + b * x + c * x**2 + d * x**3 - np.sin(x)).sum()

    def cubic_grad(a: Any, b: Any, c: Any, d: Any, *, bug: bool = False) -> tuple[Any, ...]:
        x = xs.astype(np.asarray(a).dtype)
        g = 2.0 * (a + b * x + c * x**2 + d * x**3 - np.sin(x))
        return g.sum(), (g * x).sum(), (g * x**3 if bug else g * x**2).sum(), (g * x**3).sum()

    def cubic_torch(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
        x = torch.tensor(xs, dtype=a.dtype)
        return ((a + b * x + c * x**2 + d * x**3 - torch.sin(x)) ** 2).sum()

    coefficients = lambda: tuple(np.asarray(v) for v in _normal(304, (4,)) * 0.1)

    def graph_e(a: np.ndarray, b: np.ndarray) -> Any:
        return ((a + b) * (b + 1)).sum()

    def graph_e_missing(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, ...]:
        return b + 1, a + b

    labels = np.array([0, 2, 1, 1, 0, 2])

    def xent(z: np.ndarray) -> Any:
        zmax = z.max(axis=1, keepdims=True)
        logp = z - zmax - np.log(np.exp(z - zmax).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(labels)), labels].mean()

    def xent_grad(z: np.ndarray, *, bug: bool = False) -> tuple[np.ndarray]:
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(labels)), labels] -= 1
        return (p if bug else p / len(labels),)

    def xent_torch(z: Tensor) -> Tensor:
        return torch.nn.functional.cross_entropy(z, torch.tensor(labels))

    sig_w = _normal(305, (7,))

    def sigmoid_sum(x: np.ndarray) -> Any:
        return (sig_w.astype(x.dtype) / (1 + np.exp(-x))).sum()

    def sigmoid_grad(x: np.ndarray) -> tuple[np.ndarray]:
        s = 1 / (1 + np.exp(-x))
        return (sig_w.astype(x.dtype) * s * (1 - s),)

    return [
        _numpy_case("numpy_two_layer_correct", "control", False, two_layer, two_layer_grad, two_layer_torch,
                    weights, "the doc's two-layer ReLU network (8x20, 20x10, 10x3), hand backward"),
        _numpy_case("numpy_two_layer_mask_bug", "kinks", True, two_layer,
                    lambda w1, w2: two_layer_grad(w1, w2, bug=True), two_layer_torch, weights,
                    "two-layer network whose ReLU mask tests the post-ReLU value"),
        _numpy_case("numpy_cubic_fit_correct", "control", False, cubic, cubic_grad, cubic_torch, coefficients,
                    "the doc's cubic fit of sin x, hand backward"),
        _numpy_case("numpy_cubic_fit_wrong_power", "sign/factor/transpose", True, cubic,
                    lambda *p: cubic_grad(*p, bug=True), cubic_torch, coefficients,
                    "cubic fit whose grad_c uses x^3 instead of x^2"),
        _numpy_case("numpy_graph_e_missing_path", "reused input", True, graph_e, graph_e_missing,
                    lambda a, b: ((a + b) * (b + 1)).sum(),
                    lambda: (_normal(306, (5,)), _normal(307, (5,))),
                    "e=(a+b)(b+1) whose de/db keeps one path"),
        _numpy_case("numpy_xent_missing_mean", "reduction", True, xent, lambda z: xent_grad(z, bug=True),
                    xent_torch, lambda: (_normal(308, (6, 3)),), "mean cross-entropy whose gradient forgets 1/n"),
        _numpy_case("numpy_xent_correct", "control", False, xent, xent_grad, xent_torch,
                    lambda: (_normal(308, (6, 3)),), "mean cross-entropy, hand backward"),
        _numpy_case("numpy_sigmoid_correct", "control", False, sigmoid_sum, sigmoid_grad,
                    lambda x: (torch.tensor(sig_w, dtype=x.dtype) * torch.sigmoid(x)).sum(),
                    lambda: (_normal(309, (7,)),), "weighted sum of a hand-written sigmoid"),
    ]


def _torch_held_fixed_and_independent() -> list[Case]:
    """Issue 10 items 10 and 11: backwards leaking into -inf (masked) positions, and a
    function that reads its parameter through a closure instead of its argument."""
    cat = "held fixed / independent"

    def scores(dtype: str) -> tuple[Tensor, ...]:
        x = _normal(70, (3, 6))
        x[0, 4:] = -np.inf
        x[2, [1, 5]] = -np.inf
        return (_tensor(x, dtype),)

    weights = torch.linspace(-1.0, 2.0, 6, dtype=torch.float64)

    def masked(x: Tensor) -> Tensor:
        return torch.softmax(x, -1) * weights.to(x.dtype)

    def softmax_grad(g: Tensor, x: Tensor) -> Tensor:
        y = torch.softmax(x, -1)
        return y * (g - (g * y).sum(-1, keepdim=True))

    def leaking(g: Tensor, x: Tensor) -> Tensor:
        return softmax_grad(g, x) + 0.05 * torch.isinf(x).to(g.dtype) * g

    def nan_leaking(g: Tensor, x: Tensor) -> Tensor:
        return torch.where(torch.isinf(x), torch.full_like(g, float("nan")), softmax_grad(g, x))

    def soft(x: Tensor) -> Tensor:
        return torch.softmax(x, -1)

    def weighted(f: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        return lambda x: f(x) * weights.to(x.dtype)

    held: dict[str, Tensor] = {}

    def closure_inputs(dtype: str) -> tuple[Tensor, ...]:
        held["p"] = _tensor(_normal(71, (5,)), dtype)
        return (held["p"].detach().clone().requires_grad_(),)

    return [
        _torch_case("masked_softmax_correct", "control", False, masked, masked, scores,
                    description="softmax over scores with -inf (masked) entries, correct"),
        _torch_case("masked_softmax_leaks_into_masked", cat, True,
                    weighted(custom_function("masked_leak", soft, leaking)), masked, scores,
                    description="masked softmax whose backward adds 0.05 g at the -inf positions"),
        _torch_case("masked_softmax_nan_at_masked", cat, True,
                    weighted(custom_function("masked_nan", soft, nan_leaking)), masked, scores,
                    description="masked softmax whose backward returns NaN at the -inf positions"),
        _torch_case("closure_parameter_ignores_input", cat, True,
                    lambda q: torch.tanh(held["p"]) * 2.0, lambda q: torch.tanh(q) * 2.0, closure_inputs,
                    description="reads the parameter through a closure while a copy is passed: "
                                "the check is vacuous"),
        _torch_case("closure_parameter_uses_input_correct", "control", False,
                    lambda q: torch.tanh(q) * 2.0, lambda q: torch.tanh(q) * 2.0, closure_inputs,
                    description="the same function computing with its argument, correct"),
    ]


def _torch_kinked_probe() -> list[Case]:
    """Issue 10 item 9: exact kinks of an L1 term must not hide a wrong data-term gradient."""
    target = torch.tensor(_normal(73, (16,)))

    def lasso_inputs(dtype: str) -> tuple[Tensor, ...]:
        w = _normal(72, (16,))
        w[[3, 8, 14]] = 0.0
        return (_tensor(w, dtype),)

    def mse(w: Tensor) -> Tensor:
        return ((w - target.to(w.dtype)) ** 2).mean()

    def l1(f: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        return lambda w: f(w) + 0.3 * w.abs().sum()

    wrong = custom_function("mse_double", mse, lambda g, w: g * 4.0 * (w - target.to(w.dtype)) / w.numel())
    return [
        _torch_case("l1_with_exact_zeros_correct", "kink control", False, l1(mse), l1(mse), lasso_inputs,
                    description="mse(w) + 0.3 |w|.sum() with three exact zeros in w, correct"),
        _torch_case("l1_with_exact_zeros_data_term_x2", "kinks", True, l1(wrong), l1(mse), lasso_inputs,
                    description="the same with the data term's gradient doubled"),
    ]


def _torch_dynamic_range() -> list[Case]:
    """Issue 10 item 13: a wrong gradient in the smallest entries of a wide-ranged output.

    The ground truth scores a change normwise (above 1e-6 of the largest Jacobian entry),
    so the ranges are as wide as keeps the smallest entry's error above that: exp over
    [0, 13] (entry 0 is e^-13 of the largest), softplus over [-12, 12]. Wider ranges, where
    an elementwise check still catches the error, are in tests/test_engine.py."""
    wide = lambda dtype: (_tensor(np.linspace(0.0, 13.0, 24), dtype),)

    def exp_first_off(g: Tensor, x: Tensor) -> Tensor:
        return _one_element(g * torch.exp(x), 0, 1.5)

    def softplus_low_off(g: Tensor, x: Tensor) -> Tensor:
        return _one_element(g * torch.sigmoid(x), 1, 0.5)

    spread = lambda dtype: (_tensor(np.linspace(-12.0, 12.0, 20), dtype),)
    return [
        _torch_case("exp_wide_range_correct", "control", False, torch.exp, torch.exp, wide,
                    description="exp over [0, 13], correct"),
        _unary("exp_wide_range_entry0_x1.5", "element/region", True, torch.exp, exp_first_off, wide,
               "exp over [0, 13] with the gradient of entry 0 (exp(0) = 1) off by x1.5"),
        _torch_case("softplus_wide_range_correct", "control", False, torch.nn.functional.softplus,
                    torch.nn.functional.softplus, spread, description="softplus over [-12, 12], correct"),
        _unary("softplus_wide_range_entry1_x0.5", "element/region", True, torch.nn.functional.softplus,
               softplus_low_off, spread, "softplus over [-12, 12] with the gradient of entry 1 halved"),
    ]


def _torch_units() -> list[Case]:
    """Issue 10 item 12: functions in physical units, far from 1, where a tolerance with an
    absolute floor passes a factor-2 bug; and the control a floor was meant for."""
    cat = "physical units"
    sigma, epsilon = 3.4e-10, 1.65e-21  # argon, SI units (m, J)

    def pairs(pos: Tensor) -> tuple[Tensor, Tensor]:
        d = pos[:, None, :] - pos[None, :, :]
        eye = torch.eye(pos.shape[0], dtype=torch.bool)
        r = torch.where(eye, torch.ones((), dtype=pos.dtype), (d * d).sum(-1)).sqrt()
        return d, torch.where(eye, torch.full_like(r, math.inf), r)

    def lj_energy(pos: Tensor) -> Tensor:
        _, r = pairs(pos)
        sr6 = (sigma / r) ** 6
        return 2.0 * epsilon * (sr6 * sr6 - sr6).sum()  # each pair twice: 4 eps / 2

    def lj_force(factor: float) -> Callable[[Tensor, Tensor], Tensor]:
        def backward(g: Tensor, pos: Tensor) -> Tensor:
            d, r = pairs(pos)
            sr6 = (sigma / r) ** 6
            de_dr = 4.0 * epsilon * (6.0 * sr6 - 12.0 * sr6 * sr6) / r
            return factor * g * (de_dr[..., None] * d / r[..., None]).sum(1)
        return backward

    lattice = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1]], float)
    atoms = lambda dtype: (_tensor((lattice + 0.05 * _normal(74, lattice.shape)) * 3.8e-10, dtype),)
    sq = lambda x: (x * x).sum()
    return [
        _unary("sum_x2_at_1e-8_factor_two", cat, True, sq, lambda g, x: 4.0 * g * x,
               _vec(75, 8, scale=1e-8), "sum x^2 at x ~ 1e-8 (value 1e-16) with 4x for 2x"),
        _unary("sum_x2_at_1e-8_correct", "control", False, sq, lambda g, x: 2.0 * g * x,
               _vec(75, 8, scale=1e-8), "sum x^2 at x ~ 1e-8, correct"),
        _unary("lennard_jones_si_force_x2", cat, True, lj_energy, lj_force(2.0), atoms,
               "Lennard-Jones energy of 6 argon atoms in SI units (1e-21 J, 1e-10 m), "
               "forces doubled"),
        _unary("lennard_jones_si_correct", "control", False, lj_energy, lj_force(1.0), atoms,
               "Lennard-Jones energy of 6 argon atoms in SI units, correct forces"),
        _torch_case("var_exp_at_zero_correct", "control", False, lambda x: x.exp().var(),
                    lambda x: x.exp().var(), lambda dtype: (_tensor(np.zeros(5), dtype),),
                    description="var(exp(x)) at x = 0: value and gradient vanish, the "
                                "intermediates are 1"),
        _torch_case("var_exp_at_zero_times_2e60_correct", "control", False,
                    lambda x: x.exp().var() * 2.0**60, lambda x: x.exp().var() * 2.0**60,
                    lambda dtype: (_tensor(np.zeros(5), dtype),),
                    description="2^60 var(exp(x)) at x = 0: the same in other units"),
    ]


def _module_case(name: str, category: str, buggy: bool,
                 make: Callable[[bool, str], Callable[..., Tensor]],
                 inputs: Callable[[str], tuple[Tensor, ...]], description: str) -> Case:
    """A case whose function computes with an `nn.Module` it holds (closure or bound method),
    built in the requested dtype; `make(claimed, dtype)` gives the claimed (`True`) or the
    reference function, both on modules with the same weights."""
    return Case(
        name=name, suite="zoo", category=category, framework="torch", buggy=buggy,
        build=lambda dtype: Problem(make(True, dtype), inputs(dtype)),
        reference=lambda dtype: Problem(make(False, dtype), inputs(dtype)),
        description=description,
    )


def _torch_float32_modules() -> list[Case]:
    """Float32 networks held outside the inputs: a closure's CNN, a bound method's RMSNorm.

    In float32 their weights cannot meet float64 inputs, so a check that promotes the
    inputs only falls back to float32 finite differences, too weak for errors of a few
    percent; these cases need the modules themselves checked on float64 copies."""
    cat = "float32 module"

    class Centre(torch.nn.Module):
        def __init__(self, detach: bool) -> None:
            super().__init__()
            self.detach = detach

        def forward(self, x: Tensor) -> Tensor:
            mean = x.mean(dim=(2, 3), keepdim=True)
            std = x.std(dim=(2, 3), keepdim=True)
            return (x - (mean.detach() if self.detach else mean)) / std

    def cnn(middle: torch.nn.Module, dtype: str) -> torch.nn.Module:
        torch.manual_seed(90)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3), middle, torch.nn.Tanh(), torch.nn.Flatten(),
            torch.nn.Linear(8 * 8 * 8, 3),
        )
        return net.to(_DT[dtype])

    def closure_cnn(detach: bool) -> Callable[[bool, str], Callable[..., Tensor]]:
        def make(claimed: bool, dtype: str) -> Callable[..., Tensor]:
            net = cnn(Centre(detach and claimed), dtype)
            return lambda x: (net(x) ** 2).sum()
        return make

    class LastTileTanh(torch.autograd.Function):
        """tanh whose backward scales the last 8 elements by 0.97: an off-by-one last tile."""

        @staticmethod
        def forward(ctx: Any, x: Tensor) -> Tensor:
            y = torch.tanh(x)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx: Any, g: Tensor) -> Tensor:
            (y,) = ctx.saved_tensors
            dx = (g * (1 - y * y)).reshape(-1).clone()
            dx[-8:] *= 0.97
            return dx.reshape(y.shape)

    class Apply(torch.nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return LastTileTanh.apply(x)

    def last_tile_cnn(claimed: bool, dtype: str) -> Callable[..., Tensor]:
        net = cnn(Apply() if claimed else torch.nn.Tanh(), dtype)
        return lambda x: (net(x) ** 2).sum()

    def batchnorm_cnn(claimed: bool, dtype: str) -> Callable[..., Tensor]:
        net = cnn(torch.nn.BatchNorm2d(8), dtype)
        return lambda x: (net(x) ** 2).sum()

    class RMSNormFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Tensor, w: Tensor, stale: bool) -> Tensor:
            rms = torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6)
            ctx.save_for_backward(x, w, rms)
            ctx.stale = stale
            return x / rms * w

        @staticmethod
        def backward(ctx: Any, g: Tensor) -> Any:
            x, w, rms = ctx.saved_tensors
            gw = g * w
            dx = gw / rms
            if not ctx.stale:  # the stale version treats the statistic as a constant
                dx = dx - x * (gw * x).mean(-1, keepdim=True) / rms**3
            return dx, None, None

    class NormProject(torch.nn.Module):
        """RMSNorm, then a linear projection: the block of a transformer's output head."""

        def __init__(self, stale: bool | None, dtype: str) -> None:
            super().__init__()
            torch.manual_seed(93)
            weights = np.linspace(0.5, 1.5, 6)
            self.weight = torch.nn.Parameter(torch.tensor(weights, dtype=_DT[dtype]))
            self.project = torch.nn.Linear(6, 3).to(_DT[dtype])
            self.stale = stale

        def forward(self, x: Tensor) -> Tensor:
            if self.stale is None:
                rms = torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6)
                return self.project(x / rms * self.weight)
            return self.project(RMSNormFn.apply(x, self.weight, self.stale))

    def bound_rmsnorm(stale: bool) -> Callable[[bool, str], Callable[..., Tensor]]:
        return lambda claimed, dtype: NormProject(stale if claimed else None, dtype).forward

    images = lambda dtype: (_tensor(_normal(91, (2, 3, 10, 10)), dtype),)
    rows = lambda dtype: (_tensor(_normal(92, (4, 6), scale=2.0), dtype),)
    return [
        _module_case("float32_closure_cnn_detached_mean", cat, True, closure_cnn(True), images,
                     "a CNN in a closure whose normalisation layer detaches the mean"),
        _module_case("float32_closure_cnn_correct", "control", False, closure_cnn(False), images,
                     "the same CNN normalising with the mean attached, correct"),
        _module_case("float32_closure_cnn_last_tile_off", cat, True, last_tile_cnn, images,
                     "a CNN in a closure whose tanh backward scales its last 8 elements by 0.97"),
        _module_case("float32_closure_cnn_batchnorm_correct", "control", False, batchnorm_cnn,
                     images,
                     "a conv-BatchNorm-tanh-linear CNN in a closure, training mode, correct"),
        _module_case("float32_bound_rmsnorm_stale_statistic", cat, True, bound_rmsnorm(True), rows,
                     "a bound method's RMSNorm + linear block whose backward holds the rms "
                     "constant"),
        _module_case("float32_bound_rmsnorm_correct", "control", False, bound_rmsnorm(False), rows,
                     "the same block with the full RMSNorm backward, correct"),
    ]


def _on_grid(x: Tensor) -> Tensor:
    """x itself, after checking that x lies on a 0.01 grid (as input validation does)."""
    if not torch.allclose(x, x.round(decimals=2), atol=1e-4):
        raise ValueError("inputs must lie on a 0.01 grid")
    return x


def _torch_finite_difference_edges() -> list[Case]:
    """Issue 10 items 1, 6 and 7: correct functions at the edges of finite differences
    (a cancelling forward, an input check that refuses the default step, a backward
    accurate to 1e-10 only), each with a wrong-gradient twin."""
    small = lambda dtype: (_tensor(_normal(80, (4, 3), scale=1e-4), dtype),)
    grid = lambda dtype: (_tensor(np.array([0.12, 0.35, 0.8, -0.47, 1.25]), dtype),)
    positive = lambda dtype: (_tensor(_uniform(81, (20,), 0.5, 3.5), dtype),)

    def logdet(x: Tensor) -> Tensor:
        return torch.logdet(torch.eye(x.shape[0], dtype=x.dtype) + x @ x.T)

    def logdet_grad(factor: float) -> Callable[[Tensor, Tensor], Tensor]:
        def grad(g: Tensor, x: Tensor) -> Tensor:
            m = torch.eye(x.shape[0], dtype=x.dtype) + x @ x.T
            return g * factor * 2.0 * torch.linalg.solve(m, x)
        return grad

    def cube_on_grid(x: Tensor) -> Tensor:
        return _on_grid(x) ** 3

    def cube_grad(factor: float) -> Callable[[Tensor, Tensor], Tensor]:
        return lambda g, x: g * factor * 3.0 * x**2

    def digamma_grad(factor: float) -> Callable[[Tensor, Tensor], Tensor]:
        return lambda g, x: g * factor * torch.polygamma(1, x)

    cat = "finite-difference edges"
    return [
        _torch_case("logdet_near_identity_correct", "control", False, logdet, logdet, small,
                    description="logdet(I + X X^T) at X ~ 1e-4 (the output cancels), correct"),
        _unary("logdet_near_identity_x1.5", cat, True, logdet, logdet_grad(1.5), small,
               "logdet(I + X X^T) at X ~ 1e-4 with the gradient x1.5"),
        _torch_case("validated_input_correct", "control", False, cube_on_grid, cube_on_grid, grid,
                    description="x**3 of an input it checks to lie on a 0.01 grid, correct"),
        _unary("validated_input_x2", cat, True, cube_on_grid, cube_grad(2.0), grid,
               "x**3 of an input checked to lie on a 0.01 grid, gradient x2"),
        _torch_case("digamma_correct", "control", False, torch.digamma, torch.digamma, positive,
                    description="digamma over [0.5, 3.5] (its backward is ~5e-10 off), correct"),
        _unary("digamma_x1.01", cat, True, torch.digamma, digamma_grad(1.01), positive,
               "digamma over [0.5, 3.5] with the gradient 1% too large"),
    ]


def _torch_float32_inside() -> list[Case]:
    """Issue 10 item 3: functions that return float64 for float64 inputs but compute in
    float32 inside (an upcast-and-cast-back written for half-precision models)."""
    cat = "float32 inside"

    def softmax_f32(q: Tensor) -> Tensor:
        return torch.softmax(q, -1, dtype=torch.float32).to(q.dtype).pow(2).sum()

    def softmax_ref(q: Tensor) -> Tensor:
        return torch.softmax(q, -1).pow(2).sum()

    def rmsnorm(cast: bool) -> Callable[[Tensor], Tensor]:
        def f(x: Tensor) -> Tensor:
            h = x.float() if cast else x
            return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)

        return f

    def tanh_grad(g: Tensor, x: Tensor) -> Tensor:
        return g * (1 - torch.tanh(x) ** 2) * 1.1

    tanh_off = custom_function("tanh_off_inside", torch.tanh, tanh_grad)

    def rms_missing_term(g: Tensor, x: Tensor) -> Tensor:
        return g * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    rms_plain = lambda x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    rms_wrong = custom_function("rmsnorm_missing_term", rms_plain, rms_missing_term)
    rows = lambda dtype: (_tensor(_normal(80, (4, 6)), dtype),)
    return [
        _torch_case("softmax_dtype_float32_inside_correct", "control", False, softmax_f32, softmax_ref,
                    rows, description="softmax(q, dtype=float32).to(q.dtype).pow(2).sum(), correct"),
        _torch_case("rmsnorm_float32_inside_correct", "control", False, rmsnorm(True), rmsnorm(False),
                    rows, description="LLaMA RMSNorm: x.float(), normalised, cast back; correct"),
        _torch_case("tanh_float32_inside_x1.1", cat, True,
                    lambda x: tanh_off(x.float()).to(x.dtype), torch.tanh, rows,
                    description="tanh computed in float32 inside, backward 10% too large"),
        _torch_case("rmsnorm_float32_inside_missing_term", cat, True,
                    lambda x: rms_wrong(x.float()).to(x.dtype), rms_plain, rows,
                    description="RMSNorm in float32 inside whose backward drops the mean term"),
    ]


def _torch_conditioned_forward_mode() -> list[Case]:
    """Issue 10 item 2: ill-conditioned derivatives, where forward and reverse mode differ
    by more than 64 ulps although both are right; and jvp/backward bugs the dot-product
    rule must tell apart."""
    cat = "forward mode"

    def conditioned(dtype: str) -> tuple[Tensor, ...]:
        rng = np.random.default_rng(81)
        q1, _ = np.linalg.qr(rng.standard_normal((6, 6)))
        q2, _ = np.linalg.qr(rng.standard_normal((6, 6)))
        return (_tensor(q1 @ np.diag(np.logspace(0, -4, 6)) @ q2.T, dtype),)

    layer_norm = lambda x: torch.nn.functional.layer_norm(x, (16,)).pow(3).sum()
    lcse = lambda x: torch.logcumsumexp(x, 0)

    def sin_with_jvp(name: str, backward_factor: float, jvp_factor: float) -> Callable[[Tensor], Tensor]:
        def fwd(ctx: Any, x: Tensor) -> Tensor:
            ctx.save_for_backward(x)
            ctx.x = x
            return torch.sin(x)

        def bwd(ctx: Any, g: Tensor) -> Tensor:
            (x,) = ctx.saved_tensors
            return g * torch.cos(x) * backward_factor

        def jvp(ctx: Any, t: Tensor) -> Tensor:
            return t * torch.cos(ctx.x) * jvp_factor

        members = {"forward": staticmethod(fwd), "backward": staticmethod(bwd), "jvp": staticmethod(jvp)}
        return type(name, (torch.autograd.Function,), members).apply

    return [
        _torch_case("pinv_condition_1e4_correct", "control", False, torch.linalg.pinv, torch.linalg.pinv,
                    conditioned, description="linalg.pinv of a 6x6 matrix of condition 1e4"),
        _torch_case("layer_norm_offset_rows_correct", "control", False, layer_norm, layer_norm,
                    lambda dtype: (_tensor(_normal(82, (4, 16), scale=0.01, shift=50.0), dtype),),
                    description="layer_norm of rows 50 +- 0.01, cubed and summed"),
        _torch_case("logcumsumexp_correct", "control", False, lcse, lcse, _vec(83, 40, scale=3.0),
                    description="logcumsumexp (torch's jvp rule is accurate to 1e-8 only)"),
        _torch_case("sin_wrong_jvp_right_backward", "control", False,
                    sin_with_jvp("sin_bad_jvp", 1.0, 1.001), torch.sin, _vec(84, 7),
                    description="sin whose jvp is 0.1% off and whose backward is right"),
        _torch_case("sin_wrong_backward_right_jvp", cat, True,
                    sin_with_jvp("sin_bad_bwd", 1.001, 1.0), torch.sin, _vec(84, 7),
                    description="sin whose backward is 0.1% off and whose jvp is right"),
    ]


def _torch_precision_comparison() -> list[Case]:
    """Issue 10 items 8 and 14: the float32 backward against the float64 one must scale
    with the backward's own rounding, neither with the loss value nor with the forward's."""
    cat = "reduced-precision backward"

    def square_loss(name: str, scale: float, offset: float, rounding: torch.dtype | None):
        def forward(x: Tensor) -> Tensor:
            return (x * x).sum() * scale + offset

        def backward(g: Tensor, x: Tensor) -> Tensor:
            grad = g * 2 * scale * x
            return grad if rounding is None else grad.to(rounding).to(x.dtype)

        return custom_function(name, forward, backward), forward

    cases = [
        _torch_case("std_of_offset_data_correct", "control", False, torch.std, torch.std,
                    _vec(85, 50, scale=0.1, shift=1000.0), description="std of 1000 + 0.1 x"),
        _torch_case("var_of_offset_data_correct", "control", False, torch.var, torch.var,
                    _vec(86, 50, scale=0.1, shift=1000.0), description="var of 1000 + 0.1 x"),
    ]
    for name, scale, offset, rounding, buggy in [
        ("large_loss_backward_in_bfloat16", 1e6, 0.0, torch.bfloat16, True),
        ("large_loss_offset_backward_in_float16", 1.0, 1e8, torch.float16, True),
        ("large_loss_correct", 1e6, 1e8, None, False),
    ]:
        fn, ref = square_loss(name, scale, offset, rounding)
        cases.append(_torch_case(name, cat if buggy else "control", buggy, fn, ref, _vec(87, 20),
                                 description=f"{scale:g} sum(x^2) + {offset:g}, backward "
                                             + (f"rounded to {rounding}" if buggy else "correct")))
    return cases


def zoo_cases() -> list[Case]:
    """Every case of the bug zoo, torch first, then jax and numpy.

    **Returns:** a list of `Case`s with unique names.

    **Example:**
    >>> sum(c.buggy for c in zoo_cases()) > 0
    True
    """
    cases = (
        _torch_sign_factor_transpose()
        + _torch_reused_input()
        + _torch_reduction()
        + _torch_element_region()
        + _torch_tiny_huge()
        + _torch_kinks()
        + _torch_stale_saved()
        + _torch_detach_data()
        + _torch_nondeterministic()
        + _torch_second_order()
        + _torch_hard_float32()
        + _torch_held_fixed_and_independent()
        + _torch_kinked_probe()
        + _torch_dynamic_range()
        + _torch_units()
        + _torch_float32_modules()
        + _torch_finite_difference_edges()
        + _torch_float32_inside()
        + _torch_conditioned_forward_mode()
        + _torch_precision_comparison()
        + _jax_cases()
        + _numpy_cases()
    )
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise RuntimeError(f"duplicate zoo case names: {sorted(n for n in names if names.count(n) > 1)}")
    return cases
