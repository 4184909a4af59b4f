"""reference_models: every example of the docs, in every style, behind one contract.

Each model (`names()`, `get(name)`) is a `ReferenceModel`: an example generator, its
implementations (numpy with a hand-written backward, torch by hand, torch autograd,
`nn.Module` + optimizer, jax, custom `torch.autograd.Function` where that is the doc's
point), the doc's training loop and the doc's claims as `FidelityCheck`s. An
implementation is called as

    impl(params, data, *, dtype="float64", device="cpu") -> (loss, grads)

with numpy arrays at the boundary. `gradcheck_kit.crosscheck` compares them all.

Importing this package imports neither torch nor jax.

**Example:**
```python
import reference_models

model = reference_models.get("two_layer_relu")
params, data = model.example(seed=0, n=8, d_in=20, h=10, d_out=3)
loss, grads = model.implementations["numpy_manual"](params, data)
```
"""

from __future__ import annotations

from ._arrays import cast
from ._model import (
    Arrays,
    FidelityCheck,
    FidelityResult,
    Implementation,
    ReferenceModel,
    Training,
    TrainingLoop,
    check_dtype,
)
from ._registry import (
    close_matches_hint,
    get,
    names,
    register_implementation,
    register_model,
    unknown_name_message,
    unregister_implementation,
    unregister_model,
)
from ._training import sgd_steps, train

__all__ = [
    "Arrays",
    "FidelityCheck",
    "FidelityResult",
    "Implementation",
    "ReferenceModel",
    "Training",
    "TrainingLoop",
    "cast",
    "check_dtype",
    "close_matches_hint",
    "get",
    "names",
    "register_implementation",
    "register_model",
    "sgd_steps",
    "train",
    "unknown_name_message",
    "unregister_implementation",
    "unregister_model",
]
