"""The two evaluation protocols: full ranking over the catalogue, and 20 sampled candidates.

- ``full`` (LlamaRec, OpenP5, RecBole): the model scores every item; items in the user's history
  are removed from the ranking. A target that is itself in the history (repeat consumption) can
  then not be ranked and counts as a miss; the report counts such users.
- ``sampled`` (LLaRA, A-LLMRec): the target plus ``n_negatives`` items drawn uniformly, without
  replacement, from items the user never interacted with; seeded per user (the same user gets the
  same candidates whatever else is evaluated) and shuffled, so no position carries the answer.

The full protocol ranks in one of two ways (:class:`FullRanking`): ``dense`` copies every
user's scores for all items (float64) and counts the target's exact rank; ``top-k`` asks the
model for each user's ``depth`` best items (:meth:`~llmrec.recommender.Recommender.top_k`) and
finds the target in that list, so a target beyond ``depth`` gets no rank. Every metric at K <=
``depth`` is the same either way.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from enum import Enum

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.records import EvalCase
from llmrec.data.topk import top_k_rows


class Protocol(str, Enum):
    FULL = "full"
    SAMPLED = "sampled"


class FullRanking(str, Enum):
    """How the full protocol ranks: ``dense`` rows, ``top-k`` lists, or ``auto`` (top-k lists
    from :data:`~llmrec.data.topk.SPARSE_MIN_ITEMS` catalogue items on)."""

    AUTO = "auto"
    DENSE = "dense"
    TOP_K = "top-k"


def user_rng(seed: int, user_id: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the user, not on evaluation order."""
    return np.random.default_rng([seed, zlib.crc32(user_id.encode("utf-8"))])


def sample_candidates(
    cases: Sequence[EvalCase],
    catalog: Catalog,
    interacted: Mapping[str, set[int]],
    n_negatives: int = 19,
    seed: int = 0,
) -> np.ndarray:
    """Catalogue indices of shape ``(len(cases), n_negatives + 1)``: target + negatives, shuffled.

    ``interacted[user_id]`` holds the catalogue indices of every item the user ever interacted
    with (all of their data, not only the history), which negatives must avoid.
    """
    n_items = len(catalog)
    out = np.empty((len(cases), n_negatives + 1), dtype=np.int64)
    for row, case in enumerate(cases):
        seen = interacted.get(case.user_id, set())
        target = catalog.index(case.target)
        available = n_items - len(seen | {target})
        if available < n_negatives:
            raise ValueError(
                f"user {case.user_id!r} has interacted with all but {available} of {n_items} "
                f"items; cannot sample {n_negatives} negatives"
            )
        rng = user_rng(seed, case.user_id)
        chosen: list[int] = []
        taken = set(seen) | {target}
        while len(chosen) < n_negatives:
            for j in rng.integers(0, n_items, size=2 * (n_negatives - len(chosen)) + 8):
                j = int(j)
                if j not in taken:
                    taken.add(j)
                    chosen.append(j)
                    if len(chosen) == n_negatives:
                        break
        candidates = np.array([target, *chosen], dtype=np.int64)
        out[row] = candidates[rng.permutation(candidates.size)]
    return out


def rank_full(
    scores: np.ndarray, exclude: Sequence[np.ndarray], targets: np.ndarray, depth: int
) -> tuple[np.ndarray, list[int | None]]:
    """Top-``depth`` item indices per row (-1 = unranked) and the target's 0-based rank or ``None``.

    ``scores`` (n, N) are modified in place: excluded items and non-finite scores are unranked.
    Ties are broken by catalogue index (lower first), identically in the list and in the rank.
    """
    n, n_items = scores.shape
    for row, items in enumerate(exclude):
        scores[row, items] = -np.inf
    scores[~np.isfinite(scores)] = -np.inf
    order, _ = top_k_rows(scores, min(depth, n_items))  # (n, depth), unranked: -1
    ranks: list[int | None] = []
    idx = np.arange(n_items)
    for row in range(n):
        s = scores[row]
        t = int(targets[row])
        st = s[t]
        if not np.isfinite(st):
            ranks.append(None)
            continue
        ranks.append(int((s > st).sum() + ((s == st) & (idx < t)).sum()))
    return order, ranks


def rank_candidates(
    scores: np.ndarray, candidates: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, list[int | None]]:
    """Candidates by score (ties in candidate order; -1 = unranked), and the target's rank."""
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")
    ranked = np.take_along_axis(candidates, order, axis=1)
    ranked[np.take_along_axis(scores, order, axis=1) == -np.inf] = -1  # unranked: -1
    ranks: list[int | None] = []
    for row in range(len(ranked)):
        pos = np.flatnonzero(ranked[row] == targets[row])
        ranks.append(int(pos[0]) if pos.size else None)
    return ranked, ranks
