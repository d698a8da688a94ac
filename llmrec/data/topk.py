"""Top-k lists: each user's best ``k`` items, found without sorting or storing every item's score.

One order holds everywhere in llmrec: higher score first, ties broken by the lower catalogue index
(the order of ``np.argsort(-scores, kind="stable")``, which the full-ranking protocol uses).
Scores that are not finite (-inf, NaN) are never ranked. The helpers here give exactly the first
``k`` items of that order:

- :func:`top_k_rows` from a dense block of scores (users x items), with ``np.argpartition``
  (linear per row) and an explicit rule for the items tied with the k-th score;
- :class:`SharedScores` from a score row that every user shares (popularity), sorted once, plus a
  few per-user items that score otherwise (co-occurrence, Markov transitions): only those, the
  user's excluded items and the head of the shared order are looked at;
- :func:`top_k_merge` from one user's unique candidate items.

A :class:`TopK` holds the lists of a batch of users (padded with item ``-1`` and score ``-inf``
where fewer than ``k`` items are rankable) and, when asked for, the mean and standard deviation
of each user's scores over the whole catalogue, which score fusion needs to standardise a view.

Catalogues of at least :data:`SPARSE_MIN_ITEMS` items are ranked through top-k lists by default
(the evaluation harness and the fused retriever); smaller ones keep the dense path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: From this many catalogue items on, ``auto`` settings rank through top-k lists, not dense rows.
SPARSE_MIN_ITEMS = 20_000
#: :func:`top_k_rows` works on row blocks of at most this many scores (bounds its temporaries).
_BLOCK_CELLS = 1 << 22


@dataclass(frozen=True)
class TopK:
    """The best ``k`` items of ``n`` users, best first.

    ``items`` (n, k) int64 catalogue indices, ``-1`` where a user has fewer than ``k`` rankable
    items; ``scores`` (n, k) the items' scores, ``-inf`` at the padding. ``mean`` and ``std``
    (n,) float64, when computed, are each user's mean and population standard deviation over the
    items the model knows (:meth:`~llmrec.recommender.Recommender.known_items`) whose scores are
    finite and that were not excluded; NaN where there is no such item.
    """

    items: np.ndarray
    scores: np.ndarray
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.items.ndim != 2 or self.items.shape != self.scores.shape:
            raise ValueError(
                f"TopK items and scores must be 2-D arrays of one shape (n, k), got "
                f"{self.items.shape} and {self.scores.shape}"
            )
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and value.shape != (self.items.shape[0],):
                raise ValueError(
                    f"TopK {name} must have shape ({self.items.shape[0]},), got {value.shape}"
                )

    def __len__(self) -> int:
        return self.items.shape[0]

    @property
    def k(self) -> int:
        return self.items.shape[1]

    def ranks_of(self, targets: np.ndarray) -> list[int | None]:
        """The 0-based position of each user's ``targets[u]`` in their list, ``None`` if absent."""
        targets = np.asarray(targets, dtype=np.int64)
        if targets.shape != (len(self),):
            raise ValueError(f"got {targets.shape[0]} targets for {len(self)} top-k lists")
        hit = self.items == targets[:, None]  # (n, k)
        found = hit.any(axis=1)
        first = hit.argmax(axis=1)
        return [int(p) if f else None for p, f in zip(first.tolist(), found.tolist(), strict=True)]

    @classmethod
    def concat(cls, parts: Sequence[TopK]) -> TopK:
        """The lists of several batches (of one ``k``), in order."""
        if not parts:
            raise ValueError("no top-k lists to concatenate")
        moments = all(p.mean is not None and p.std is not None for p in parts)
        return cls(
            np.concatenate([p.items for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.mean for p in parts]) if moments else None,  # type: ignore[misc]
            np.concatenate([p.std for p in parts]) if moments else None,  # type: ignore[misc]
        )


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a whole number >= 1, got {k!r}")
    return int(k)


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best items of every row of ``scores`` (n, N): (items (n, k) int64, scores).

    Exactly ``np.argsort(-scores, kind="stable")[:, :k]`` with non-finite scores unranked
    (item -1, score -inf), found with ``np.argpartition``; ``k`` may exceed N (padding).
    Scores keep their floating dtype (integers become float64).
    """
    k = check_k(k)
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D array (users, items), got shape {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    n, n_items = scores.shape
    items = np.full((n, k), -1, dtype=np.int64)
    values = np.full((n, k), -np.inf, dtype=scores.dtype)
    width = min(k, n_items)
    if n == 0 or width == 0:
        return items, values
    step = max(1, _BLOCK_CELLS // n_items)
    for start in range(0, n, step):
        block = slice(start, start + step)
        items[block, :width], values[block, :width] = _best_of_block(scores[block], width)
    return items, values


def _best_of_block(scores: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k_rows` for one block of rows, ``width`` <= N."""
    clean = np.where(np.isfinite(scores), scores, -np.inf)  # (b, N)
    n_items = clean.shape[1]
    if width == n_items:
        chosen = np.broadcast_to(np.arange(n_items), clean.shape).copy()  # (b, N)
    else:
        chosen = np.argpartition(clean, n_items - width, axis=1)[:, n_items - width :]  # (b, w)
    got = np.take_along_axis(clean, chosen, axis=1)  # (b, w) unordered
    kth = got.min(axis=1)  # (b,) the k-th best score of each row
    # argpartition picks arbitrary members among the items tied with the k-th score; the order
    # wants the lowest indices among them. Rows where a tied item was left out are redone.
    tied_all = (clean == kth[:, None]).sum(axis=1)
    tied_got = (got == kth[:, None]).sum(axis=1)
    for row in np.flatnonzero((tied_all > tied_got) & np.isfinite(kth)):
        r, t = clean[row], kth[row]
        above = np.flatnonzero(r > t)
        tied = np.flatnonzero(r == t)[: width - len(above)]
        chosen[row] = np.concatenate([above, tied])
        got[row] = r[chosen[row]]
    order = np.lexsort((chosen, -got), axis=1)  # by score descending, then index
    chosen = np.take_along_axis(chosen, order, axis=1)
    got = np.take_along_axis(got, order, axis=1)
    ranked = np.isfinite(got)
    return np.where(ranked, chosen, -1), np.where(ranked, got, -np.inf).astype(scores.dtype)


def top_k_merge(items: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of one user's candidates (unique ``items`` with ``scores``), padded.

    Returns (items (k,) int64, scores (k,)) in the order of :func:`top_k_rows`.
    """
    items = np.asarray(items, dtype=np.int64)
    scores = np.asarray(scores)
    keep = np.isfinite(scores)
    items, scores = items[keep], scores[keep]
    order = np.lexsort((items, -scores))[:k]
    out_items = np.full(k, -1, dtype=np.int64)
    out_scores = np.full(k, -np.inf, dtype=scores.dtype if scores.size else np.float64)
    out_items[: len(order)] = items[order]
    out_scores[: len(order)] = scores[order]
    return out_items, out_scores


def lowest_absent(count: int, taken: np.ndarray, n: int) -> np.ndarray:
    """The ``count`` lowest indices in ``[0, n)`` that are not in ``taken`` (int64, ascending)."""
    taken = np.unique(np.asarray(taken, dtype=np.int64))
    window = np.arange(min(n, count + len(taken)), dtype=np.int64)
    return np.setdiff1d(window, taken, assume_unique=True)[:count]


def row_moments(
    scores: np.ndarray, known: np.ndarray | None, block: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std per row of ``scores`` (n, N) over finite and ``known`` items.

    Computed in float64 row block by row block, the way score fusion standardises a dense view
    (so a view's top-k path and the dense path agree to the bit). NaN for a row with no such item.
    """
    n = scores.shape[0]
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    for start in range(0, n, block):
        part = np.asarray(scores[start : start + block], dtype=np.float64)  # (b, N)
        ok = np.isfinite(part)
        if known is not None:
            ok &= known[None, :]
        rows = ok.any(axis=1)
        if not rows.any():
            continue
        masked = np.where(ok[rows], part[rows], np.nan)
        idx = np.flatnonzero(rows) + start
        mean[idx] = np.nanmean(masked, axis=1)
        std[idx] = np.nanstd(masked, axis=1)
    return mean, std


class SharedScores:
    """A score row every user shares, sorted once, for exact per-user top-k lists and moments.

    Each user may differ from the shared row at a few ``touched`` items (their own score
    replaces the shared one) and leaves out ``exclude`` items; per user only those and the head
    of the shared order are read, never a whole row.
    """

    def __init__(self, values: np.ndarray, known: np.ndarray | None = None) -> None:
        self.values = np.asarray(values)  # (N,) the dtype the dense scores have
        if self.values.ndim != 1:
            raise ValueError(f"shared scores must be 1-D (N,), got shape {self.values.shape}")
        n = len(self.values)
        finite = np.isfinite(self.values)
        order = np.lexsort((np.arange(n), -self.values))  # (N,) best first, ties by index
        self.order = order[finite[order]]
        self.known = np.ones(n, dtype=bool) if known is None else np.asarray(known, dtype=bool)
        self.mask = finite & self.known
        wide = self.values.astype(np.float64)
        self.center = float(wide[self.mask].mean()) if self.mask.any() else 0.0
        dev = wide[self.mask] - self.center
        self.count = int(self.mask.sum())
        self.sum = float(dev.sum())
        self.sumsq = float((dev * dev).sum())

    def __len__(self) -> int:
        return len(self.values)

    def top_k(
        self,
        k: int,
        exclude: np.ndarray,
        touched: np.ndarray | None = None,
        touched_scores: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One user's ``k`` best items (unique ``exclude`` and ``touched`` index arrays).

        Costs O(len(exclude) + len(touched) + k): the touched items are cut to their own best
        ``k`` before the merge with the head of the shared order.
        """
        exclude = np.asarray(exclude, dtype=np.int64)
        touched, touched_scores = self._touched(touched, touched_scores, exclude)
        skip = np.concatenate([exclude, touched])
        head = self.order[: k + len(skip)]
        head = head[~np.isin(head, skip)][:k]
        best, best_scores = _best_of(touched, touched_scores, k)
        return top_k_merge(
            np.concatenate([best, head]),
            np.concatenate([best_scores, self.values[head]]),
            k,
        )

    def moments(
        self,
        exclude: Sequence[np.ndarray],
        touched: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per user, mean and population std over known finite non-excluded items: (n,) each.

        ``exclude[u]`` and ``touched[u] = (items, scores)`` as in :meth:`top_k`; computed for
        the whole batch at once from the shared sums, corrected by what each user changes.
        """
        n = len(exclude)
        users_e = np.repeat(np.arange(n), [len(e) for e in exclude])
        items_e = np.concatenate([np.zeros(0, np.int64), *exclude]).astype(np.int64)
        if touched:
            users_t = np.repeat(np.arange(n), [len(t[0]) for t in touched])
            items_t = np.concatenate([np.zeros(0, np.int64), *(t[0] for t in touched)])
            new_t = np.concatenate([np.zeros(0), *(t[1] for t in touched)]).astype(np.float64)
            codes_e = users_e * len(self) + items_e
            keep = ~np.isin(users_t * len(self) + items_t.astype(np.int64), codes_e)
            users_t, items_t, new_t = users_t[keep], items_t[keep].astype(np.int64), new_t[keep]
        else:
            users_t, items_t, new_t = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        gone = self.mask[items_e]  # excluded items that were counted
        old = self.mask[items_t]  # touched items: their shared score leaves the sums...
        new = self.known[items_t] & np.isfinite(new_t)  # ...their own score enters
        wide = self.values.astype(np.float64)

        def per_user(users: np.ndarray, values: np.ndarray) -> np.ndarray:
            return np.bincount(users, weights=values, minlength=n)

        dev_gone = wide[items_e[gone]] - self.center
        dev_old = wide[items_t[old]] - self.center
        dev_new = new_t[new] - self.center
        count = (
            self.count
            - np.bincount(users_e[gone], minlength=n)
            - np.bincount(users_t[old], minlength=n)
            + np.bincount(users_t[new], minlength=n)
        )
        total = (
            self.sum
            - per_user(users_e[gone], dev_gone)
            - per_user(users_t[old], dev_old)
            + per_user(users_t[new], dev_new)
        )
        squares = (
            self.sumsq
            - per_user(users_e[gone], dev_gone**2)
            - per_user(users_t[old], dev_old**2)
            + per_user(users_t[new], dev_new**2)
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            shift = total / count
            var = np.maximum(squares / count - shift * shift, 0.0)
        empty = count <= 0
        return (
            np.where(empty, np.nan, self.center + shift),
            np.where(empty, np.nan, np.sqrt(var)),
        )

    def _touched(
        self, touched: np.ndarray | None, scores: np.ndarray | None, exclude: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if touched is None or len(touched) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=self.values.dtype)
        touched = np.asarray(touched, dtype=np.int64)
        scores = np.asarray(scores, dtype=self.values.dtype)
        keep = ~np.isin(touched, exclude)
        return touched[keep], scores[keep]


def shared_top_k(
    shared: SharedScores,
    k: int,
    exclude: Sequence[np.ndarray],
    touched: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    *,
    with_moments: bool = False,
) -> TopK:
    """:class:`TopK` of users who share ``shared`` but for their ``touched`` (items, scores)
    and their ``exclude`` items (unique index arrays, one per user)."""
    k = check_k(k)
    n = len(exclude)
    if touched is not None and len(touched) != n:
        raise ValueError(f"got {len(touched)} touched-item lists for {n} users")
    items = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=shared.values.dtype)
    for u in range(n):
        own, own_scores = touched[u] if touched is not None else (None, None)
        items[u], scores[u] = shared.top_k(k, exclude[u], own, own_scores)
    if not with_moments:
        return TopK(items, scores)
    mean, std = shared.moments(exclude, touched)
    return TopK(items, scores, mean, std)


def _best_of(items: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of one user's ``items`` by (-score, item), unordered, in O(len(items))."""
    if len(items) <= k:
        return items, scores
    clean = np.where(np.isfinite(scores), scores, -np.inf)
    kth = np.partition(clean, len(clean) - k)[len(clean) - k]  # the k-th best score
    above = np.flatnonzero(clean > kth)
    tied = np.flatnonzero(clean == kth)
    tied = tied[np.argsort(items[tied], kind="stable")][: k - len(above)]
    chosen = np.concatenate([above, tied])
    return items[chosen], scores[chosen]
