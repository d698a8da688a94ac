"""Ranking metrics from the 0-based rank of each user's single target (``None`` = not ranked).

With one relevant item per user: HR@K = Recall@K = [rank < K]; NDCG@K = 1 / log2(rank + 2) if
rank < K (the ideal DCG is 1); MRR@K = 1 / (rank + 1) if rank < K. Each is averaged over users;
a target the model did not rank (excluded, or missed by a retriever) counts as a miss.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

DEFAULT_KS = (1, 5, 10, 20)


def metric_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    return [f"{m}@{k}" for m in ("HR", "NDCG", "MRR") for k in ks]


def metrics_from_ranks(
    ranks: Iterable[int | None], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """Mean HR@K, NDCG@K and MRR@K over users; ``ranks`` holds 0-based ranks or ``None``."""
    r = np.array([np.inf if x is None else float(x) for x in ranks], dtype=float)
    if r.size == 0:
        raise ValueError("no ranks given: cannot average metrics over zero users")
    if (r < 0).any():
        raise ValueError("ranks must be >= 0 (0 is the top position)")
    out: dict[str, float] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"cut-off K must be >= 1, got {k}")
        hit = r < k
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(np.where(hit, r, 0) + 2), 0).mean())
        out[f"MRR@{k}"] = float(np.where(hit, 1.0 / (np.where(hit, r, 0) + 1), 0).mean())
    return {name: out[name] for name in metric_names(ks)}
