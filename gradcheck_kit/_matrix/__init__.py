"""The cross-check matrix: every implementation of every reference model, checked.

The only layer of gradcheck_kit that imports `reference_models`, and only its public
names. `crosscheck` compares one example's implementations with each other and with the
oracles; `run_fidelity` judges the doc claims the models state as data.
"""

from __future__ import annotations

from typing import Any

import reference_models

from ._crosscheck import crosscheck
from ._results import CrossCheckReport, CrossCheckRow

__all__ = ["CrossCheckReport", "CrossCheckRow", "crosscheck", "reference_model"]


def reference_model(name: str) -> Any:
    """The registered reference model `name`, for the modules outside this layer
    (`strategies`), so that they do not import `reference_models` themselves."""
    return reference_models.get(name)
