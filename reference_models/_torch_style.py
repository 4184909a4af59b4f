"""Torch styles behind the implementation contract: autograd, `nn.Module` + optimizer.

`AutogradStyle` wraps a loss written on tensors with `requires_grad` (the doc's
`loss.backward()` style); its training loop updates under `torch.no_grad()` and zeroes
`.grad`, as the docs do. `ModuleStyle` wraps an `nn.Module`, a loss module and
`torch.optim.SGD`. Torch is imported when one of them is called, never at import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ._arrays import cast
from ._model import Arrays, Training, check_dtype, full_batch

__all__ = ["AutogradStyle", "ModuleStyle", "grad_or_zeros", "to_numpy", "torch_tensors"]


def torch_tensors(
    values: Mapping[str, object], *, dtype: str, device: str, requires_grad: bool = False
) -> dict[str, Any]:
    """Numpy arrays -> fresh torch tensors (floating ones in `dtype`, integers as int64)."""
    import torch

    out = {}
    for name, a in cast(values, dtype).items():
        # `cast` made a fresh copy: the tensor may share its memory.
        t = torch.from_numpy(a).to(device)
        if t.is_floating_point() and requires_grad:
            t.requires_grad_(True)
        out[name] = t
    return out


def to_numpy(tensor: Any) -> np.ndarray:
    """A numpy copy of a tensor, detached and on the host."""
    return tensor.detach().cpu().numpy().copy()


def grad_or_zeros(p: Any) -> np.ndarray:
    """A numpy copy of `p.grad`; zeros where the loss does not reach `p` (no `.grad`)."""
    return (
        to_numpy(p.grad)
        if p.grad is not None
        else np.zeros(tuple(p.shape), dtype=to_numpy(p).dtype)
    )



def summed_squared_error(module: Any, d: dict[str, Any]) -> Any:
    """The docs' criterion on a module: `MSELoss(reduction="sum")(module(x), y)`."""
    import torch

    return torch.nn.MSELoss(reduction="sum")(module(d["x"]), d["y"])

def lazy_classes(
    module: str, builders: Mapping[str, Callable[[], type]]
) -> Callable[[str], Any]:
    """A module `__getattr__` that builds the torch classes in `builders` on first access.

    `nn.Module` subclasses need torch at class creation; building them on access keeps
    importing the module free of torch.
    """

    def __getattr__(name: str) -> Any:
        if name in builders:
            return builders[name]()
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


def _batches(
    training: Training, data: Mapping[str, np.ndarray], *, dtype: str, device: str
) -> Callable[[int], dict[str, Any]]:
    """Step -> the step's batch as tensors; converted once when every step sees all the data."""
    if training.batch is full_batch:
        whole = torch_tensors(data, dtype=dtype, device=device)
        return lambda t: whole
    return lambda t: torch_tensors(training.batch(data, t), dtype=dtype, device=device)


class AutogradStyle:
    """An implementation from a loss written on torch tensors, differentiated by autograd.

    **Arguments:**
    - `loss`: `loss(params, data) -> 0-d tensor`, both dicts of tensors.
    - `training`: the doc's training loop, used by `train` (`None` where the doc trains
      nothing).

    **Example:** `AutogradStyle(lambda p, d: (p["w"] * d["x"]).sum(), training=Training(lr=0.1, steps=10))`.
    """

    def __init__(
        self,
        loss: Callable[[dict[str, Any], dict[str, Any]], Any],
        *,
        training: Training | None = None,
    ) -> None:
        self.loss = loss
        self.training = training
        self.__doc__ = loss.__doc__

    def __call__(
        self,
        params: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        *,
        dtype: str = "float64",
        device: str = "cpu",
    ) -> tuple[float, Arrays]:
        dtype = check_dtype(dtype)
        p = torch_tensors(params, dtype=dtype, device=device, requires_grad=True)
        d = torch_tensors(data, dtype=dtype, device=device)
        value = self.loss(p, d)
        value.backward()
        return float(value.item()), {name: grad_or_zeros(t) for name, t in p.items()}

    def train(
        self,
        params: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        *,
        steps: int,
        dtype: str = "float64",
        device: str = "cpu",
    ) -> Arrays:
        """The docs' autograd loop: `loss.backward()`, update under `no_grad`, `grad.zero_()`."""
        import torch

        if self.training is None:
            raise ValueError(
                "this example has no training loop in its doc; there is nothing to train"
            )
        dtype = check_dtype(dtype)
        p = torch_tensors(params, dtype=dtype, device=device, requires_grad=True)
        lr, momentum = self.training.lr, self.training.momentum
        batches = _batches(self.training, data, dtype=dtype, device=device)
        buffers: dict[str, Any] = {}
        for t in range(steps):
            d = batches(t)
            self.loss(p, d).backward()
            with torch.no_grad():
                for name, w in p.items():
                    if w.grad is None:
                        continue
                    g = w.grad
                    if momentum:
                        # As torch.optim.SGD: the buffer starts as the first gradient seen.
                        buf = buffers.get(name)
                        buffers[name] = g.clone() if buf is None else buf.mul_(momentum).add_(g)
                        g = buffers[name]
                    w -= lr * g
                    w.grad.zero_()
        return {name: to_numpy(w) for name, w in p.items()}


class ModuleStyle:
    """An implementation from an `nn.Module`, a loss module and `torch.optim.SGD`.

    **Arguments:**
    - `make_module`: `make_module(shapes) -> nn.Module`, `shapes` mapping each parameter
      name of the example to its shape. Its random init runs on a forked RNG (torch's
      global generator is left as it was) and is then overwritten with the example's values.
    - `forward_loss`: `forward_loss(module, data) -> 0-d tensor` (forward + criterion).
    - `binding`: example parameter name -> (module parameter path, transposed?). Every
      module parameter must be bound.
    - `load`, `read`: instead of `binding`, for modules whose parameters do not map one
      to one onto the example's: `load(module, params)` copies the example's tensors in;
      `read(module, grad) -> arrays` reads the parameters (or their gradients) back.
    - `training`: the doc's training loop, used by `train` with `torch.optim.SGD`.

    **Example:** `ModuleStyle(make, fwd, binding={"w1": ("0.weight", True)}, training=t)`.
    """

    def __init__(
        self,
        make_module: Callable[[Mapping[str, tuple[int, ...]]], Any],
        forward_loss: Callable[[Any, dict[str, Any]], Any],
        *,
        training: Training,
        binding: Mapping[str, tuple[str, bool]] | None = None,
        load: Callable[[Any, dict[str, Any]], None] | None = None,
        read: Callable[[Any, bool], Arrays] | None = None,
    ) -> None:
        if (binding is None) == (load is None or read is None):
            raise TypeError("pass either binding=, or both load= and read=")
        self.make_module = make_module
        self.forward_loss = forward_loss
        self.binding = dict(binding or {})
        self._load = load
        self._read = read
        self.training = training

    def module(
        self, params: Mapping[str, np.ndarray], *, dtype: str = "float64", device: str = "cpu"
    ) -> Any:
        """The module holding `params` (numpy arrays), in `dtype` on `device`."""
        import torch

        shapes = {k: tuple(np.shape(v)) for k, v in params.items()}
        # The module's own random init is overwritten below; running it on a forked RNG
        # leaves torch's global generator as the caller had it.
        with torch.random.fork_rng(devices=[]):
            module = self.make_module(shapes)
        module = module.to(device=device, dtype=getattr(torch, dtype))
        tensors = torch_tensors(params, dtype=dtype, device=device)
        with torch.no_grad():
            if self._load is not None:
                self._load(module, tensors)
                return module
            missing = sorted(set(self.binding) - set(params))
            if missing:
                raise ValueError(
                    f"params has no {missing[0]!r}; the module needs {', '.join(self.binding)}."
                )
            bound = {path for path, _ in self.binding.values()}
            unbound = sorted(n for n, _ in module.named_parameters() if n not in bound)
            if unbound:
                raise RuntimeError(
                    f"module parameter {unbound[0]!r} has no example parameter bound to it"
                )
            for name, (path, transposed) in self.binding.items():
                value = tensors[name].T if transposed else tensors[name]
                module.get_parameter(path).copy_(value)
        return module

    def parameters_of(self, module: Any, *, grad: bool = False) -> Arrays:
        """The example's parameters (or their gradients) read back from `module`."""
        if self._read is not None:
            return self._read(module, grad)
        out = {}
        for name, (path, transposed) in self.binding.items():
            p = module.get_parameter(path)
            a = grad_or_zeros(p) if grad else to_numpy(p)
            out[name] = a.T.copy() if transposed else a
        return out

    def __call__(
        self,
        params: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        *,
        dtype: str = "float64",
        device: str = "cpu",
    ) -> tuple[float, Arrays]:
        dtype = check_dtype(dtype)
        module = self.module(params, dtype=dtype, device=device)
        d = torch_tensors(data, dtype=dtype, device=device)
        value = self.forward_loss(module, d)
        value.backward()
        return float(value.item()), self.parameters_of(module, grad=True)

    def train(
        self,
        params: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        *,
        steps: int,
        dtype: str = "float64",
        device: str = "cpu",
    ) -> Arrays:
        """The docs' module loop: `optimizer.zero_grad()`, `loss.backward()`, `optimizer.step()`."""
        import torch

        dtype = check_dtype(dtype)
        module = self.module(params, dtype=dtype, device=device)
        optimizer = torch.optim.SGD(
            module.parameters(), lr=self.training.lr, momentum=self.training.momentum
        )
        batches = _batches(self.training, data, dtype=dtype, device=device)
        for t in range(steps):
            d = batches(t)
            # Zeroed, not set to None (torch >= 2.0's default): a parameter a step does not
            # reach (dynamic_net's `e` when no extra term is drawn) then keeps its momentum
            # moving, as it did when the docs were written and as every other style does.
            # With None, SGD would skip it and the trajectories would part.
            optimizer.zero_grad(set_to_none=False)
            self.forward_loss(module, d).backward()
            optimizer.step()
        return self.parameters_of(module)
