"""The sparse union of the views' top lists, which the fused retriever ranks on large catalogues.

Per user, the pool holds every item that some view ranks within its top ``depth`` (and, for RRF,
the ``fill`` lowest-indexed items that no view lists: they all score 0), in catalogue order, with
each view's contribution to it - the same numbers the dense fusion computes for those items:

- ``rrf``: ``1 / (rrf_k + rank + 1)`` where the view ranks the item within its top ``depth``, 0
  elsewhere. An item outside every list scores 0 in the dense path too, so the sparse ranking is
  the dense ranking.
- ``weighted``: the view's z-score ``(score - mean) / std``, with the mean and standard deviation
  over the whole catalogue that the view's :meth:`~llmrec.recommender.Recommender.top_k`
  reports; a pooled item a view did not list is looked up with ``score_candidates``. Items that
  no view lists are not ranked: the dense path ranks them by a sum of below-depth z-scores, so
  the two rankings differ only where such an item would have made the cut.

Memory is O(users x views x depth), never O(users x catalogue).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.records import UserSequence
from llmrec.data.topk import TopK, lowest_absent
from llmrec.recommender import Recommender

#: Cold items scored at a time when the best of them are pooled (views gather their vectors).
_COLD_CHUNK = 256


@dataclass(frozen=True)
class CandidatePool:
    """A batch of users' pooled items and every view's contribution to them.

    ``items`` (n, C) int64, ascending per row, ``-1`` pads at the end; ``contributions`` view ->
    (n, C) float64 (0 at the pads); ``unranked`` (n, C) bool: pads, and history items when the
    ranking leaves them out.
    """

    items: np.ndarray
    contributions: Mapping[str, np.ndarray]
    unranked: np.ndarray

    def __len__(self) -> int:
        return self.items.shape[0]

    def fused(self, weights: Mapping[str, float]) -> np.ndarray:
        """``sum_v w_v * contribution_v`` (n, C), in the views' order as the dense fusion adds
        them; ``-inf`` where unranked."""
        out = np.zeros(self.items.shape)
        for view, weight in weights.items():
            if weight:
                out += weight * self.contributions[view]
        out[self.unranked] = -np.inf
        return out

    def ranks(self, fused: np.ndarray, targets: np.ndarray) -> list[int | None]:
        """Each target's 0-based rank by ``fused`` (ties by catalogue index), ``None`` if it is
        not in the pool or unranked."""
        targets = np.asarray(targets, dtype=np.int64)[:, None]  # (n, 1)
        at = self.items == targets  # (n, C)
        inside = at.any(axis=1)
        mine = np.take_along_axis(fused, at.argmax(axis=1)[:, None], axis=1)  # (n, 1)
        above = (fused > mine).sum(axis=1) + ((fused == mine) & (self.items < targets)).sum(axis=1)
        ok = inside & np.isfinite(mine[:, 0])
        return [int(r) if o else None for r, o in zip(above.tolist(), ok.tolist(), strict=True)]


def build_pool(
    views: Mapping[str, Recommender],
    histories: Sequence[UserSequence],
    catalog: Catalog,
    *,
    method: str,
    depth: int,
    rrf_k: float = 60.0,
    exclude_history: bool = True,
    rank_history: bool = False,
    fill: int = 0,
    cold: np.ndarray | None = None,
    weights: Mapping[str, float] | None = None,
    cold_keep: int = 0,
) -> CandidatePool:
    """Pool one batch of users (call it with batches: views that score densely use
    O(len(histories) x N) memory while they run).

    ``exclude_history`` leaves history items out of every view's list (and statistics), as the
    dense fusion's ``exclude_history``; ``rank_history`` False leaves them out of the ranking.
    ``method`` is ``"rrf"`` or ``"weighted"``; ``fill`` (RRF only) adds that many zero-scored
    items no view lists, lowest index first, so that a short pool still ranks like the dense path.
    With ``cold`` (bool (N,)), ``weights`` and ``cold_keep`` (weighted fusion only), each user's
    ``cold_keep`` cold items of highest fused score join the pool wherever the views rank them,
    as the dense ranking's cold slots take them (under RRF an unlisted item scores 0 and never
    takes a slot).
    """
    if method not in ("rrf", "weighted"):
        raise ValueError(f"method must be 'rrf' or 'weighted', got {method!r}")
    weighted = method == "weighted"
    lists = {
        name: view.top_k(histories, depth, exclude_history=exclude_history, with_moments=weighted)
        for name, view in views.items()
    }
    n_items = len(catalog)
    history = [np.unique(catalog.indices(h.item_ids)) for h in histories]
    skip = [h if not rank_history or exclude_history else h[:0] for h in history]
    rows = [_pooled(lists, u, skip[u], n_items, 0 if weighted else fill) for u in range(len(skip))]
    if weighted and cold is not None and cold_keep > 0 and cold.any():
        if weights is None:
            raise ValueError("pooling the best cold items needs the fusion weights")
        cold_items = np.flatnonzero(cold)
        best = _best_cold(views, lists, histories, cold_items, weights, cold_keep, skip, n_items)
        rows = [np.union1d(r, b[b >= 0]) for r, b in zip(rows, best, strict=True)]
    width = max([len(r) for r in rows] + [1])
    items = np.full((len(rows), width), -1, dtype=np.int64)
    for u, row in enumerate(rows):
        items[u, : len(row)] = row
    pads = items < 0
    unranked = pads | (_member(items, history, n_items) if not rank_history else False)
    contributions = {
        name: (
            _z_scores(views[name], lists[name], histories, items)
            if weighted
            else _rrf(lists[name], items, views[name].known_items(), rrf_k)
        )
        for name in views
    }
    for values in contributions.values():
        values[pads] = 0.0
    return CandidatePool(items, contributions, unranked)


def _pooled(
    lists: Mapping[str, TopK], user: int, skip: np.ndarray, n_items: int, fill: int
) -> np.ndarray:
    """One user's pooled items, ascending: every listed item, then ``fill`` unlisted ones."""
    listed = np.unique(np.concatenate([top.items[user] for top in lists.values()]))
    listed = listed[listed >= 0]
    # an item outside every list scores 0, unless every list ran short: then no view ranks it
    if fill and any(top.items[user, -1] >= 0 for top in lists.values()):
        extra = lowest_absent(fill, np.concatenate([listed, skip]), n_items)
        listed = np.union1d(listed, extra)
    return listed


def _best_cold(
    views: Mapping[str, Recommender],
    lists: Mapping[str, TopK],
    histories: Sequence[UserSequence],
    cold_items: np.ndarray,
    weights: Mapping[str, float],
    keep: int,
    skip: Sequence[np.ndarray],
    n_items: int,
) -> np.ndarray:
    """(n, keep) each user's cold items of highest weighted fused score, ties by index, ``-1``
    pads; ``skip`` items left out. The cold items are scored ``_COLD_CHUNK`` at a time."""
    n = len(histories)
    best_items = np.zeros((n, 0), dtype=np.int64)
    best_scores = np.zeros((n, 0))
    for start in range(0, len(cold_items), _COLD_CHUNK):
        chunk = cold_items[start : start + _COLD_CHUNK]
        items = np.ascontiguousarray(np.broadcast_to(chunk, (n, len(chunk))))  # (n, c)
        fused = np.zeros(items.shape)
        for name, weight in weights.items():
            if weight:
                fused += weight * _z_scores(views[name], lists[name], histories, items)
        fused[_member(items, skip, n_items)] = -np.inf
        both_items = np.hstack([best_items, items])
        both_scores = np.hstack([best_scores, fused])
        order = np.lexsort((both_items, -both_scores), axis=1)[:, :keep]
        best_items = np.take_along_axis(both_items, order, axis=1)
        best_scores = np.take_along_axis(both_scores, order, axis=1)
    return np.where(np.isfinite(best_scores), best_items, -1)


def _member(items: np.ndarray, sets: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """(n, C) bool: whether ``items[u, c]`` is in ``sets[u]``."""
    rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    codes = np.sort(rows * n_items + np.concatenate([np.zeros(0, np.int64), *sets]))
    probe = np.arange(len(items))[:, None] * n_items + items  # (n, C)
    pos = np.minimum(np.searchsorted(codes, probe), max(len(codes) - 1, 0))
    return (codes[pos] == probe) & (items >= 0) if len(codes) else np.zeros(items.shape, bool)


def _list_positions(top: TopK, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each pooled item stands in the view's list: (found (n, C) bool, rank (n, C))."""
    n, depth = top.items.shape
    valid = top.items >= 0
    big = max(int(top.items.max(initial=-1)), int(items.max(initial=-1))) + 1
    codes = (np.arange(n)[:, None] * big + top.items)[valid]  # (m,) in list order per row
    ranks = np.broadcast_to(np.arange(depth), (n, depth))[valid]  # (m,)
    order = np.argsort(codes, kind="stable")
    codes, ranks = codes[order], ranks[order]
    probe = np.arange(n)[:, None] * big + items  # (n, C)
    if len(codes) == 0:
        return np.zeros(items.shape, bool), np.zeros(items.shape, np.int64)
    pos = np.minimum(np.searchsorted(codes, probe), len(codes) - 1)
    found = (codes[pos] == probe) & (items >= 0)
    return found, ranks[pos]


def _rrf(top: TopK, items: np.ndarray, known: np.ndarray | None, rrf_k: float) -> np.ndarray:
    """The view's reciprocal-rank terms at the pooled items (0 where unlisted or unknown)."""
    found, rank = _list_positions(top, items)
    if known is not None:
        found &= known[np.maximum(items, 0)]
    return np.where(found, 1.0 / (rrf_k + rank + 1), 0.0)


def _z_scores(
    view: Recommender, top: TopK, histories: Sequence[UserSequence], items: np.ndarray
) -> np.ndarray:
    """The view's standardised scores at the pooled items (0 where not finite or unknown)."""
    assert top.mean is not None and top.std is not None
    scores = np.asarray(
        view.score_candidates(histories, np.maximum(items, 0)), dtype=np.float64
    )  # (n, C)
    if scores.shape != items.shape:
        raise ValueError(
            f"{type(view).__name__}.score_candidates returned shape {scores.shape}, "
            f"expected {items.shape}"
        )
    # listed items keep the score the list reports (the dense scores, to the bit)
    found, rank = _list_positions(top, items)
    listed = np.take_along_axis(top.scores, rank, axis=1).astype(np.float64)
    scores = np.where(found, listed, scores)
    ok = np.isfinite(scores) & (items >= 0)
    known = view.known_items()
    if known is not None:
        ok &= known[np.maximum(items, 0)]
    mean = top.mean[:, None]
    std = np.where(top.std > 0, top.std, 1.0)[:, None]
    return np.where(ok, (scores - mean) / std, 0.0)
