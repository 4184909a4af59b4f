"""Hypothesis strategies for gradient checks: shapes, dtypes, devices, tensors, model examples.

The defaults are safe for gradient checks, unlike the generic array strategies: values are
finite and well scaled (no NaN, no infinity, no subnormals, magnitudes 0 or between 2**-10
and 2), tensors are dense and contiguous, and `requires_grad` is set, never drawn at
random. Non-differentiable points ("kinks") are kept away from only when asked, with
`kinks=`. Every argument that describes a tensor (`shape`, `dtype`, `device`) may itself
be a strategy, and shrinking leads to the smallest shape, to float64, to the cpu and to
values near zero. Realistic sizes work under hypothesis's default settings: arrays of more
than 64 elements are drawn from a seed, a centre and a spread (distinct values over the
whole range) plus a few elements drawn one by one, not one draw per element.

Importing this module imports hypothesis and numpy; torch and jax are imported only when a
tensor of theirs is drawn or their devices are listed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst
from hypothesis.strategies import SearchStrategy

from ._options import DTYPES, available_devices, check_dtypes

__all__ = [
    "ModelExample",
    "devices",
    "dtypes",
    "examples",
    "shapes",
    "tensors",
]

_FRAMEWORKS = ("torch", "jax", "numpy")
# Non-zero magnitudes below this are moved up to it: tiny float64 values underflow or turn
# subnormal when cast to float32 or a half precision, where they lose their relative
# precision and finite differences of them mean nothing.
_MIN_MAGNITUDE = 2.0**-10
_MAX_MAGNITUDE = 2.0


def shapes(
    *, min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 5
) -> SearchStrategy[tuple[int, ...]]:
    """Array shapes small enough for a gradient check, shrinking toward `min_dims` ones.

    **Arguments:**
    - `min_dims`, `max_dims`: bounds on the number of dimensions (0 is a scalar).
    - `min_side`, `max_side`: bounds on each dimension's size.

    **Returns:** a strategy of shape tuples.

    **Example:** `shapes(min_dims=2, max_dims=2)` draws matrix shapes such as `(3, 1)`.
    """
    return npst.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


def dtypes(*, allowed: Sequence[Any] = DTYPES) -> SearchStrategy[str]:
    """Floating dtype names, shrinking toward the first of `allowed`.

    **Arguments:**
    - `allowed`: the dtypes to draw from, as names or numpy, torch or jax dtypes; by default
      float64, float32, bfloat16 and float16.

    **Returns:** a strategy of dtype names such as `"float32"`.

    **Example:** `dtypes(allowed=["float64", "float32"])`.
    """
    return st.sampled_from(check_dtypes(allowed, argument="allowed"))


def devices(*, framework: str = "torch") -> SearchStrategy[str]:
    """The devices available to `framework`, shrinking toward `"cpu"`.

    The cpu is always there; `"cuda:N"` and `"mps"` (torch) or `"cuda:N"` and `"tpu:N"`
    (jax) are added when the machine has them.

    **Arguments:**
    - `framework`: `"torch"` or `"jax"` (`"numpy"` has only the cpu).

    **Returns:** a strategy of device names, usable as `tensors(device=...)`.

    **Example:** `devices()` draws `"cpu"` on a machine without accelerators.
    """
    _check_framework(framework)
    return st.sampled_from(available_devices(framework))


def tensors(
    *,
    shape: int | Sequence[int] | SearchStrategy[tuple[int, ...]] | None = None,
    dtype: Any = "float64",
    device: str | SearchStrategy[str] = "cpu",
    elements: SearchStrategy[float] | Mapping[str, Any] | None = None,
    framework: str = "torch",
    kinks: Sequence[float] = (),
    kink_margin: float = 1e-2,
    requires_grad: bool = True,
) -> SearchStrategy[Any]:
    """Tensors (or jax or numpy arrays) that are safe inputs for a gradient check.

    **Arguments:**
    - `shape`: a shape, an int (one dimension) or a strategy of shapes; `shapes()` if omitted.
    - `dtype`: a floating dtype (name, numpy, torch or jax dtype) or a strategy of them.
    - `device`: a device name such as `"cpu"` or `"cuda:0"`, or a strategy such as `devices()`.
    - `elements`: a strategy of floats, or a mapping of `hypothesis.strategies.floats`
      keyword arguments (`{"min_value": 0.1, "max_value": 3.0}`) that replaces the default
      range; NaN, infinity and subnormals stay excluded unless the mapping allows them.
    - `framework`: `"torch"` (default), `"jax"` or `"numpy"`.
    - `kinks`: points where the function under test is not differentiable (`(0.0,)` for
      relu or abs); every value is kept at least `kink_margin` away from each of them.
    - `kink_margin`: that distance (default 1e-2, far beyond any finite-difference step).
    - `requires_grad`: set on torch tensors (default `True`; never drawn at random).

    **Returns:** a strategy of dense, contiguous tensors or arrays.

    **Example:**
    ```python
    @given(tensors(shape=shapes(max_dims=2), dtype=dtypes(), kinks=(0.0,)))
    def test_relu(x):
        gradcheck_kit.gradcheck(torch.relu, x)
    ```
    """
    _check_framework(framework)
    if not isinstance(requires_grad, bool):
        raise TypeError(
            f"requires_grad={requires_grad!r} is not a bool; gradient checks need a fixed "
            f"choice, so pass True or False."
        )
    shape_strategy = _shape_strategy(shape)
    dtype_strategy = _as_strategy(dtype, check=lambda d: check_dtypes([d], argument="dtype")[0])
    device_strategy = _as_strategy(device, check=_check_device_name)
    value_strategy = _values(elements, kinks=kinks, kink_margin=kink_margin)
    points = sorted(_check_kinks(kinks, kink_margin))
    bounds = _bounds(elements)

    @st.composite
    def draw_tensor(draw: st.DrawFn) -> Any:
        drawn_shape = draw(shape_strategy)
        drawn_dtype = draw(dtype_strategy)
        drawn_device = draw(device_strategy)
        if math.prod(drawn_shape) <= _ELEMENTWISE_LIMIT:
            values = draw(npst.arrays(np.float64, drawn_shape, elements=value_strategy))
        elif bounds is not None:
            values = draw(_dense_values(drawn_shape, bounds, value_strategy, points, kink_margin))
        else:
            values = draw(_pooled_values(drawn_shape, value_strategy))
        return as_framework_array(
            values, dtype=drawn_dtype, device=drawn_device, framework=framework,
            requires_grad=requires_grad,
        )

    return draw_tensor()


@dataclass(frozen=True)
class ModelExample:
    """One drawn example of a reference model: its sizes, seed, dtype and device.

    `build()` makes the example's parameters and data; `id` names it in reports.
    """

    model: str
    sizes: Mapping[str, int] = field(default_factory=dict)
    seed: int = 0
    dtype: str = "float64"
    device: str = "cpu"

    @property
    def id(self) -> str:
        sizes = ",".join(f"{k}={v}" for k, v in self.sizes.items())
        return f"{sizes or 'default'};seed={self.seed}"

    def build(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """`(params, data)` of this example, as `reference_models` makes them."""
        from ._matrix import reference_model

        return reference_model(self.model).example(
            seed=self.seed, dtype=self.dtype, **self.sizes
        )


def examples(
    model_name: str,
    *,
    sizes: Mapping[str, int | SearchStrategy[int]] | None = None,
    dtypes: Sequence[str] | SearchStrategy[str] = ("float64", "float32"),
    devices: Sequence[str] | SearchStrategy[str] | None = None,
    seeds: SearchStrategy[int] | None = None,
) -> SearchStrategy[ModelExample]:
    """Examples of a reference model: sizes, seed, dtype and device drawn together.

    Each size is drawn between 1 and the model's quick size (its doc size when it has no
    quick size), shrinking toward 1, unless `sizes` fixes it or gives its strategy.

    **Arguments:**
    - `model_name`: one of `reference_models.names()`.
    - `sizes`: size name -> a fixed value or a strategy of values.
    - `dtypes`, `devices`: the dtypes and devices to draw from (a sequence or a strategy);
      devices default to every device torch can use here.
    - `seeds`: a strategy of example seeds (by default 0 to 2**31 - 1, shrinking to 0).

    **Returns:** a strategy of `ModelExample`.

    **Example:**
    ```python
    @given(examples("cubic_fit"))
    def test_my_port(ex):
        params, data = ex.build()
        ...
    ```
    """
    from ._matrix import reference_model

    model = reference_model(model_name)
    overrides = dict(sizes or {})
    unknown = sorted(set(overrides) - set(model.default_sizes))
    if unknown:
        raise ValueError(
            f"sizes contains {unknown[0]!r}, which is not a size of {model_name!r}; its "
            f"sizes are: {', '.join(model.default_sizes) or 'none'}."
        )
    size_strategies: dict[str, SearchStrategy[int]] = {}
    for name, default in model.default_sizes.items():
        given = overrides.get(name)
        if isinstance(given, SearchStrategy):
            size_strategies[name] = given
        elif given is not None:
            size_strategies[name] = st.just(given)
        else:
            size_strategies[name] = st.integers(1, max(1, model.quick_sizes.get(name, default)))
    dtype_strategy = (
        dtypes if isinstance(dtypes, SearchStrategy)
        else st.sampled_from(check_dtypes(dtypes, argument="dtypes"))
    )
    if devices is None:
        devices = available_devices("torch")
    device_strategy = devices if isinstance(devices, SearchStrategy) else st.sampled_from(list(devices))
    order = list(model.default_sizes)
    return st.builds(
        ModelExample,
        model=st.just(model_name),
        # In the model's own order, so that ids read the same in every process.
        sizes=st.fixed_dictionaries(size_strategies).map(lambda d: {k: d[k] for k in order}),
        seed=seeds if seeds is not None else st.integers(0, 2**31 - 1),
        dtype=dtype_strategy,
        device=device_strategy,
    )


def _check_framework(framework: str) -> None:
    if framework not in _FRAMEWORKS:
        raise ValueError(
            f"framework={framework!r} is not supported; use one of {list(_FRAMEWORKS)}."
        )


def _shape_strategy(shape: Any) -> SearchStrategy[tuple[int, ...]]:
    if shape is None:
        return shapes()
    if isinstance(shape, SearchStrategy):
        return shape
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    if not (
        isinstance(shape, Sequence)
        and all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise TypeError(
            f"shape={shape!r} is not a shape; pass a tuple of non-negative ints such as "
            f"(3, 4), an int, or a strategy such as shapes()."
        )
    return st.just(tuple(int(n) for n in shape))


def _as_strategy(value: Any, *, check: Any) -> SearchStrategy[Any]:
    if isinstance(value, SearchStrategy):
        return value
    return st.just(check(value))


def _check_device_name(device: Any) -> str:
    if not isinstance(device, str) or not device:
        raise TypeError(
            f"device={device!r} is not a device name; pass a string such as 'cpu' or "
            f"'cuda:0', or a strategy such as devices()."
        )
    return device


def _values(
    elements: SearchStrategy[float] | Mapping[str, Any] | None,
    *,
    kinks: Sequence[float],
    kink_margin: float,
) -> SearchStrategy[float]:
    if elements is None:
        base = st.floats(
            -_MAX_MAGNITUDE, _MAX_MAGNITUDE, allow_nan=False, allow_infinity=False,
            allow_subnormal=False,
        ).map(_well_scaled)
    elif isinstance(elements, SearchStrategy):
        base = elements
    elif isinstance(elements, Mapping):
        options = {"allow_nan": False, "allow_infinity": False, "allow_subnormal": False}
        options.update(elements)
        base = st.floats(**options)
    else:
        raise TypeError(
            f"elements={elements!r} is neither a strategy nor a mapping; pass e.g. "
            f"st.floats(0.1, 3.0) or {{'min_value': 0.1, 'max_value': 3.0}}."
        )
    points = sorted(_check_kinks(kinks, kink_margin))
    if not points:
        return base
    return base.map(lambda x: _away_from(x, points, kink_margin))


# Up to this many elements, each value is its own hypothesis draw (the best exploration and
# shrinking). Beyond it, drawing every element makes hypothesis's smallest example too
# large (its `large_base_example` health check fails for shapes such as (8, 8, 8)), so a
# large array is encoded in a few draws: see `_dense_values` and `_pooled_values`.
_ELEMENTWISE_LIMIT = 64
# Elements of a large array that are still drawn one by one (at drawn positions), so that
# hypothesis can place particular values (a zero, an extreme) inside realistic sizes.
_MAX_DRAWN_ELEMENTS = 8
_DEFAULT_BOUNDS = (-_MAX_MAGNITUDE, _MAX_MAGNITUDE, False, False)


def _bounds(elements: Any) -> tuple[float, float, bool, bool] | None:
    """`(low, high, exclude_low, exclude_high)` of the values, when they are a finite range
    that a seeded generator can fill (the default, or a mapping with both bounds)."""
    if elements is None:
        return _DEFAULT_BOUNDS
    if isinstance(elements, Mapping):
        low, high = elements.get("min_value"), elements.get("max_value")
        if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
            return None
        if elements.get("allow_nan") or elements.get("allow_infinity"):
            return None
        return (float(low), float(high), bool(elements.get("exclude_min")),
                bool(elements.get("exclude_max")))
    return None


@st.composite
def _dense_values(
    draw: st.DrawFn,
    shape: tuple[int, ...],
    bounds: tuple[float, float, bool, bool],
    value_strategy: SearchStrategy[float],
    points: Sequence[float],
    margin: float,
) -> np.ndarray:
    """Distinct values filling `bounds`, from a seed, a centre and a spread (three draws),
    plus a few elements drawn one by one. Shrinks toward a constant array at the value of
    the range nearest zero (all zeros by default)."""
    low, high, exclude_low, exclude_high = bounds
    seed = draw(st.integers(0, 2**32 - 1))
    centre = draw(st.floats(low, high, allow_nan=False, allow_infinity=False))
    spread = draw(st.floats(0.0, 1.0))
    unit = np.random.default_rng(seed).uniform(-1.0, 1.0, size=shape)
    values = centre + spread * unit * (high - low) / 2
    # One reflection brings every value back into [low, high] (it left by at most half the
    # range) and keeps them distinct, unlike clipping.
    values = np.where(values > high, 2 * high - values, values)
    values = np.where(values < low, 2 * low - values, values)
    values = np.clip(values, low, high)
    if exclude_low:
        values = np.where(values <= low, np.nextafter(low, high), values)
    if exclude_high:
        values = np.where(values >= high, np.nextafter(high, low), values)
    if bounds == _DEFAULT_BOUNDS:
        # The same guard as the elementwise default: no magnitudes below _MIN_MAGNITUDE
        # but zero itself.
        tiny = (values != 0.0) & (np.abs(values) < _MIN_MAGNITUDE)
        values = np.where(tiny, np.copysign(_MIN_MAGNITUDE, values), values)
        values = np.clip(values, low, high)
    for k in points:
        near = np.abs(values - k) < margin
        values = np.where(near & (values < k), k - margin, values)
        values = np.where(near & (values >= k), k + margin, values)
    return _with_drawn_elements(draw, values, value_strategy)


@st.composite
def _pooled_values(
    draw: st.DrawFn, shape: tuple[int, ...], value_strategy: SearchStrategy[float]
) -> np.ndarray:
    """Values of a user's element strategy for a large array: a pool of up to 16 drawn
    values placed by a seed, plus a few elements drawn one by one. Shrinks toward an array
    of the strategy's simplest value."""
    pool = np.asarray(draw(st.lists(value_strategy, min_size=1, max_size=16)), dtype=np.float64)
    seed = draw(st.integers(0, 2**32 - 1))
    values = pool[np.random.default_rng(seed).integers(0, len(pool), size=shape)]
    return _with_drawn_elements(draw, values, value_strategy)


def _with_drawn_elements(
    draw: st.DrawFn, values: np.ndarray, value_strategy: SearchStrategy[float]
) -> np.ndarray:
    flat = values.reshape(-1).copy()
    placed = draw(st.lists(
        st.tuples(st.integers(0, flat.size - 1), value_strategy), max_size=_MAX_DRAWN_ELEMENTS
    ))
    for index, value in placed:
        flat[index] = value
    return flat.reshape(values.shape)


def _well_scaled(x: float) -> float:
    if x == 0.0 or abs(x) >= _MIN_MAGNITUDE:
        return x
    return math.copysign(_MIN_MAGNITUDE, x)


def _check_kinks(kinks: Sequence[float], margin: float) -> list[float]:
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise ValueError(
            f"kink_margin={margin!r} is invalid, because values are kept this far from each "
            f"kink and the distance must be a positive finite number. Pass e.g. 1e-2."
        )
    try:
        points = sorted(float(k) for k in kinks)
    except (TypeError, ValueError):
        raise TypeError(
            f"kinks={kinks!r} is not a sequence of numbers; pass e.g. kinks=(0.0,)."
        ) from None
    for a, b in zip(points, points[1:]):
        if b - a < 2 * margin:
            raise ValueError(
                f"kinks {a} and {b} are closer than 2 * kink_margin = {2 * margin}, so no "
                f"value between them can keep its distance from both. Pass a smaller "
                f"kink_margin."
            )
    return points


def _away_from(x: float, points: Sequence[float], margin: float) -> float:
    for k in points:
        if abs(x - k) < margin:
            # Push to the side the value was on, so shrinking still moves values monotonically.
            return k - margin if x < k else k + margin
    return x


def as_framework_array(
    values: np.ndarray, *, dtype: Any, device: str, framework: str, requires_grad: bool = True
) -> Any:
    """`values` as a torch tensor, jax array or numpy array of `dtype` on `device`.

    Torch tensors are leaves with `requires_grad` set as asked. Used by `tensors` and by the
    command line's `check`.

    **Example:** `as_framework_array(np.ones(3), dtype="float32", device="cpu", framework="torch")`.
    """
    _check_framework(framework)
    name = check_dtypes([dtype], argument="dtype")[0]
    if framework == "torch":
        from ._targets.imports import import_framework

        torch = import_framework("torch", needed_for="framework='torch'")
        tensor = torch.from_numpy(values).to(device=device, dtype=getattr(torch, name))
        return tensor.contiguous().requires_grad_(requires_grad)
    if framework == "jax":
        return _jax_array(values, name, device)
    if device != "cpu":
        raise ValueError(
            f"device={device!r} is not available for numpy arrays, which live on the cpu; "
            f"pass device='cpu' or framework='torch' or 'jax'."
        )
    if name == "bfloat16":
        import ml_dtypes

        return values.astype(ml_dtypes.bfloat16)
    return values.astype(name)


def _jax_array(values: np.ndarray, name: str, device: str) -> Any:
    from ._targets.imports import import_framework

    jax = import_framework("jax", needed_for="framework='jax'")
    import jax.numpy as jnp

    platform, _, index = device.partition(":")
    platform = {"cuda": "gpu", "rocm": "gpu"}.get(platform, platform)
    try:
        target = jax.devices(platform)[int(index or 0)]
    except (RuntimeError, IndexError, ValueError):
        raise ValueError(
            f"device={device!r} is not a jax device on this machine; jax has "
            f"{available_devices('jax')}."
        ) from None
    # 64-bit arrays exist only while x64 is enabled; an array made inside the context keeps
    # its dtype afterwards, without changing the caller's global jax configuration.
    with jax.enable_x64(True):
        return jax.device_put(jnp.asarray(values, dtype=name), target)
