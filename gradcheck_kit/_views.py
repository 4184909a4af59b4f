"""Sparse and complex torch functions seen as dense real ones, the way torch checks them.

The engine compares real dense derivatives. A sparse input (COO, CSR, CSC, BSR, BSC) is
replaced by a dense stand-in: its specified values under `masked=True`, every element
otherwise, as torch's gradcheck perturbs them. A complex input becomes its real and
imaginary parts and a complex output two real outputs; with PyTorch's convention for
complex gradients, reverse mode through that real function is the real chain rule, so a
wrong conjugate shows as a wrong Jacobian (torch's `_real_and_imag_input/_output`). The
report names the parts after the caller's inputs and outputs (`inputs[0].imag`,
`output.real`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

__all__ = ["View", "is_module", "jax_complex_view", "module_view", "needs_view", "torch_view"]


@dataclass
class View:
    """A function and inputs to check in place of the caller's, and the names that the
    report gives the stand-ins' inputs and outputs (`inputs[k]` / `outputs[k]` of the
    stand-in -> the caller's name)."""

    function: Callable[..., Any]
    inputs: tuple[Any, ...]
    input_names: dict[str, str] = field(default_factory=dict)
    output_names: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Whether torch's structural checks run on this view (a module with its parameters as
    #: inputs) rather than on the caller's function (sparse and complex views, whose
    #: checks torch runs on the sparse and complex tensors themselves).
    structural: bool = False

    def rename(self, target: Any) -> None:
        """Give the target's inputs and outputs the caller's names."""
        target.input_names = [self.input_names.get(n, n) for n in target.input_names]
        target.output_names = [self.output_names.get(n, n) for n in target.output_names]
        target.notes += self.notes


def needs_view(inputs: Sequence[Any]) -> bool:
    """Whether some input is a sparse tensor or a complex tensor that requires grad (cheap:
    looks at the inputs only; complex outputs show when the target is built)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return False
    return any(
        isinstance(x, torch.Tensor)
        and (x.layout != torch.strided or (x.is_complex() and x.requires_grad))
        for x in inputs
    )


def is_module(fn: Any) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(fn, torch.nn.Module)


def module_view(module: Any, inputs: Sequence[Any]) -> View:
    """An `nn.Module` as a function of its inputs and its trainable parameters.

    The parameters (`requires_grad=True`) become inputs after the caller's, named by their
    dotted names (`encoder.layer1.weight`), and reach the module through
    `torch.func.functional_call`; the module's own parameters are never written. Buffers
    and frozen parameters are read from the module at each call, cast to the checked
    parameters' dtype, so a float32 module is checked as a float64 copy with the same
    values where the check runs in float64 (a BatchNorm's float32 running statistics would
    otherwise refuse float64 inputs). Train or eval mode stays as the module is.
    """
    import torch

    inputs = tuple(inputs)
    trainable = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    names = [name for name, _ in trainable]
    n = len(inputs)

    def call(*args: Any) -> Any:
        xs, ps = args[:n], args[n:]
        dtype = next((p.dtype for p in ps if p.is_floating_point()), None)
        state: dict[str, Any] = {}
        checked = set(names)
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if name in checked or t is None:
                continue
            state[name] = t.detach().to(dtype) if dtype is not None and t.is_floating_point() else t
        state.update(zip(names, ps))
        return torch.func.functional_call(module, state, xs)

    params = tuple(p.detach().clone().requires_grad_(True) for _, p in trainable)
    return View(
        function=call, inputs=inputs + params,
        input_names={f"inputs[{n + k}]": name for k, name in enumerate(names)},
        notes=[
            f"the module was checked with respect to its inputs and its {len(names)} "
            f"trainable parameter tensor(s), by their dotted names, in "
            f"{'train' if module.training else 'eval'} mode"
        ] if names else [],
        structural=True,
    )


def torch_view(
    fn: Callable[..., Any], inputs: Sequence[Any], *, masked: bool, complex_outputs: bool,
    base: View | None = None,
) -> View:
    """The dense real view of `fn` at `inputs` (sparse stand-ins first, then complex parts).

    `complex_outputs`: the function returns complex tensors (split them even where no
    input is complex). `base`: the view `fn` and `inputs` come from (a module's), whose
    names and structural checks carry over.
    """
    import torch

    from ._targets import torch_options as to

    inputs = tuple(inputs)
    known = base.input_names if base is not None else {}
    names = {i: known.get(f"inputs[{i}]", f"inputs[{i}]") for i in range(len(inputs))}
    notes = list(base.notes) if base is not None else []
    if any(isinstance(x, torch.Tensor) and x.layout != torch.strided for x in inputs):
        sparse = to.sparse_as_dense(fn, inputs, masked=masked)
        fn, inputs = sparse.function, sparse.inputs
        names.update(sparse.names)
        notes.append(
            "sparse inputs: " + (
                "masked=True, only the specified values are variables (their gradient must "
                "vanish elsewhere)" if masked else
                "masked=False, every element is a variable, as torch perturbs them"
            )
        )
    complex_inputs = [
        i for i, x in enumerate(inputs)
        if isinstance(x, torch.Tensor) and x.is_complex() and x.requires_grad
    ]
    output_names: dict[str, str] = {}
    if complex_inputs or complex_outputs:
        view = to.complex_as_real(fn, inputs)
        split: dict[str, str] = {}
        position = 0
        for i, x in enumerate(inputs):
            if i in complex_inputs:
                split[f"inputs[{position}]"] = f"{names[i]}.real"
                split[f"inputs[{position + 1}]"] = f"{names[i]}.imag"
                position += 2
            else:
                split[f"inputs[{position}]"] = names[i]
                position += 1
        names = {int(k[7:-1]): v for k, v in split.items()}
        output_names = {f"outputs[{k}]": name for k, name in enumerate(view.output_names)}
        if len(view.output_names) == 1:
            output_names["output"] = view.output_names[0]
        fn, inputs = view.function, view.inputs
        notes.append(
            "complex inputs and outputs were checked through their real and imaginary parts "
            "(PyTorch's convention: the gradient of a real loss L with respect to z = x + iy "
            "is dL/dx + i dL/dy), so a wrong conjugate shows as a wrong Jacobian"
        )
    return View(
        function=fn, inputs=tuple(inputs),
        input_names={f"inputs[{i}]": name for i, name in names.items()},
        output_names=output_names, notes=notes,
        structural=base.structural if base is not None else False,
    )


def jax_has_complex_inputs(inputs: Sequence[Any]) -> bool:
    import jax
    import jax.numpy as jnp

    return any(jnp.iscomplexobj(leaf) for leaf in jax.tree_util.tree_leaves(tuple(inputs)))


def jax_complex_view(fn: Callable[..., Any], inputs: Sequence[Any]) -> View:
    """A jax function of complex arrays as a function of real ones.

    Each complex input leaf becomes the pair (real part, imaginary part), each complex
    output leaf likewise. jax differentiates the real function with its own complex
    convention inside (`vjp` of a holomorphic `f` maps a cotangent `c` to `c f'(z)`), and
    the real chain rule outside, so a `custom_vjp` that conjugates where jax does not
    (PyTorch's convention) shows as a wrong Jacobian.
    """
    import jax
    import jax.numpy as jnp

    inputs = tuple(inputs)
    with_path, treedef = jax.tree_util.tree_flatten_with_path(inputs)
    split = {n for n, (_, leaf) in enumerate(with_path) if jnp.iscomplexobj(leaf)}
    parts = [
        (jnp.real(leaf), jnp.imag(leaf)) if n in split else leaf
        for n, (_, leaf) in enumerate(with_path)
    ]
    real_inputs = jax.tree_util.tree_unflatten(treedef, parts)

    def split_outputs(out: Any) -> Any:
        return jax.tree_util.tree_map(
            lambda o: (jnp.real(o), jnp.imag(o)) if jnp.iscomplexobj(o) else o, out
        )

    def function(*args: Any) -> Any:
        leaves = treedef.flatten_up_to(tuple(args))
        rebuilt = [
            jax.lax.complex(leaf[0], leaf[1]) if n in split else leaf
            for n, leaf in enumerate(leaves)
        ]
        return split_outputs(fn(*jax.tree_util.tree_unflatten(treedef, rebuilt)))

    input_names = {}
    for n, (path, _) in enumerate(with_path):
        if n in split:
            name = f"inputs{jax.tree_util.keystr(path)}"
            input_names[f"{name}[0]"] = f"{name}.real"
            input_names[f"{name}[1]"] = f"{name}.imag"
    sample = jax.tree_util.tree_leaves(fn(*inputs))
    names: list[str] = []
    for k, leaf in enumerate(sample):
        name = "output" if len(sample) == 1 else f"outputs[{k}]"
        names += [f"{name}.real", f"{name}.imag"] if jnp.iscomplexobj(leaf) else [name]
    output_names = {f"outputs[{k}]": name for k, name in enumerate(names)}
    if len(names) == 1:
        output_names["output"] = names[0]
    return View(
        function=function, inputs=tuple(real_inputs), input_names=input_names,
        output_names=output_names,
        notes=[
            "complex inputs and outputs were checked through their real and imaginary parts, "
            "with jax's convention for complex derivatives inside (vjp of a holomorphic f "
            "maps a cotangent c to c f'(z)), so a conjugate where jax has none shows as a "
            "wrong Jacobian"
        ],
    )
