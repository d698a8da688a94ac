"""Helpers shared by the baselines: encoding sequences to catalogue indices and the validation
metric used for early stopping. No torch here. Config checks live in :mod:`llmrec.validation`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.records import EvalCase, UserSequence


def encode(sequences: Sequence[UserSequence], catalog: Catalog) -> list[np.ndarray]:
    """Catalogue indices of every sequence's items, oldest first (one int64 array per sequence).

    Raises ``KeyError`` naming the item when a sequence holds an item outside ``catalog``.
    """
    return [catalog.indices(seq.item_ids) for seq in sequences]


def item_counts(encoded: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """How often each catalogue item occurs in ``encoded``: float64 array of shape (n_items,)."""
    if not encoded:
        return np.zeros(n_items, dtype=np.float64)
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in encoded])  # (total,)
    return np.bincount(flat, minlength=n_items).astype(np.float64)  # (n_items,)


def ndcg_hr_at_k(
    scores: np.ndarray, cases: Sequence[EvalCase], catalog: Catalog, k: int = 10
) -> tuple[float, float]:
    """Mean NDCG@k and HR@k of ``scores`` (n, N) for ``cases`` under full ranking.

    Items in a case's history are excluded (their score set to ``-inf``) before ranking; ties with
    the target count against it (a pessimistic rank).
    """
    if len(cases) == 0:
        return 0.0, 0.0
    scores = np.array(scores, dtype=np.float64, copy=True)  # (n, N)
    targets = catalog.indices(case.target for case in cases)  # (n,)
    for row, case in enumerate(cases):
        seen = catalog.indices(case.history.item_ids)
        scores[row, seen] = -np.inf
    target_scores = scores[np.arange(len(cases)), targets]  # (n,)
    rank = (scores > target_scores[:, None]).sum(axis=1)  # (n,) 0 = first
    rank += (scores == target_scores[:, None]).sum(axis=1) - 1  # pessimistic ties
    hit = (rank < k) & np.isfinite(target_scores)
    ndcg = np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0)
    return float(ndcg.mean()), float(hit.mean())
