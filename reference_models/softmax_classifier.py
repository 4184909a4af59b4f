"""The 784-128-64-10 classifier with CrossEntropy, NLL∘LogSoftmax and NLL∘log∘Softmax.

Source: seed `004_2edbd753a91f33fa.txt` ("PyTorch: The Basics", translated):
`nn.Sequential(nn.Linear(input_size, hidden_sizes[0]), nn.ReLU(), nn.Linear(hidden_sizes[0],
hidden_sizes[1]), nn.ReLU(), nn.Linear(hidden_sizes[1], output_size), nn.Softmax(dim=1))`
with, in the course it comes from, `input_size = 784`, `hidden_sizes = [128, 64]`,
`output_size = 10`, mini-batches of 64 and `SGD(lr=0.003)`; criteria `nn.CrossEntropyLoss`,
`nn.NLLLoss` and `nn.LogSoftmax`; `optimizer.zero_grad()` between batches because
gradients otherwise accumulate.

Three heads compute the same loss, the mean negative log-likelihood of the labels:
- `torch_module`: logits (the Sequential without its last layer) into `CrossEntropyLoss`;
- `torch_module_log_softmax_nll`: a `LogSoftmax(dim=1)` head into `NLLLoss`;
- `torch_module_softmax_log_nll`: the doc's own `Softmax(dim=1)` head, `torch.log`, `NLLLoss`.
`numpy_manual`, `torch_manual` (softmax cross-entropy backward `(p - onehot) / n` by hand),
`torch_autograd` (`F.cross_entropy`) and `jax` (`log_softmax` + NLL) complete the matrix.

Params are the Sequential's own names: `0.weight` (128, 784), `0.bias`, `2.weight`
(64, 128), `2.bias`, `4.weight` (10, 64), `4.bias`, drawn as `nn.Linear` draws them.
Data: synthetic, nothing downloaded: `x ~ U[-1, 1]^(n, 784)` (MNIST pixels after the
course's `Normalize((0.5,), (0.5,))`), labels `y = argmax(x @ teacher)` from a seeded
random teacher. The doc size is one mini-batch of 64 rows (the course's batch size); with
more rows a training step uses mini-batch `t` (rows `64 t ... 64 (t+1)`, wrapping around).

What was fixed: the post lists `nn.LogSoftmax` among the criteria; it is the activation
that pairs with `NLLLoss`. `CrossEntropyLoss` expects logits, so the CE head drops the
doc's final `Softmax` (CE on probabilities would be a different, flatter loss).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._arrays import numpy_arrays
from ._claims import agree, claim_result, claims
from ._jax_style import JaxStyle
from ._model import Arrays, FidelityCheck, FidelityResult, ReferenceModel, Training
from ._torch_style import AutogradStyle, ModuleStyle, grad_or_zeros, to_numpy, torch_tensors

__all__ = [
    "MODEL",
    "TRAINING",
    "jax",
    "make_sequential",
    "numpy_manual",
    "torch_autograd",
    "torch_manual",
    "torch_module",
    "torch_module_log_softmax_nll",
    "torch_module_softmax_log_nll",
]

SAME_CLAIM = (
    "CrossEntropy(logits), NLL(LogSoftmax(logits)) and NLL(log(Softmax(logits))) give the same "
    "loss and gradients"
)
ACCUMULATE_CLAIM = (
    "without optimizer.zero_grad() between batches, .grad keeps the previous batches' gradients"
)

LAYERS = ("0", "2", "4")
BATCH = 64


def _mini_batch(data: Mapping[str, np.ndarray], step: int) -> Mapping[str, np.ndarray]:
    n = len(data["y"])
    rows = (step * BATCH + np.arange(BATCH)) % n
    return {"x": data["x"][rows], "y": data["y"][rows]}


TRAINING = Training(lr=0.003, steps=938, batch=_mini_batch)  # one MNIST epoch of 64-batches


def make_example(seed: int, dtype: str, sizes: Mapping[str, int]) -> tuple[Arrays, Arrays]:
    """Synthetic inputs and teacher labels, `nn.Linear`-style init."""
    rng = np.random.default_rng(seed)
    widths = (sizes["input_size"], sizes["hidden1"], sizes["hidden2"], sizes["output_size"])
    params = {}
    for layer, fan_in, fan_out in zip(LAYERS, widths, widths[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        params[f"{layer}.weight"] = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(dtype)
        params[f"{layer}.bias"] = rng.uniform(-bound, bound, (fan_out,)).astype(dtype)
    x = rng.uniform(-1, 1, (sizes["n"], widths[0]))
    y = np.argmax(x @ rng.standard_normal((widths[0], widths[-1])), axis=1).astype(np.int64)
    return params, {"x": x.astype(dtype), "y": y}


def numpy_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """Forward, softmax cross-entropy and backward by hand in numpy."""
    p, d = numpy_arrays(params, data, dtype)
    x, y = d["x"], d["y"]
    n = len(y)
    pre, acts = [], [x]
    for i, layer in enumerate(LAYERS):
        z = acts[-1] @ p[f"{layer}.weight"].T + p[f"{layer}.bias"]
        pre.append(z)
        acts.append(np.maximum(z, 0) if i < len(LAYERS) - 1 else z)
    logits = acts[-1]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_prob[np.arange(n), y].mean()
    delta = np.exp(log_prob)
    delta[np.arange(n), y] -= 1
    delta /= n
    grads: Arrays = {}
    for i in reversed(range(len(LAYERS))):
        layer = LAYERS[i]
        grads[f"{layer}.weight"] = delta.T @ acts[i]
        grads[f"{layer}.bias"] = delta.sum(axis=0)
        if i:
            delta = (delta @ p[f"{layer}.weight"]) * (pre[i - 1] > 0)
    return float(loss), {k: grads[k] for k in params}


def torch_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """The same on torch tensors (`log_softmax` forward, backward by hand)."""
    import torch

    p = torch_tensors(params, dtype=dtype, device=device)
    d = torch_tensors(data, dtype=dtype, device=device)
    x, y = d["x"], d["y"]
    n = y.shape[0]
    rows = torch.arange(n, device=y.device)
    pre, acts = [], [x]
    for i, layer in enumerate(LAYERS):
        z = acts[-1].mm(p[f"{layer}.weight"].t()) + p[f"{layer}.bias"]
        pre.append(z)
        acts.append(z.clamp(min=0) if i < len(LAYERS) - 1 else z)
    log_prob = torch.log_softmax(acts[-1], dim=1)
    loss = -log_prob[rows, y].mean()
    delta = log_prob.exp()
    delta[rows, y] -= 1
    delta /= n
    grads = {}
    for i in reversed(range(len(LAYERS))):
        layer = LAYERS[i]
        grads[f"{layer}.weight"] = to_numpy(delta.t().mm(acts[i]))
        grads[f"{layer}.bias"] = to_numpy(delta.sum(dim=0))
        if i:
            delta = delta.mm(p[f"{layer}.weight"]) * (pre[i - 1] > 0)
    return float(loss.item()), {k: grads[k] for k in params}


def torch_loss(p: dict[str, Any], d: dict[str, Any]) -> Any:
    """Functional forward (`F.linear`, `relu`) and `F.cross_entropy`, autograd backward."""
    import torch.nn.functional as F

    h = d["x"]
    for i, layer in enumerate(LAYERS):
        h = F.linear(h, p[f"{layer}.weight"], p[f"{layer}.bias"])
        if i < len(LAYERS) - 1:
            h = F.relu(h)
    return F.cross_entropy(h, d["y"])


torch_autograd = AutogradStyle(torch_loss, training=TRAINING)


def make_sequential(
    input_size: int, hidden_sizes: tuple[int, int], output_size: int, *, head: str
) -> Any:
    """The doc's `nn.Sequential` with the chosen head.

    **Arguments:**
    - `input_size`, `hidden_sizes`, `output_size`: the layer widths.
    - `head`: `"logits"` (no final activation), `"log_softmax"` or `"softmax"` (the
      doc's `nn.Softmax(dim=1)`).

    **Returns:** an `nn.Sequential` whose linear layers are `0`, `2` and `4`.

    **Example:** `make_sequential(784, (128, 64), 10, head="softmax")`.
    """
    import torch.nn as nn

    layers = [
        nn.Linear(input_size, hidden_sizes[0]),
        nn.ReLU(),
        nn.Linear(hidden_sizes[0], hidden_sizes[1]),
        nn.ReLU(),
        nn.Linear(hidden_sizes[1], output_size),
    ]
    heads = {"logits": [], "log_softmax": [nn.LogSoftmax(dim=1)], "softmax": [nn.Softmax(dim=1)]}
    if head not in heads:
        raise ValueError(
            f"head={head!r} is not a head of the classifier; use one of {', '.join(heads)}."
        )
    return nn.Sequential(*layers, *heads[head])


def _maker(head: str) -> Any:
    def make(shapes: Mapping[str, tuple[int, ...]]) -> Any:
        h1, input_size = shapes["0.weight"]
        h2, _ = shapes["2.weight"]
        output_size, _ = shapes["4.weight"]
        return make_sequential(input_size, (h1, h2), output_size, head=head)

    return make


def _cross_entropy(module: Any, d: dict[str, Any]) -> Any:
    import torch

    return torch.nn.CrossEntropyLoss()(module(d["x"]), d["y"])


def _nll(module: Any, d: dict[str, Any]) -> Any:
    import torch

    return torch.nn.NLLLoss()(module(d["x"]), d["y"])


def _nll_of_log(module: Any, d: dict[str, Any]) -> Any:
    import torch

    return torch.nn.NLLLoss()(torch.log(module(d["x"])), d["y"])


_BINDING = {
    f"{layer}.{kind}": (f"{layer}.{kind}", False) for layer in LAYERS for kind in ("weight", "bias")
}
torch_module = ModuleStyle(_maker("logits"), _cross_entropy, binding=_BINDING, training=TRAINING)
torch_module_log_softmax_nll = ModuleStyle(
    _maker("log_softmax"), _nll, binding=_BINDING, training=TRAINING
)
torch_module_softmax_log_nll = ModuleStyle(
    _maker("softmax"), _nll_of_log, binding=_BINDING, training=TRAINING
)


def jax_loss(p: dict[str, Any], d: dict[str, Any], static: dict[str, int]) -> Any:
    """Forward, `log_softmax` and NLL in jax; its gradient comes from `jax.grad`."""
    import jax
    import jax.numpy as jnp

    h = d["x"]
    for i, layer in enumerate(LAYERS):
        h = h @ p[f"{layer}.weight"].T + p[f"{layer}.bias"]
        if i < len(LAYERS) - 1:
            h = jnp.maximum(h, 0)
    log_prob = jax.nn.log_softmax(h, axis=1)
    return -jnp.mean(jnp.take_along_axis(log_prob, d["y"][:, None], axis=1))


jax = JaxStyle(jax_loss)


def _same_as_cross_entropy(
    model: ReferenceModel, implementation: str, *, dtype: str, device: str
) -> FidelityResult:
    params, data = model.example(seed=0, dtype=dtype)
    loss_ce, grads_ce = model.implementations["torch_module"](
        params, data, dtype=dtype, device=device
    )
    loss, grads = model.implementations[implementation](params, data, dtype=dtype, device=device)
    pairs = {"loss": (loss, loss_ce), **{k: (grads[k], grads_ce[k]) for k in grads_ce}}
    same = agree(dtype, pairs, terms=model.rounding_terms(params, data))
    worst = same.worst
    return claim_result(
        model, "same_as_cross_entropy", implementation, dtype,
        passed=same.passed,
        observed=(
            f"largest difference from CrossEntropyLoss: {worst} {same.describe(worst)} "
            f"(margin {same.comparisons[worst].margin:.3g})"
        ),
        figures=same.margins(),
    )


def _grads_accumulate(
    model: ReferenceModel, implementation: str, *, dtype: str, device: str
) -> FidelityResult:
    # Two different mini-batches at the doc's widths.
    params, data = model.example(seed=0, dtype=dtype, n=2 * BATCH)
    style = model.implementations[implementation]
    module = style.module(params, dtype=dtype, device=device)
    batches = [torch_tensors(TRAINING.batch(data, t), dtype=dtype, device=device) for t in (0, 1)]
    separate = []
    for batch in batches:
        module.zero_grad()
        style.forward_loss(module, batch).backward()
        separate.append({n: grad_or_zeros(p) for n, p in module.named_parameters()})
    module.zero_grad()
    for batch in batches:  # no zero_grad between the two batches
        style.forward_loss(module, batch).backward()
    kept = {n: grad_or_zeros(p) for n, p in module.named_parameters()}
    terms = model.rounding_terms(params, data)
    summed = agree(dtype, {n: (kept[n], separate[0][n] + separate[1][n]) for n in kept}, terms=terms)
    last = agree(dtype, {n: (kept[n], separate[1][n]) for n in kept}, terms=terms)
    sum_margin = summed.comparisons[summed.worst].margin
    last_margin = last.comparisons[last.worst].margin
    return claim_result(
        model, "grads_accumulate", implementation, dtype,
        passed=sum_margin <= 1.0 < last_margin,
        observed=(
            f"two backward passes without zero_grad: margin {sum_margin:.3g} against the sum of "
            f"the two batches' gradients, {last_margin:.3g} against the last batch's alone"
        ),
        figures={"sum_margin": sum_margin, "last_batch_margin": last_margin},
    )


def _rounding_terms(params: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray]) -> int:
    # The forward's dot products (input_size terms, then each layer's width), the softmax
    # sums and the backward's sums over the batch (n).
    n, input_size = np.shape(data["x"])
    return int(n + input_size + sum(np.shape(params[f"{layer}.weight"])[0] for layer in LAYERS))


MODEL = ReferenceModel(
    name="softmax_classifier",
    description="784-128-64-10 ReLU classifier; CrossEntropy, NLL∘LogSoftmax, NLL∘log∘Softmax heads",
    source="seeds/004_2edbd753a91f33fa.txt",
    default_sizes={"n": 64, "input_size": 784, "hidden1": 128, "hidden2": 64, "output_size": 10},
    quick_sizes={"n": 128, "input_size": 20, "hidden1": 12, "hidden2": 8, "output_size": 5},
    hyper={"lr": TRAINING.lr, "batch": BATCH, "steps": TRAINING.steps, "optimizer": "SGD"},
    make_example=make_example,
    implementations={
        "numpy_manual": numpy_manual,
        "torch_manual": torch_manual,
        "torch_autograd": torch_autograd,
        "torch_module": torch_module,
        "torch_module_log_softmax_nll": torch_module_log_softmax_nll,
        "torch_module_softmax_log_nll": torch_module_softmax_log_nll,
        "jax": jax,
    },
    training=TRAINING,
    fidelity=claims(
        FidelityCheck(
            name="same_as_cross_entropy",
            claim=SAME_CLAIM,
            run=_same_as_cross_entropy,
            styles=("torch_module_log_softmax_nll", "torch_module_softmax_log_nll"),
        ),
        FidelityCheck(
            name="grads_accumulate",
            claim=ACCUMULATE_CLAIM,
            run=_grads_accumulate,
            styles=("torch_module", "torch_module_log_softmax_nll", "torch_module_softmax_log_nll"),
        ),
    ),
    rounding_terms=_rounding_terms,
)
