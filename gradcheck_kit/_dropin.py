"""The options of `torch.autograd.gradcheck` / `gradgradcheck`, parsed once for the entry points.

`TorchOptions` holds them with torch's defaults and remembers which ones the caller set
(`given`), so that an option keeps its meaning where a user set it and the default
behaviour stays gradcheck_kit's own where not. The consistency rules are torch's. This
module imports no framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable

__all__ = ["TorchOptions", "function_and_inputs", "validate_option_rules"]


@dataclass(frozen=True)
class TorchOptions:
    """torch.autograd.gradcheck's options, with torch's defaults.

    `eps=None`: the finite-difference step is derived (torch's default is 1e-6);
    `fast_mode=None`: not given (torch's default, False, is the full Jacobian).
    `given` names the options the caller passed.
    """

    eps: float | None = None
    nondet_tol: float = 0.0
    check_undefined_grad: bool = True
    check_grad_dtypes: bool = False
    check_batched_grad: bool = False
    check_batched_forward_grad: bool = False
    check_forward_ad: bool = False
    check_backward_ad: bool = True
    fast_mode: bool | None = None
    masked: bool | None = None
    given: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls) if f.name != "given")

    @classmethod
    def parse(cls, kw: dict[str, Any], *, entry: str = "gradcheck") -> TorchOptions:
        """The options in `kw` (every key must be one); raises `TypeError`/`ValueError`
        naming the argument for an unknown or malformed one."""
        unknown = sorted(set(kw) - cls.names())
        if unknown:
            raise TypeError(
                f"{entry} got unexpected keyword argument(s) {unknown}. Accepted: grad, atol, "
                f"rtol, mode, seed, raise_exception, promote, and torch.autograd.{entry}'s "
                f"{sorted(cls.names())}"
            )
        values = dict(kw)
        for name in (
            "check_undefined_grad", "check_grad_dtypes", "check_batched_grad",
            "check_batched_forward_grad", "check_forward_ad", "check_backward_ad",
        ):
            if name in values:
                require_bool(name, values[name])
        for name in ("fast_mode", "masked"):
            if values.get(name) is not None and not isinstance(values[name], bool):
                raise TypeError(f"{name}={values[name]!r} must be True, False or None")
        eps = values.get("eps")
        if eps is not None and not (
            isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps > 0
        ):
            raise ValueError(f"eps={eps!r} is invalid: a finite-difference step must be positive")
        tol = values.get("nondet_tol", 0.0)
        if tol is None:
            tol = 0.0
        if not (isinstance(tol, (int, float)) and not isinstance(tol, bool) and tol >= 0):
            raise ValueError(
                f"nondet_tol={tol!r} is invalid: it must be a non-negative number"
            )
        values["nondet_tol"] = float(tol)
        options = cls(**values, given=frozenset(kw))
        validate_option_rules(
            check_forward_ad=options.check_forward_ad,
            check_backward_ad=options.check_backward_ad,
            check_batched_grad=options.check_batched_grad,
            check_batched_forward_grad=options.check_batched_forward_grad,
        )
        return options

    @property
    def forward_only(self) -> bool:
        """`check_backward_ad=False`: forward mode is what is checked, not the backward."""
        return not self.check_backward_ad

    def structural(self) -> dict[str, Any]:
        """The options that select torch's structural checks (keyword arguments of
        `torch_options.option_comparisons`)."""
        return {
            "check_undefined_grad": self.check_undefined_grad,
            "check_batched_grad": self.check_batched_grad,
            "check_batched_forward_grad": self.check_batched_forward_grad,
            "check_grad_dtypes": self.check_grad_dtypes,
            "check_forward_ad": self.check_forward_ad,
            "check_backward_ad": self.check_backward_ad,
            "masked": self.masked,
            "nondet_tol": self.nondet_tol,
        }

    def non_default(self) -> list[str]:
        """The options set to other values than torch's defaults, as `name=value`."""
        default = TorchOptions()
        return [
            f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
            if f.name != "given" and getattr(self, f.name) != getattr(default, f.name)
        ]


def validate_option_rules(
    *,
    check_forward_ad: bool,
    check_backward_ad: bool,
    check_batched_grad: bool,
    check_batched_forward_grad: bool,
) -> None:
    """Refuse the option combinations torch refuses, naming the argument and the fix."""
    for name, value in (
        ("check_forward_ad", check_forward_ad),
        ("check_backward_ad", check_backward_ad),
        ("check_batched_grad", check_batched_grad),
        ("check_batched_forward_grad", check_batched_forward_grad),
    ):
        require_bool(name, value)
    if not (check_forward_ad or check_backward_ad):
        raise ValueError(
            "check_forward_ad=False with check_backward_ad=False leaves nothing to check; "
            "set at least one of them to True"
        )
    if check_batched_grad and not check_backward_ad:
        raise ValueError(
            "check_batched_grad=True checks the backward under vmap, which "
            "check_backward_ad=False turns off; set check_batched_grad=False or "
            "check_backward_ad=True"
        )
    if check_batched_forward_grad and not check_forward_ad:
        raise ValueError(
            "check_batched_forward_grad=True checks forward mode under vmap; it needs "
            "check_forward_ad=True"
        )


_MISSING: Any = object()


def require_bool(name: str, value: Any) -> None:
    """A flag argument is True or False: torch's users pass bools, and 0/1 or None are
    more likely a mistake than a choice."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be True or False")


def function_and_inputs(
    entry: str, func: Any, fn: Any, inputs: Any
) -> tuple[Callable[..., Any], Any]:
    """The function (torch's `func=`, or `fn=`, or the first positional argument) and the
    inputs, with Python's own errors for a missing or doubled argument."""
    if func is not _MISSING and fn is not _MISSING:
        raise TypeError(f"{entry}() got the function twice (func= and fn=); pass it once")
    if func is _MISSING:
        func = fn
    if func is _MISSING:
        raise TypeError(f"{entry}() missing required argument: 'func' (the function to check)")
    if inputs is _MISSING:
        raise TypeError(f"{entry}() missing required argument: 'inputs'")
    return func, inputs
