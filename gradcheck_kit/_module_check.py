"""Modules as targets: an `nn.Module` checked with respect to its inputs and parameters.

The parameters become inputs of a pure function built with `torch.func.functional_call`,
so every probe, tolerance and localisation of `gradcheck` applies to them unchanged, a
float32 module is checked on float64 copies of its values like any float32 input, and
the caller's module is never written to: its parameters are read once and copied, and
its buffers reach the function as fresh copies at every call.
"""

from __future__ import annotations

import difflib
from typing import Any, Sequence

from ._check import _check_flags, _run, _settings
from ._dropin import TorchOptions
from ._report import Report, raise_for
from ._targets import CheckInputError

__all__ = ["check_module"]


def check_module(
    module: Any,
    inputs: Any = (),
    *,
    parameters: bool | Sequence[str] = True,
    atol: float | None = None,
    rtol: float | None = None,
    mode: str = "auto",
    seed: int = 0,
    raise_exception: bool = True,
    promote: Any = None,
    **kw: Any,
) -> Report:
    """Check a torch `nn.Module`'s derivatives with respect to its inputs and parameters.

    The module runs in the mode it is in (train or eval); its parameters, gradients and
    buffers are left exactly as they were (BatchNorm's running statistics included).
    Elements are named by the parameters' dotted names, e.g. `encoder.0.weight[3, 7]`.

    **Arguments:**
    - `module`: the `torch.nn.Module`; called as `module(*inputs)`.
    - `inputs`: its positional inputs; those with `requires_grad=True` are checked too.
    - `parameters`: `True` (every parameter that requires grad), `False` (inputs only, as
      `gradcheck(module, inputs)` checks), or the dotted names of the parameters to check.
    - the other arguments: as for `gradcheck` (`promote` included: the parameters not
      checked, and other modules the module reaches, run on float64 copies).

    **Returns:** a `Report`, truthy if and only if every comparison passed.

    **Example:**
    ```python
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh())
    assert gradcheck_kit.check_module(net, torch.randn(2, 3))
    ```
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise CheckInputError(
            f"module must be a torch.nn.Module, got a {type(module).__name__}; for a plain "
            f"function use gradcheck(fn, inputs)"
        )
    options = TorchOptions.parse(kw, entry="gradcheck")
    settings = _settings(atol=atol, rtol=rtol, mode=mode, seed=seed, options=options)
    _check_flags(raise_exception)
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    named = dict(module.named_parameters())
    names = _selected(named, parameters)
    values = tuple(
        named[n].detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
        for n in names
    )
    if not values and not any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
        raise CheckInputError(
            f"nothing to check: {type(module).__name__} has no parameter that requires grad "
            f"(or none was selected) and no input requires grad"
        )
    fn = _functional(module, len(args), names)
    report = _run(
        fn, args + values, grad=None, settings=settings, options=options,
        input_names=[f"inputs[{k}]" for k in range(len(args))] + list(names), promote=promote,
    )
    state = "training" if module.training else "eval"
    report.notes.insert(
        0,
        f"module {type(module).__name__} in {state} mode, checked with respect to "
        f"{len(names)} parameter(s) as well as its inputs (torch.func.functional_call; "
        f"its own parameters and buffers untouched)",
    )
    if raise_exception:
        raise_for(report)
    return report


def _selected(named: dict[str, Any], parameters: bool | Sequence[str]) -> tuple[str, ...]:
    """The dotted names of the parameters to check, of the module's `named` parameters."""
    if parameters is True:
        return tuple(n for n, p in named.items() if p.requires_grad)
    if parameters is False:
        return ()
    if isinstance(parameters, str) or not all(isinstance(n, str) for n in parameters):
        raise TypeError(
            f"parameters={parameters!r} must be True, False or a list of parameter names "
            f"such as {list(named)[:2]}"
        )
    for n in parameters:
        if n not in named:
            near = difflib.get_close_matches(n, list(named), n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else f"; it has {list(named)}"
            raise CheckInputError(f"parameters names {n!r}, which the module does not have{hint}")
    return tuple(dict.fromkeys(parameters))


def _functional(module: Any, n_inputs: int, names: Sequence[str]):
    import torch

    buffers = dict(module.named_buffers())

    def call(*args: Any) -> Any:
        values = args[n_inputs:]
        # Floating buffers follow the parameters' dtype, so that a promoted check runs the
        # whole module in float64; fresh copies keep running statistics off the module.
        # With no parameter checked, the inputs say which precision this call runs in (the
        # module's own parameters are then float64 copies in a promoted evaluation).
        dtype = next(
            (
                v.dtype for v in (*values, *args[:n_inputs])
                if isinstance(v, torch.Tensor) and v.is_floating_point()
            ),
            None,
        )
        copies = {
            k: b.to(dtype, copy=True) if dtype and b.is_floating_point() else b.clone()
            for k, b in buffers.items()
        }
        return torch.func.functional_call(
            module, {**dict(zip(names, values)), **copies}, tuple(args[:n_inputs])
        )

    return call
