"""Fusion of retrieval views into one candidate list.

Two methods, both weighted per view:

- ``rrf`` (reciprocal-rank fusion): ``sum_v w_v / (rrf_k + rank_v(i) + 1)`` over the views that
  rank item ``i`` within their top ``depth``;
- ``weighted`` (score fusion): ``sum_v w_v * z_v(i)``, where ``z_v`` standardises view ``v``'s
  scores per user (mean 0, standard deviation 1 over the items it knows), so views on different
  scales can be added.

A view abstains (contributes 0, the mean) on items it never saw in training
(:meth:`~llmrec.recommender.Recommender.known_items`): ID-based views know nothing of cold-start
items, and ranking those items last would bury what the text view finds for them.

Weights can be tuned on the validation split (coordinate ascent over a grid, maximising
validation HR@K). Each returned :class:`Candidate` keeps the score and rank of every view that
proposed it, for prompts, reasons and features later on.

Two paths compute the fusion. The dense path holds every view's (users x items) scores: exact,
and fine for catalogues of thousands of items. The sparse path (:mod:`llmrec.retrieval.pool`)
fuses each view's top ``depth`` list per user (:meth:`~llmrec.recommender.Recommender.top_k`)
over their union: RRF ranks as the dense path does, weighted fusion does on the union. Weight
tuning and :meth:`FusedRetriever.top_k` take the sparse path for catalogues of
:data:`~llmrec.data.topk.SPARSE_MIN_ITEMS` items or more (``path="auto"``); :meth:`score` and
:meth:`retrieve` are dense (they return or rank all items of a few users).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.records import Candidate, EvalCase, UserSequence, ViewEvidence
from llmrec.data.topk import SPARSE_MIN_ITEMS, TopK, check_k
from llmrec.evaluation.metrics import metrics_from_ranks
from llmrec.evaluation.protocols import rank_full
from llmrec.io import atomic_dir
from llmrec.recommender import Recommender, read_model_meta, write_model_meta
from llmrec.retrieval.pool import CandidatePool, build_pool
from llmrec.retrieval.registry import view_class

logger = logging.getLogger(__name__)

DEFAULT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


class FusionMethod(str, Enum):
    RRF = "rrf"
    WEIGHTED = "weighted"


class FusionPath(str, Enum):
    """How weight tuning and :meth:`FusedRetriever.top_k` fuse: over dense (users x items)
    scores, over the union of the views' top lists, or ``auto`` (sparse from
    :data:`~llmrec.data.topk.SPARSE_MIN_ITEMS` items on)."""

    AUTO = "auto"
    DENSE = "dense"
    SPARSE = "sparse"


@dataclass
class FusionConfig:
    """How views are fused. ``weights`` default to 1 for every view."""

    method: FusionMethod = FusionMethod.WEIGHTED
    weights: dict[str, float] = field(default_factory=dict)
    rrf_k: float = 60.0
    #: Each view's top list: RRF counts ranks within it; evidence is recorded for it.
    depth: int = 200
    #: Remove the user's history items before ranking (each view and the fusion).
    exclude_history: bool = True
    #: Tune weights on the validation cases given to ``fit`` (maximising ``tune_metric``).
    tune: bool = True
    tune_metric: str = "HR@20"
    tune_rounds: int = 2
    #: The views whose weights tuning may change (empty: all of them); the others keep their
    #: given weights. Adding one view to a tuned retriever (e.g. ``[nextitem]``) tunes one
    #: weight against the validation users instead of re-fitting all of them to those users.
    tune_views: list[str] = field(default_factory=list)
    #: Share of every ranked list reserved for cold items (items no ID view saw in training):
    #: every ``round(1 / cold_slots)``-th position goes to the best cold item the text view
    #: rates above average. Tuned weights favour the ID views, which would bury new items.
    cold_slots: float = 0.1
    #: Weight of the views that answer a free-text query (the text view) for the users that sent
    #: one, in place of their tuned weight: weights are tuned on histories alone, and a user who
    #: types what they want should be heard even where the text view's tuned weight is small.
    query_boost: float = 4.0
    #: Dense or sparse fusion for tuning and top-k lists (see :class:`FusionPath`).
    path: FusionPath = FusionPath.AUTO
    #: Users fused at once on the sparse path (views that score densely hold batch x N scores).
    batch_size: int = 128

    def __post_init__(self) -> None:
        self.method = FusionMethod(self.method)
        self.path = FusionPath(self.path)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise ValueError(f"batch_size must be a whole number, got {self.batch_size!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.rrf_k < 0:
            raise ValueError(f"rrf_k must be >= 0, got {self.rrf_k}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")
        bad = {k: v for k, v in self.weights.items() if not (v >= 0)}
        if bad:
            raise ValueError(f"fusion weights must be >= 0, got {bad}")
        if not 0 <= self.cold_slots <= 0.5:
            raise ValueError(f"cold_slots must be in [0, 0.5], got {self.cold_slots}")
        if self.query_boost < 0:
            raise ValueError(f"query_boost must be >= 0, got {self.query_boost}")
        if "@" not in self.tune_metric:
            raise ValueError(f"tune_metric must look like 'HR@20', got {self.tune_metric!r}")


class FusedRetriever(Recommender):
    """Multi-view retriever: each view is a :class:`Recommender`; their scores are fused."""

    name: ClassVar[str] = "fused"

    def __init__(self, views: Mapping[str, Recommender], config: FusionConfig | None = None):
        super().__init__()
        if not views:
            raise ValueError("a fused retriever needs at least one view")
        self.views = dict(views)
        self.config = config or FusionConfig()
        for what, names in (
            ("weights", self.config.weights),
            ("tune_views", self.config.tune_views),
        ):
            unknown = set(names) - set(self.views)
            if unknown:
                raise ValueError(
                    f"{what} given for unknown views {sorted(unknown)}; views: {list(views)}"
                )
        self.weights = {v: float(self.config.weights.get(v, 1.0)) for v in self.views}

    @classmethod
    def from_settings(
        cls, views: Mapping[str, Recommender], settings: Mapping[str, Any] | None = None
    ) -> FusedRetriever:
        """A fused retriever over ``views`` with :class:`FusionConfig` ``settings`` (field ->
        value); :func:`llmrec.retrieval.registry.create` builds ``fused`` through this."""
        return cls(views, FusionConfig(**dict(settings or {})))

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        train: Sequence[UserSequence],
        catalog: Catalog,
        valid: Sequence[EvalCase] | None = None,
        *,
        fit_views: bool = True,
    ) -> FusedRetriever:
        """Fit every view (unless ``fit_views`` is False), then tune weights on ``valid``."""
        if fit_views:
            for name, view in self.views.items():
                logger.info("fitting view %s", name)
                view.fit(train, catalog, valid)
        self.catalog = catalog
        if self.config.tune and valid:
            self.tune_weights(valid)
        return self

    def tune_weights(self, valid: Sequence[EvalCase], grid: Sequence[float] = DEFAULT_GRID) -> dict:
        """Coordinate ascent over ``grid`` per view (those in ``tune_views``, else all),
        maximising validation ``tune_metric``."""
        catalog = self._require_fitted()
        k = int(self.config.tune_metric.split("@")[1])
        quality = (self._sparse_quality if self.sparse else self._dense_quality)(valid, k)
        best = dict(self.weights)
        best_q = quality(best)
        for _ in range(self.config.tune_rounds):
            improved = False
            for view in self.config.tune_views or self.views:
                for value in grid:
                    trial = {**best, view: float(value)}
                    q = quality(trial)
                    if q > best_q + 1e-12:
                        best, best_q, improved = trial, q, True
            if not improved:
                break
        self.weights = best
        logger.info(
            "tuned fusion weights %s on %d validation users of %d items (%s path): validation "
            "%s %.4f",
            best,
            len(valid),
            len(catalog),
            "sparse" if self.sparse else "dense",
            self.config.tune_metric,
            best_q,
        )
        return {"weights": best, self.config.tune_metric: best_q}

    def _dense_quality(self, valid: Sequence[EvalCase], k: int) -> Callable[[dict], float]:
        """``weights -> validation tune_metric`` over dense (users x items) contributions."""
        catalog = self._require_fitted()
        histories = [c.history for c in valid]
        per_view = self._normalised(self.view_scores(histories), histories)
        targets = catalog.indices(c.target for c in valid)
        exclude = [catalog.indices(h.item_ids) for h in histories]

        def quality(weights: dict[str, float]) -> float:
            if not any(weights.values()):
                return -1.0
            fused = np.zeros_like(next(iter(per_view.values())))
            for view, weight in weights.items():
                if weight:
                    fused += weight * per_view[view]
            _, ranks = rank_full(fused, exclude, targets, depth=k)
            return metrics_from_ranks(ranks, ks=(k,))[self.config.tune_metric]

        return quality

    def _sparse_quality(self, valid: Sequence[EvalCase], k: int) -> Callable[[dict], float]:
        """``weights -> validation tune_metric`` over pools of the views' top lists (memory
        O(users x views x depth)); history items are never ranked, as in the dense path."""
        catalog = self._require_fitted()
        pools: list[tuple[CandidatePool, np.ndarray]] = []
        for start in range(0, len(valid), self.config.batch_size):
            batch = valid[start : start + self.config.batch_size]
            pool = self._pool([c.history for c in batch], rank_history=False, fill=k)
            pools.append((pool, catalog.indices(c.target for c in batch)))

        def quality(weights: dict[str, float]) -> float:
            if not any(weights.values()):
                return -1.0
            ranks: list[int | None] = []
            for pool, targets in pools:
                ranks += pool.ranks(pool.fused(weights), targets)
            return metrics_from_ranks(ranks, ks=(k,))[self.config.tune_metric]

        return quality

    @property
    def sparse(self) -> bool:
        """Whether tuning and :meth:`top_k` take the sparse path (see :class:`FusionPath`)."""
        catalog = self._require_fitted()
        if self.config.path is FusionPath.AUTO:
            return len(catalog) >= SPARSE_MIN_ITEMS
        return self.config.path is FusionPath.SPARSE

    def _pool(
        self,
        histories: Sequence[UserSequence],
        *,
        rank_history: bool,
        fill: int,
        cold: np.ndarray | None = None,
    ) -> CandidatePool:
        """Pool a batch; with ``cold``, each user's ``fill`` best cold items join (the cold
        slots take them wherever the views rank them)."""
        return build_pool(
            self.views,
            histories,
            self._require_fitted(),
            method=self.config.method.value,
            depth=self.config.depth,
            rrf_k=self.config.rrf_k,
            exclude_history=self.config.exclude_history,
            rank_history=rank_history,
            fill=fill,
            cold=cold,
            weights=self.weights,
            cold_keep=fill if cold is not None else 0,
        )

    # ---------------------------------------------------------------- score
    def view_scores(
        self, histories: Sequence[UserSequence], queries: Sequence[str | None] | None = None
    ) -> dict[str, np.ndarray]:
        """Every view's raw scores, (n, N) float64 each, history items set to -inf if excluded.

        ``queries`` (one free-text query or ``None`` per history) go to the views that take
        queries (the text view); the others score by history alone.
        """
        catalog = self._require_fitted()
        out = {}
        for name, view in self.views.items():
            if queries is not None and hasattr(view, "score_with_query"):
                scores = view.score_with_query(histories, queries)
            else:
                scores = view.score(histories)
            scores = np.array(scores, dtype=np.float64)  # (n, N)
            if self.config.exclude_history:
                for row, h in enumerate(histories):
                    scores[row, catalog.indices(h.item_ids)] = -np.inf
            out[name] = scores
        return out

    def _normalised(
        self, raw: dict[str, np.ndarray], histories: Sequence[UserSequence]
    ) -> dict[str, np.ndarray]:
        """Per-view contributions before weighting: RRF terms or per-user z-scores."""
        out = {}
        for name, scores in raw.items():
            finite = np.isfinite(scores)
            known = self.views[name].known_items()
            if known is not None:
                finite = finite & known[None, :]
            if self.config.method is FusionMethod.RRF:
                depth = min(self.config.depth, scores.shape[1])
                order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]  # (n, depth)
                contrib = np.zeros_like(scores)
                ranks = np.broadcast_to(np.arange(depth), order.shape)
                values = 1.0 / (self.config.rrf_k + ranks + 1)  # (n, depth)
                rows = np.arange(len(scores))[:, None]
                ok = np.take_along_axis(finite, order, axis=1)
                contrib[rows, order] = np.where(ok, values, 0.0)
            else:
                masked = np.where(finite, scores, np.nan)
                mean = np.nanmean(masked, axis=1, keepdims=True)
                std = np.nanstd(masked, axis=1, keepdims=True)
                std = np.where(std > 0, std, 1.0)
                contrib = np.where(finite, (scores - mean) / std, 0.0)
            out[name] = contrib
        return out

    def _fuse(
        self,
        raw: dict[str, np.ndarray],
        histories: Sequence[UserSequence],
        queries: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Weighted sum of the views' contributions (n, N); items no view can rank get -inf."""
        per_view = self._normalised(raw, histories)
        fused = np.zeros_like(next(iter(raw.values())))
        asked = np.array([bool(q) for q in queries or [None] * len(histories)])[:, None]  # (n, 1)
        for view, weight in self.weights.items():
            if queries is not None and hasattr(self.views[view], "score_with_query"):
                fused += np.where(asked, self.config.query_boost, weight) * per_view[view]
            elif weight:
                fused += weight * per_view[view]
        excluded = np.logical_and.reduce([~np.isfinite(s) for s in raw.values()])
        return np.where(excluded, -np.inf, fused)

    def cold_items(self) -> np.ndarray | None:
        """Items no view that reports :meth:`known_items` has seen (bool (N,)), or ``None``."""
        masks = [m for v in self.views.values() if (m := v.known_items()) is not None]
        return None if not masks else ~np.logical_or.reduce(masks)

    def _ranking(self, fused: np.ndarray) -> np.ndarray:
        """Scores whose order is the final ranking: fused order, with cold-item slots.

        Without cold items (or with ``cold_slots`` 0) this is ``fused`` itself. Otherwise every
        ``period``-th position is given to the next cold item with a positive fused score (the
        text view's opinion, since ID views abstain on them); scores become ``N - position``.
        """
        cold = self.cold_items()
        if cold is None or not cold.any() or self.config.cold_slots == 0:
            return fused
        period = max(1, round(1 / self.config.cold_slots))
        out = np.full_like(fused, -np.inf)
        for row, s in enumerate(fused):
            order = _slot_order(s, cold, period)
            positions = np.arange(len(order))
            out[row, order] = len(order) - positions
        return out

    def score(self, histories: Sequence[UserSequence]) -> np.ndarray:
        """Ranking scores (n, N) float32 (see :meth:`_ranking`); excluded items get -inf."""
        fused = self._fuse(self.view_scores(histories), histories)
        return self._ranking(fused).astype(np.float32)

    def top_k(
        self,
        histories: Sequence[UserSequence],
        k: int,
        *,
        exclude_history: bool = True,
        with_moments: bool = False,
    ) -> TopK:
        """The ``k`` best items per history in the order of :meth:`score` (cold slots included).

        On the sparse path the lists come from pools of the views' top ``depth`` items, fused in
        batches of ``batch_size`` users; their scores are the fused scores (with cold slots the
        order is the ranking's, not the scores'), and ``with_moments`` is not available.
        """
        if not self.sparse:
            return super().top_k(
                histories, k, exclude_history=exclude_history, with_moments=with_moments
            )
        k = check_k(k)
        if with_moments:
            raise ValueError(
                "the fused retriever's sparse top-k has no catalogue-wide moments; use "
                "path='dense' for them"
            )
        excluded = exclude_history or self.config.exclude_history
        cold = self.cold_items()
        period = 0
        if cold is not None and cold.any() and self.config.cold_slots > 0:
            period = max(1, round(1 / self.config.cold_slots))
        parts = []
        for start in range(0, len(histories), self.config.batch_size):
            batch = histories[start : start + self.config.batch_size]
            pool = self._pool(
                batch, rank_history=not excluded, fill=k, cold=cold if period else None
            )
            fused = pool.fused(self.weights)  # (b, C)
            items = np.full((len(batch), k), -1, dtype=np.int64)
            scores = np.full((len(batch), k), -np.inf)
            # without cold slots :meth:`score` ranks by the fused score in float32: so here
            ranked = fused if period else fused.astype(np.float32)
            for row in range(len(batch)):
                row_cold = cold[np.maximum(pool.items[row], 0)] if period else None
                order = _slot_order(ranked[row], row_cold, period)[:k]
                items[row, : len(order)] = pool.items[row, order]
                scores[row, : len(order)] = ranked[row, order]
            parts.append(TopK(items, scores))
        if not parts:
            return TopK(np.zeros((0, k), dtype=np.int64), np.zeros((0, k)))
        return TopK.concat(parts)

    def retrieve(
        self,
        histories: Sequence[UserSequence],
        k: int = 50,
        queries: Sequence[str | None] | None = None,
    ) -> list[list[Candidate]]:
        """Top-``k`` candidates per history, each with the evidence of the views that ranked it.

        A user with an empty history (and no query) gets what the history-free views (popularity)
        propose; such users are logged.
        """
        catalog = self._require_fitted()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        empty = sum(
            1 for i, h in enumerate(histories) if len(h) == 0 and not (queries and queries[i])
        )
        if empty:
            logger.info("%d users have no history and no query: popularity views decide", empty)
        raw = self.view_scores(histories, queries)
        fused = self._fuse(raw, histories, queries)
        depth = min(self.config.depth, len(catalog))
        view_rank: dict[str, np.ndarray] = {}
        for name, scores in raw.items():
            order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
            ranks = np.full(scores.shape, -1, dtype=np.int64)
            np.put_along_axis(ranks, order, np.arange(order.shape[1])[None, :], axis=1)
            ranks[~np.isfinite(scores)] = -1
            view_rank[name] = ranks
        # a view whose scores are all equal for a user (e.g. text, empty history) said nothing
        informative = {
            name: np.nanstd(np.where(np.isfinite(s), s, np.nan), axis=1) > 0
            for name, s in raw.items()
        }
        out: list[list[Candidate]] = []
        top = np.argsort(-self._ranking(fused), axis=1, kind="stable")[:, :k]
        for row in range(len(histories)):
            cands = []
            for i in top[row]:
                if not np.isfinite(fused[row, i]):
                    break
                evidence = {
                    name: ViewEvidence(float(raw[name][row, i]), int(view_rank[name][row, i]))
                    for name in raw
                    if view_rank[name][row, i] >= 0 and informative[name][row]
                }
                cands.append(Candidate(catalog.ids[i], float(fused[row, i]), evidence))
            out.append(cands)
        return out

    # ---------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        catalog = self._require_fitted()
        with atomic_dir(path) as tmp:
            config = dataclasses.asdict(self.config)
            config["method"] = self.config.method.value
            config["path"] = self.config.path.value
            config["tuned_weights"] = self.weights
            config["views"] = {name: view.name for name, view in self.views.items()}
            write_model_meta(tmp, self.name, catalog, config)
            for name, view in self.views.items():
                view.save(tmp / "views" / name)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], catalog: Catalog) -> FusedRetriever:
        folder = Path(path)
        meta = read_model_meta(folder, cls.name, catalog)
        config: dict[str, Any] = dict(meta["config"])
        kinds = config.pop("views")
        tuned = config.pop("tuned_weights")
        views = {
            name: view_class(kind).load(folder / "views" / name, catalog)
            for name, kind in kinds.items()
        }
        model = cls(views, FusionConfig(**config))
        model.weights = {k: float(v) for k, v in tuned.items()}
        model.catalog = catalog
        return model

    def describe(self) -> str:
        return json.dumps({"method": self.config.method.value, "weights": self.weights})


def _slot_order(scores: np.ndarray, cold: np.ndarray | None, period: int) -> np.ndarray:
    """Positions of ``scores`` (one user's, in catalogue order) in ranking order, best first.

    Finite scores only, by score with ties in position order; with a ``cold`` mask and a
    ``period``, every ``period``-th place goes to the next cold item with a positive score (see
    :meth:`FusedRetriever._ranking`); cold items left over follow the rest.
    """
    ok = np.isfinite(scores)
    eligible = ok & cold & (scores > 0) if cold is not None and period else np.zeros_like(ok)
    slot_items = np.flatnonzero(eligible)
    slot_items = slot_items[np.argsort(-scores[slot_items], kind="stable")]
    rest = np.flatnonzero(ok & ~eligible)
    rest = rest[np.argsort(-scores[rest], kind="stable")]
    if not len(slot_items):
        return rest
    total = len(slot_items) + len(rest)
    positions = np.arange(total)
    slots = positions[(positions + 1) % period == 0][: len(slot_items)]
    is_slot = np.zeros(total, dtype=bool)
    is_slot[slots] = True
    order = np.empty(total, dtype=np.int64)
    order[is_slot] = slot_items[: len(slots)]
    order[~is_slot] = np.concatenate([rest, slot_items[len(slots) :]])
    return order
