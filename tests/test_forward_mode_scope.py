"""Where torch's forward mode is compared: a derivative rule of the user's own in the
graph, or where asked for (check_forward_ad=True, mode="full"); not through torch's own
operations alone, where it would check torch's forward rules instead of the function."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from custom_functions import unary_function, with_own_rule

import gradcheck_kit as gk
from gradcheck_kit import ComparisonKind
from gradcheck_kit._targets.torch import own_rule_in_graph


def _x(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g, dtype=torch.float64).requires_grad_()


def _forward_comparisons(report):
    return [c for c in report.comparisons if c.kind is ComparisonKind.FORWARD_MODE]


def _plain(x):
    return torch.tanh(x) * 2


def test_a_function_of_torch_operations_alone_gets_no_forward_mode():
    report = gk.gradcheck(_plain, (_x(),))
    assert report.passed
    assert report.forward_evals == 0
    assert not _forward_comparisons(report)
    assert not any("forward" in n for n in report.notes)


@pytest.mark.parametrize("options", [{"check_forward_ad": True}, {"mode": "full"}])
def test_forward_mode_runs_on_torch_operations_where_asked_for(options):
    report = gk.gradcheck(_plain, (_x(),), **options)
    assert report.passed
    assert report.forward_evals > 0
    assert _forward_comparisons(report)


def test_a_wrong_jvp_below_torch_operations_is_still_caught():
    wrong = unary_function(torch.sin, torch.cos, jvp_factor=1.01, name="SinJvp")
    fn = lambda x: wrong.apply(x * 3).exp() * 2  # noqa: E731
    report = gk.gradcheck(fn, (_x(),), raise_exception=False)
    assert report.passed and report.forward_evals > 0
    assert any("jvp" in n for n in report.notes)
    strict = gk.gradcheck(fn, (_x(),), check_forward_ad=True, raise_exception=False)
    assert any(c.kind is ComparisonKind.FORWARD_MODE for c in strict.failures)


def test_a_right_custom_function_gets_a_passing_forward_mode_comparison():
    right = unary_function(torch.sin, torch.cos, jvp_factor=1.0, name="SinRight")
    report = gk.gradcheck(lambda x: right.apply(x).sum() * 2, (_x(),))
    assert report.passed and report.forward_evals > 0
    assert _forward_comparisons(report) and all(c.passed for c in _forward_comparisons(report))


def _custom_op():
    @torch.library.custom_op("gradcheck_kit_tests::scoped_sin", mutates_args=())
    def scoped_sin(x: torch.Tensor) -> torch.Tensor:
        return x.sin()

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    def backward(ctx, g):
        return g * ctx.saved_tensors[0].cos()

    scoped_sin.register_autograd(backward, setup_context=setup_context)
    return scoped_sin


def test_a_custom_op_with_register_autograd_gets_forward_mode():
    op = _custom_op()
    report = gk.gradcheck(lambda x: op(x) * 2, (_x(),), raise_exception=False)
    assert report.forward_evals > 0
    # Its backward is right; torch gives it no forward-mode rule (a zero tangent), which
    # the comparison reports without failing the backward.
    assert report.passed
    assert any("jvp" in n for n in report.notes)


def test_second_order_forward_mode_follows_the_same_rule():
    plain = gk.gradgradcheck(torch.tanh, (_x(),))
    assert plain.passed and plain.forward_evals == 0
    asked = gk.gradgradcheck(torch.tanh, (_x(),), check_fwd_over_rev=True)
    assert asked.passed and asked.forward_evals > 0


def test_the_kit_s_own_functions_for_sparse_inputs_are_not_the_user_s_rules():
    s = torch.randn(3, 3, dtype=torch.float64).to_sparse().requires_grad_()
    report = gk.gradcheck(lambda s: torch.sparse.sum(s * 2), (s,))
    assert report.passed and report.forward_evals == 0
    assert not any("forward mode" in n for n in report.notes)


# -- the graph walk --------------------------------------------------------------------------


def test_a_rule_deep_below_many_operations_is_found_without_recursion():
    y = with_own_rule(torch.sin)(_x(3))
    for _ in range(5000):  # far beyond Python's recursion limit
        y = y * 1.0
    assert own_rule_in_graph([y.grad_fn])
    z = _x(3)
    for _ in range(5000):
        z = z * 1.0
    assert not own_rule_in_graph([z.grad_fn, None])


def test_each_node_is_visited_once():
    # 40 diamonds: 2**40 paths from the top to the rule at the bottom, 121 nodes.
    y = with_own_rule(torch.sin)(_x(3))
    for _ in range(40):
        y = y.sin() + y.cos()
    assert own_rule_in_graph([y.grad_fn])


def _node(type_name, name):
    """A node as torch shows a C++ one: a built-in type, named by `name()`."""
    cls = type(type_name, (), {"__module__": "builtins", "next_functions": ()})
    cls.name = lambda self: name
    return cls()


def test_a_cpp_custom_function_is_the_user_s_rule():
    # A C++ torch::autograd::Function's node has the built-in type CppFunction and is
    # named after CppNode<T>.
    assert own_rule_in_graph([_node("CppFunction", "torch::autograd::CppNode<MyExp>")])
    assert not own_rule_in_graph([_node("MulBackward0", "MulBackward0")])


def test_torch_s_own_nodes_are_built_in_types():
    x = _x(3)
    y = (x * 2 + x.exp()).sum()
    nodes, stack = [], [y.grad_fn]
    while stack:
        n = stack.pop()
        nodes.append(n)
        stack += [m for m, _ in n.next_functions if m is not None]
    assert {type(n).__module__ for n in nodes} == {"builtins"}
    assert not own_rule_in_graph([y.grad_fn])
