"""The one fusion formula: LLM scores plus the retriever's opinion, on one scale.

For a list of ``C`` candidates the final score of candidate ``c`` is

    final(c) = llm(c) + weight * z(retrieval)(c)

where ``retrieval`` holds rank scores (the best candidate ``C``, the worst 1; see
:func:`rank_scores`) and ``z`` standardises them over the list (:func:`standardise`). ``weight`` 0
is the pure LLM ranking; ``weight`` ``inf`` is the retriever's order alone. Evaluation, the
recommend pipeline, serving and the residual training loss all call :func:`fuse`; nothing else
writes this formula.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rank_scores(x: np.ndarray) -> np.ndarray:
    """Per-row rank transform: the best finite entry gets the row's count of finite entries, the
    worst 1, non-finite stay ``-inf``. The retriever's scores differ in scale between its methods
    (RRF, z-scores, cold-slot positions); ranks put them on one scale for fusion."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, -np.inf)
    for row in range(x.shape[0]):
        finite = np.flatnonzero(np.isfinite(x[row]))
        order = finite[np.argsort(-x[row, finite], kind="stable")]
        out[row, order] = np.arange(len(order), 0, -1, dtype=np.float64)
    return out


def standardise(x: np.ndarray) -> np.ndarray:
    """Per-row z-scores over finite entries (non-finite become the row minimum)."""
    x = np.array(x, dtype=np.float64, copy=True)
    out = np.zeros_like(x)
    for row in range(x.shape[0]):
        finite = np.isfinite(x[row])
        if not finite.any():
            continue
        values = x[row, finite]
        sd = values.std()
        z = (values - values.mean()) / sd if sd > 0 else np.zeros_like(values)
        out[row, finite] = z
        out[row, ~finite] = z.min() if z.size else 0.0
    return out


def fuse(llm: np.ndarray, retrieval: np.ndarray, weight: float) -> np.ndarray:
    """Final scores, (n, C): ``llm + weight * standardise(retrieval)``.

    ``llm``: the LLM's scores (n, C); ``retrieval``: the retriever's rank scores of the same
    candidates (n, C), higher is better. ``weight`` 0 returns ``llm`` unchanged and ``inf`` the
    retrieval scores (the retriever's order)."""
    llm = np.asarray(llm, dtype=np.float64)
    if weight == float("inf"):
        return np.asarray(retrieval, dtype=np.float64)
    if not weight:
        return llm
    return llm + float(weight) * standardise(retrieval)


def retrieval_order_scores(n: int) -> np.ndarray:
    """Rank scores, (1, n), of a list the retriever returned best first: ``n, n-1, ..., 1``."""
    return np.arange(n, 0, -1, dtype=np.float64)[None, :]


def ranks_to_scores(ranks: Sequence[int]) -> np.ndarray:
    """Rank scores, (1, C), of candidates at retrieval ranks ``ranks`` (1 = best)."""
    return rank_scores(-np.asarray(ranks, dtype=np.float64)[None, :])


def rank_prior(ranks: Sequence[int]) -> np.ndarray:
    """The fusion term per unit weight, (C,), of candidates at retrieval ranks ``ranks`` (1 =
    best): what :func:`fuse` adds at weight 1. The residual training loss uses it as its prior."""
    return standardise(ranks_to_scores(ranks))[0]
