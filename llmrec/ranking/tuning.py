"""Inference-time tuning of an adapter's fusion weight: which validation cases, which grid.

The weight itself is picked by :meth:`llmrec.ranking.pipeline.LLMRanker.tune`; this module says
where it may be tuned (never on users an adapter trained on) and over which weights (multiples of
a residual adapter's trained weight, else :data:`DEFAULT_WEIGHT_GRID`). It reads only the
adapter's record (through :func:`llmrec.ranking.adapter_folder.open_adapter_folder`), so
evaluation needs no training code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from llmrec.data.records import EvalCase

#: Fusion weights tried for an adapter that was not trained as a residual ranker (and zero-shot).
DEFAULT_WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
#: A residual adapter's fusion weight is tuned over these multiples of its trained weight.
RESIDUAL_GRID = (0.25, 0.5, 1.0, 2.0, 4.0)


def _training(adapter_dir: str | os.PathLike[str]) -> dict:
    """The training facts in a listwise adapter's record; none for a next-item model (trained
    on the training split only, validation used for early stopping, as the retriever's views)."""
    from llmrec.ranking.adapter_folder import open_adapter_folder
    from llmrec.ranking.backends.nextitem import is_nextitem_folder

    if is_nextitem_folder(adapter_dir):
        return {}
    return open_adapter_folder(adapter_dir).record.training or {}


def tuning_cases(
    valid: Sequence[EvalCase], adapter_dir: str | os.PathLike[str] | None
) -> list[EvalCase]:
    """Validation cases on which an adapter's fusion weight may be tuned: all of them, unless the
    adapter trained on validation targets; then only the users it held out (its record lists
    them)."""
    if adapter_dir is None:
        return list(valid)
    training = _training(adapter_dir)
    users = training.get("heldout_users")
    if users is None or training.get("example_source", "train") == "train":
        return list(valid)
    keep = set(users)
    return [c for c in valid if c.user_id in keep]


def residual_weight(adapter_dir: str | os.PathLike[str] | None) -> float | None:
    """The fusion weight a residual adapter (``training.residual``) was trained at, else None.
    Its scores are a correction to the retriever at about that weight: validation tunes it over
    :data:`RESIDUAL_GRID` times it, not over the grid for plain adapters."""
    if adapter_dir is None:
        return None
    weight = _training(adapter_dir).get("residual_weight")
    return None if weight is None else float(weight)


def fusion_grid(adapter_dir: str | os.PathLike[str] | None) -> tuple[float, ...]:
    """The fusion weights validation tries for this adapter: multiples of a residual adapter's
    trained weight, else the default grid."""
    trained = residual_weight(adapter_dir)
    return DEFAULT_WEIGHT_GRID if trained is None else tuple(trained * f for f in RESIDUAL_GRID)
