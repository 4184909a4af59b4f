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

__all__ = ["View", "jax_complex_view", "needs_view", "torch_view"]


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


def torch_view(
    fn: Callable[..., Any], inputs: Sequence[Any], *, masked: bool, complex_outputs: bool,
) -> View:
    """The dense real view of `fn` at `inputs` (sparse stand-ins first, then complex parts).

    `complex_outputs`: the function returns complex tensors (split them even where no
    input is complex).
    """
    import torch

    from ._targets import torch_options as to

    inputs = tuple(inputs)
    names = {i: f"inputs[{i}]" for i in range(len(inputs))}
    notes: list[str] = []
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
    )


def _jax_complex(leaf: Any) -> bool:
    """Whether a pytree leaf is a complex array (other leaves, such as a module's activation
    functions, are not arrays at all)."""
    import jax.numpy as jnp

    try:
        return bool(jnp.iscomplexobj(leaf))
    except TypeError:
        return False


def jax_has_complex_inputs(inputs: Sequence[Any]) -> bool:
    import jax

    return any(_jax_complex(leaf) for leaf in jax.tree_util.tree_leaves(tuple(inputs)))


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
    split = {n for n, (_, leaf) in enumerate(with_path) if _jax_complex(leaf)}
    parts = [
        (jnp.real(leaf), jnp.imag(leaf)) if n in split else leaf
        for n, (_, leaf) in enumerate(with_path)
    ]
    real_inputs = jax.tree_util.tree_unflatten(treedef, parts)

    def split_outputs(out: Any) -> Any:
        return jax.tree_util.tree_map(
            lambda o: (jnp.real(o), jnp.imag(o)) if _jax_complex(o) else o, out
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
        names += [f"{name}.real", f"{name}.imag"] if _jax_complex(leaf) else [name]
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
