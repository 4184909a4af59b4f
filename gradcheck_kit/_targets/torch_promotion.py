"""Float64 copies of the modules and captured tensors a torch function computes with.

A float32 function whose weights live outside its inputs (an `nn.Module` in a closure, a
bound method, a module passed as an argument, a tensor listed in `promote=`) returns
float32, or raises, when only its inputs are promoted. For the float64 evaluations of a
check, those tensors are swapped for float64 copies with the same values, on the objects
themselves, so that every route by which the function reads them sees the copy:

- parameters and listed tensors keep their identity: their `.data` is replaced by a
  float64 copy (what `Module.double()` does), and their `.grad` is set aside;
- floating buffers are replaced in their module's buffer dict by float64 copies, so a
  forward that updates them (BatchNorm's running statistics) writes to the copy.

Every evaluation starts from fresh copies of the original values, and everything is put
back in a `finally`, even on KeyboardInterrupt: between evaluations (and so in every native
evaluation) the objects are exactly the caller's, their values, dtypes, version counters
and gradients unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import types
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

from ._base import CheckInputError

__all__ = ["Promotion", "reachable_modules", "parse_promote"]

#: The dtypes whose tensors are promoted; float64 ones already are, others are not floats.
LOW_PRECISION = (torch.float32, torch.float16, torch.bfloat16)

# How deep the search for modules goes into containers and attributes, and how many objects
# it visits at most: enough for a model held in a dict of an object's attribute, bounded
# for functions whose globals reach large object graphs.
SEARCH_DEPTH = 5
SEARCH_LIMIT = 20000


def reachable_modules(
    fn: Any, inputs: Sequence[Any] = (), names: Sequence[str] | None = None
) -> list[tuple[torch.nn.Module, str]]:
    """The modules `fn` can reach, each with the route by which it was found.

    Modules are found where functions hold them: `fn` itself, the inputs, a bound
    method's object and its attributes, closure cells, default arguments,
    `functools.partial` arguments, the globals the function's code names, and, within
    those, lists, tuples, dicts and plain objects' attributes, a few levels deep. The
    route names the last named step ("closure variable `net`"); `names` labels the inputs.
    """
    labels = list(names) if names is not None else [f"inputs[{k}]" for k in range(len(inputs))]
    found: dict[int, tuple[torch.nn.Module, str]] = {}
    seen: set[int] = set()
    stack: list[tuple[Any, int, str]] = [(fn, 0, "the function itself")]
    stack += [(x, 0, f"the input {label}") for x, label in zip(inputs, labels)]
    while stack and len(seen) < SEARCH_LIMIT:
        obj, depth, route = stack.pop()
        if id(obj) in seen or depth > SEARCH_DEPTH:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.nn.Module):
            found[id(obj)] = (obj, route)
            continue  # module.modules() covers its children
        if isinstance(obj, (torch.Tensor, str, bytes, int, float, complex, bool, type(None))):
            continue
        children: list[tuple[Any, str]] = []
        if isinstance(obj, (list, tuple, set, frozenset)):
            children = [(c, route) for c in obj]
        elif isinstance(obj, dict):
            children = [(c, route) for c in obj.values()]
        elif isinstance(obj, functools.partial):
            children = [(obj.func, route)]
            children += [(c, "a functools.partial argument") for c in obj.args]
            children += [(c, "a functools.partial argument") for c in obj.keywords.values()]
        elif isinstance(obj, types.MethodType):
            children = [(obj.__self__, "the bound method's object"), (obj.__func__, route)]
        elif isinstance(obj, types.FunctionType):
            cells = zip(obj.__code__.co_freevars, obj.__closure__ or ())
            children = [
                (c.cell_contents, f"closure variable `{n}`") for n, c in cells if _has_contents(c)
            ]
            children += [(c, "a default argument") for c in obj.__defaults__ or ()]
            children += [(c, "a default argument") for c in (obj.__kwdefaults__ or {}).values()]
            globals_ = obj.__globals__
            children += [
                (globals_[n], f"global `{n}`") for n in obj.__code__.co_names if n in globals_
            ]
        elif isinstance(obj, (types.ModuleType, type, types.BuiltinFunctionType)):
            continue  # imported packages and classes: not where a model's instance lives
        else:
            attrs = getattr(obj, "__dict__", None)
            if isinstance(attrs, dict):
                children = [(c, f"attribute `{a}`") for a, c in attrs.items()]
        stack.extend((c, depth + 1, r) for c, r in children)
    return list(found.values())


def _has_contents(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def parse_promote(promote: Any) -> tuple[bool, list[torch.Tensor], list[torch.nn.Module]]:
    """`(automatic, tensors, modules)` from gradcheck's `promote=` argument.

    None: the modules the function reaches are promoted where they can be. False: nothing
    outside the inputs is promoted. A tensor, a module, or a sequence of them: those too.
    """
    if promote is None or promote is True:
        return True, [], []
    if promote is False:
        return False, [], []
    items = list(promote) if isinstance(promote, (tuple, list, set, frozenset)) else [promote]
    tensors: list[torch.Tensor] = []
    modules: list[torch.nn.Module] = []
    for k, item in enumerate(items):
        if isinstance(item, torch.nn.Module):
            refusal = _refusal(item)
            if refusal is not None:
                raise CheckInputError(
                    f"promote[{k}] is a {type(item).__name__} that cannot be copied to float64: "
                    f"{refusal}; leave it out of promote="
                )
            modules.append(item)
        elif isinstance(item, torch.Tensor):
            if not item.is_floating_point() or item.layout != torch.strided or item.is_quantized:
                raise CheckInputError(
                    f"promote[{k}] is a {item.dtype} tensor; only dense floating-point tensors "
                    f"are promoted to float64"
                )
            tensors.append(item)
        else:
            raise CheckInputError(
                f"promote[{k}] is a {type(item).__name__}; promote= lists the torch tensors and "
                f"nn.Modules the function captures (or is True, None or False)"
            )
    return True, tensors, modules


def _refusal(module: torch.nn.Module) -> str | None:
    """Why a module's state cannot be replaced by float64 copies (None: it can)."""
    uninitialized = getattr(torch.nn.parameter, "UninitializedTensorMixin", ())
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if uninitialized and isinstance(t, uninitialized):
            return f"{name} is not initialised yet (a lazy module)"
        if t.is_quantized or t.layout != torch.strided or t.is_meta:
            return f"{name} is a {'quantised' if t.is_quantized else 'non-dense'} tensor"
        if isinstance(t, torch.nn.Parameter) and not t.is_floating_point():
            return f"the parameter {name} is {t.dtype}, not floating point"
    return None


@dataclass
class Promotion:
    """The tensors outside the inputs that float64 evaluations see as float64 copies."""

    #: Parameters and listed tensors, each once: their `.data` is swapped.
    tensors: list[torch.Tensor] = field(default_factory=list)
    #: (module, buffer name): floating buffers, replaced in the module's buffer dict.
    buffers: list[tuple[torch.nn.Module, str]] = field(default_factory=list)
    #: (module, parameter name): the slots the promoted parameters sit in.
    slots: list[tuple[torch.nn.Module, str]] = field(default_factory=list)
    #: What is promoted, for the report.
    described: list[str] = field(default_factory=list)
    #: Modules reached but left as they are, with the reason, for the report.
    refused: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls, fn: Any, inputs: Sequence[Any], names: Sequence[str], promote: Any
    ) -> "Promotion":
        automatic, listed_tensors, listed_modules = parse_promote(promote)
        found = reachable_modules(fn, inputs, names) if automatic else []
        routes = {id(m): r for m, r in found}
        modules = [(m, "promote=") for m in listed_modules]
        modules += [(m, r) for m, r in found if id(m) not in {id(x) for x in listed_modules}]
        out = cls()
        seen: set[int] = set()
        covered: set[int] = set()  # modules already inside another promoted module
        for module, route in modules:
            if id(module) in covered:
                continue
            covered.update(id(sub) for sub in module.modules())
            refusal = _refusal(module)
            if refusal is not None:
                out.refused.append(f"module {type(module).__name__} ({route}): {refusal}")
                continue
            n_params = n_buffers = 0
            for sub in module.modules():
                for name, p in sub._parameters.items():
                    if p is None or p.dtype not in LOW_PRECISION:
                        continue
                    out.slots.append((sub, name))
                    if id(p) not in seen:
                        seen.add(id(p))
                        out.tensors.append(p)
                        n_params += 1
                for name, b in sub._buffers.items():
                    if b is not None and b.dtype in LOW_PRECISION:
                        out.buffers.append((sub, name))
                        n_buffers += 1
            if n_params or n_buffers:
                where = "listed in promote=" if route == "promote=" else f"reached through {route}"
                if route == "promote=" and id(module) in routes:
                    where += f" (and reached through {routes[id(module)]})"
                out.described.append(
                    f"module {type(module).__name__} ({_count(n_params, 'parameter')}, "
                    f"{_count(n_buffers, 'buffer')}) {where}"
                )
        n_listed = 0
        for t in listed_tensors:
            if t.dtype in LOW_PRECISION and id(t) not in seen:
                seen.add(id(t))
                out.tensors.append(t)
                n_listed += 1
        if n_listed:
            out.described.append(f"{_count(n_listed, 'tensor')} listed in promote=")
        return out

    def __bool__(self) -> bool:
        return bool(self.tensors or self.buffers)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Float64 copies in place for the duration; the originals back afterwards."""
        stash: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        entries: list[tuple[dict[str, Any], str, Any]] = []
        try:
            for t in self.tensors:
                grad = t.grad if t.is_leaf else None
                stash.append((t, t.data, grad))
                if grad is not None:
                    t.grad = None  # a float32 gradient on a float64 tensor breaks accumulation
                t.data = t.data.to(torch.float64)
            for module, name in self.buffers:
                buf = module._buffers.get(name)
                if buf is None or buf.dtype not in LOW_PRECISION:
                    continue
                entries.append((module._buffers, name, buf))
                module._buffers[name] = buf.detach().to(torch.float64)
            # A forward that assigns a new tensor to a parameter's name must not leave it there.
            entries += [(m._parameters, n, m._parameters.get(n)) for m, n in self.slots]
            yield
        finally:
            for where, name, obj in reversed(entries):
                where[name] = obj
            for t, data, grad in reversed(stash):
                t.data = data
                if t.is_leaf:
                    t.grad = grad


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"
