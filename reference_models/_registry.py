"""The registry of reference models: built-in doc examples plus whatever users add.

Built-in models are listed by module name and imported on first `get`, so `names()` and
`import reference_models` import neither torch nor jax (the model modules import them
inside their implementations).
"""

from __future__ import annotations

import difflib
import importlib

from ._model import Implementation, ReferenceModel, TrainingLoop

__all__ = [
    "get",
    "names",
    "register_implementation",
    "register_model",
    "unregister_implementation",
    "unregister_model",
]

# Model name -> module holding its `MODEL`; the order is the catalogue's.
_BUILTIN: dict[str, str] = {
    "two_layer_relu": "reference_models.two_layer_relu",
    "cubic_fit": "reference_models.cubic_fit",
    "legendre_fit": "reference_models.legendre_fit",
    "dynamic_net": "reference_models.dynamic_net",
    "autograd_basics": "reference_models.autograd_basics",
    "graph_e": "reference_models.graph_e",
    "linear_w": "reference_models.linear_w",
    "linear_wb": "reference_models.linear_wb",
    "sigmoid_mlp": "reference_models.sigmoid_mlp",
    "softmax_classifier": "reference_models.softmax_classifier",
    "hand_sigmoid": "reference_models.hand_sigmoid",
}

_loaded: dict[str, ReferenceModel] = {}
_user: dict[str, ReferenceModel] = {}


def names() -> list[str]:
    """The names of all registered models: the doc examples first, then users' models.

    **Example:** `"two_layer_relu" in reference_models.names()`.
    """
    return list(_BUILTIN) + [n for n in _user if n not in _BUILTIN]


def get(name: str) -> ReferenceModel:
    """The model registered as `name`.

    **Arguments:**
    - `name`: one of `names()`.

    **Returns:** the `ReferenceModel` (the same object on every call, so implementations
    registered on it are seen by everyone).

    **Example:** `reference_models.get("cubic_fit").default_sizes == {"points": 2000}`.
    """
    if not isinstance(name, str):
        raise TypeError(f"name={name!r} is not a model name; pass a string from names().")
    if name in _user:
        return _user[name]
    if name in _BUILTIN:
        if name not in _loaded:
            module = importlib.import_module(_BUILTIN[name])
            _loaded[name] = module.MODEL
        return _loaded[name]
    raise ValueError(unknown_name_message("model", name, names()))


def register_model(model: ReferenceModel, *, replace: bool = False) -> None:
    """Add a whole model to the registry (and so to `crosscheck` and `verify`).

    **Arguments:**
    - `model`: a `ReferenceModel`.
    - `replace`: allow replacing a model already registered under `model.name`.

    **Example:** `register_model(ReferenceModel(name="my_model", ...))`.
    """
    if not isinstance(model, ReferenceModel):
        raise TypeError(
            f"model={model!r} is not a ReferenceModel; build one with "
            f"reference_models.ReferenceModel(name=..., make_example=..., ...)."
        )
    if not replace and model.name in names():
        raise ValueError(
            f"a model named {model.name!r} is already registered; pass replace=True to "
            f"replace it, or choose another name."
        )
    _user[model.name] = model


def unregister_model(name: str) -> None:
    """Remove a model added with `register_model` (the doc examples stay).

    **Example:** `unregister_model("my_model")`.
    """
    if name in _user:
        del _user[name]
        return
    if name in _BUILTIN:
        raise ValueError(
            f"{name!r} is one of the doc examples, which cannot be unregistered; remove its "
            f"implementations with unregister_implementation instead."
        )
    raise ValueError(unknown_name_message("model", name, [n for n in _user]))


def register_implementation(
    model_name: str,
    impl_name: str,
    impl: Implementation,
    *,
    train: TrainingLoop | None = None,
    replace: bool = False,
) -> None:
    """Add an implementation (your kernel, your port) to a model's matrix.

    **Arguments:**
    - `model_name`: one of `names()`.
    - `impl_name`: the name it is reported under.
    - `impl`: called as `impl(params, data, *, dtype="float64", device="cpu")` and
      returning `(loss, grads)`, numpy arrays at the boundary.
    - `train`: optionally the implementation's own training loop,
      `train(params, data, *, steps, dtype, device) -> params`; without one, trajectories
      apply the model's `Training` to `impl`'s gradients.
    - `replace`: allow replacing an implementation of the same name.

    **Example:**
    ```python
    def my_port(params, data, *, dtype="float64", device="cpu"):
        ...
        return loss, {"w1": g1, "w2": g2}

    reference_models.register_implementation("two_layer_relu", "my_port", my_port)
    ```
    """
    model = get(model_name)
    if not isinstance(impl_name, str) or not impl_name:
        raise TypeError(
            f"impl_name={impl_name!r} is not a non-empty string; name the implementation."
        )
    if not callable(impl):
        raise TypeError(
            f"impl={impl!r} is not callable; pass a function called as "
            f"impl(params, data, *, dtype, device) -> (loss, grads)."
        )
    if train is not None and not callable(train):
        raise TypeError(
            f"train={train!r} is not callable; pass a function called as "
            f"train(params, data, *, steps, dtype, device) -> params, or None."
        )
    if impl_name in model.implementations and not replace:
        raise ValueError(
            f"{model_name!r} already has an implementation named {impl_name!r}; pass "
            f"replace=True to replace it, or choose another name."
        )
    model.implementations[impl_name] = impl
    if train is not None:
        model.training_loops[impl_name] = train
    else:
        model.training_loops.pop(impl_name, None)


def unregister_implementation(model_name: str, impl_name: str) -> None:
    """Remove an implementation (and its training loop) from a model's matrix.

    **Example:** `unregister_implementation("two_layer_relu", "my_port")`.
    """
    model = get(model_name)
    if impl_name not in model.implementations:
        raise ValueError(
            unknown_name_message(f"implementation of {model_name!r}", impl_name, list(model.implementations))
        )
    del model.implementations[impl_name]
    model.training_loops.pop(impl_name, None)


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    """'NAME is not a registered KIND. Did you mean ...? Known: ...'."""
    hint = close_matches_hint(name, known)
    return f"{name!r} is not a registered {kind}.{hint} Known: {', '.join(known) or 'none'}."


def close_matches_hint(name: str, known: list[str]) -> str:
    """' Did you mean 'a' or 'b'?' for the known names closest to `name`, or ''."""
    close = difflib.get_close_matches(str(name), known, n=3)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
