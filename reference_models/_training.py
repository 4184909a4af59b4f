"""Running the doc's training loop with any implementation: `train` and `sgd_steps`."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._model import Arrays, Implementation, ReferenceModel, Training, check_dtype

__all__ = ["sgd_steps", "train"]


def train(
    model: ReferenceModel | str,
    implementation: str,
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    steps: int,
    dtype: str = "float64",
    device: str = "cpu",
) -> Arrays:
    """Run `steps` steps of the doc's training loop with one implementation.

    Uses the implementation's own loop where the model has one (optimizer objects,
    in-place updates under `no_grad`), and otherwise applies `model.training` to the
    implementation's gradients with `sgd_steps`.

    **Arguments:**
    - `model`: a `ReferenceModel` or its name.
    - `implementation`: the name of one of its implementations.
    - `params`, `data`: the starting point (numpy arrays; not modified).
    - `steps`: number of steps (0 returns a copy of `params`).
    - `dtype`, `device`: where to run.

    **Returns:** the parameters after `steps` steps, as numpy arrays of `dtype`.

    **Example:** `train("cubic_fit", "jax", *get("cubic_fit").example(), steps=10)`.
    """
    if isinstance(model, str):
        from ._registry import get

        model = get(model)
    if implementation not in model.implementations:
        raise ValueError(
            f"implementation={implementation!r} is not an implementation of {model.name!r}; "
            f"its implementations are: {', '.join(model.implementations)}."
        )
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps={steps!r} is not a non-negative integer; pass e.g. steps=5.")
    dtype = check_dtype(dtype)
    if model.training is None:
        raise ValueError(
            f"model {model.name!r} has no training loop (its doc trains nothing), so there "
            f"are no steps to run; check its gradients with crosscheck instead."
        )
    loop = model.training_loops.get(implementation)
    if loop is not None:
        out = loop(params, data, steps=int(steps), dtype=dtype, device=device)
        return {k: np.asarray(v) for k, v in out.items()}
    return sgd_steps(
        model.implementations[implementation],
        model.training,
        params,
        data,
        steps=int(steps),
        dtype=dtype,
        device=device,
    )


def sgd_steps(
    impl: Implementation,
    training: Training,
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    steps: int,
    dtype: str = "float64",
    device: str = "cpu",
) -> Arrays:
    """`steps` steps of `torch.optim.SGD`'s update rule, in `dtype`, on `impl`'s gradients.

    The update is the one `torch.optim.SGD` applies (`buf = grad` on the first step, then
    `buf = momentum * buf + grad`; `p -= lr * buf`), so trajectories of styles that use
    the optimizer object and of styles that are driven here can be compared.

    **Returns:** the final parameters.

    **Example:** `sgd_steps(cubic_fit.numpy_manual, Training(lr=1e-6, steps=2000), p, d, steps=3)`.
    """
    np_dtype = np.dtype(dtype)
    p = {k: np.array(v, dtype=np_dtype) for k, v in params.items()}
    buffers: dict[str, np.ndarray] = {}
    for t in range(steps):
        _, grads = impl(p, training.batch(data, t), dtype=dtype, device=device)
        for name in p:
            if name not in grads:
                raise ValueError(
                    f"step {t}: the implementation returned no gradient for {name!r}; return "
                    f"one gradient per parameter ({', '.join(p)})."
                )
            g = np.asarray(grads[name], dtype=np_dtype)
            if g.shape != p[name].shape:
                raise ValueError(
                    f"the gradient of {name!r} has shape {g.shape}, but the parameter has "
                    f"shape {p[name].shape}; return one gradient per parameter, of its shape."
                )
            if training.momentum:
                buf = buffers.get(name)
                buf = g.copy() if buf is None else training.momentum * buf + g
                buffers[name] = buf.astype(np_dtype, copy=False)
                g = buffers[name]
            p[name] = (p[name] - training.lr * g).astype(np_dtype, copy=False)
    return p


def loss_trace(
    model: ReferenceModel,
    implementation: str,
    *,
    chunks: int,
    steps: int,
    dtype: str,
    device: str,
) -> tuple[list[float], Arrays]:
    """The loss on `model`'s seed-0 example before training and after each of `chunks` runs.

    Each run is `steps` steps of `train`, continuing from the previous one.

    **Returns:** `(losses, params)`: `chunks + 1` losses and the final parameters.
    """
    params, data = model.example(seed=0, dtype=dtype)
    impl = model.implementations[implementation]
    losses = [impl(params, data, dtype=dtype, device=device)[0]]
    for _ in range(chunks):
        params = train(
            model, implementation, params, data, steps=steps, dtype=dtype, device=device
        )
        losses.append(impl(params, data, dtype=dtype, device=device)[0])
    return losses, params
