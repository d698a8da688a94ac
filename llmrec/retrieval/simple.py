"""Simple retrieval views: recency-aware popularity and item co-occurrence.

Both are :class:`~llmrec.recommender.Recommender` s, so the harness evaluates them alone and the
fusion combines them with the text and collaborative views. Their :meth:`top_k` never builds a
dense row: popularity is one list sorted once; co-occurrence scores only the items its history
items touch (every other item scores 0).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from llmrec.baselines._common import encode
from llmrec.data.catalog import Catalog
from llmrec.data.records import EvalCase, UserSequence
from llmrec.data.topk import SharedScores, TopK, shared_top_k
from llmrec.io import atomic_dir
from llmrec.recommender import Recommender, UserIndependent, read_model_meta, write_model_meta
from llmrec.sparse import ItemMatrix
from llmrec.validation import check_number, config_from_dict, merge_config

logger = logging.getLogger(__name__)

DAY = 86_400.0
#: Sequences whose co-occurring pairs :meth:`Cooccurrence.fit` collects at a time.
_FIT_CHUNK = 20_000


@dataclass(frozen=True)
class RecentPopConfig:
    """``half_life_days``: an interaction that many days before the newest one counts half."""

    half_life_days: float = 30.0

    def __post_init__(self) -> None:
        check_number(
            "half_life_days", self.half_life_days, kind=float, minimum=0, exclusive_min=True
        )


class RecentPopularity(UserIndependent):
    """Popularity where each interaction's weight halves every ``half_life_days`` of age.

    Age is measured from the newest training interaction, so the view says "popular lately".
    """

    name: ClassVar[str] = "recent-pop"
    config_class: ClassVar[type] = RecentPopConfig

    def __init__(self, config: RecentPopConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config: RecentPopConfig = merge_config(RecentPopConfig, config, overrides, self.name)
        self.weights: np.ndarray | None = None  # (N,) float64, max 1
        self._shared: SharedScores | None = None  # the weights sorted once, for top_k

    def fit(
        self,
        train: Sequence[UserSequence],
        catalog: Catalog,
        valid: Sequence[EvalCase] | None = None,
    ) -> RecentPopularity:
        items = np.concatenate([np.zeros(0, np.int64), *encode(train, catalog)])  # (P,)
        times = np.concatenate([np.zeros(0), *[np.asarray(s.timestamps) for s in train]])  # (P,)
        weights = np.zeros(len(catalog))
        if len(items):
            age_days = (times.max() - times) / DAY  # (P,)
            decay = np.exp(-math.log(2) * age_days / self.config.half_life_days)  # (P,)
            weights = np.bincount(items, weights=decay, minlength=len(catalog))
        top = weights.max() if len(weights) else 0.0
        self.weights = weights / top if top > 0 else weights
        self.catalog = catalog
        self._shared = None
        return self

    def item_scores(self) -> np.ndarray:
        """The decayed counts (N,), the largest 1."""
        assert self.weights is not None
        return self.weights

    def save(self, path: str | os.PathLike[str]) -> Path:
        catalog = self._require_fitted()
        with atomic_dir(path) as tmp:
            write_model_meta(tmp, self.name, catalog, dataclasses.asdict(self.config))
            np.save(tmp / "weights.npy", self.weights)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], catalog: Catalog) -> RecentPopularity:
        meta = read_model_meta(Path(path), cls.name, catalog)
        model = cls(config_from_dict(RecentPopConfig, meta.get("config", {}), cls.name))
        model.weights = np.load(Path(path) / "weights.npy", allow_pickle=False)
        model.catalog = catalog
        return model


@dataclass(frozen=True)
class CooccurrenceConfig:
    """Settings of :class:`Cooccurrence`.

    ``window``: two items co-occur when at most this many positions apart in one sequence, with
    weight ``1 / distance``. ``history_items``: how many recent history items vote, the i-th most
    recent with weight ``recency_decay ** i``. ``alpha``: popularity damping of the normalisation
    ``c_ij / (n_i ** alpha * n_j ** (1 - alpha))`` (0.5 = cosine). ``neighbours``: keep only
    each item's that many strongest co-occurring items (after normalisation; ``None`` keeps
    all): on a large catalogue popular items co-occur with nearly every item, and every user's
    scores would touch the whole catalogue.
    """

    window: int = 5
    history_items: int = 20
    recency_decay: float = 0.8
    alpha: float = 0.5
    neighbours: int | None = None

    def __post_init__(self) -> None:
        check_number("window", self.window, minimum=1)
        if self.neighbours is not None:
            check_number("neighbours", self.neighbours, minimum=1)
        check_number("history_items", self.history_items, minimum=1)
        check_number("recency_decay", self.recency_decay, kind=float, minimum=0, maximum=1)
        check_number("alpha", self.alpha, kind=float, minimum=0, maximum=1)


class Cooccurrence(Recommender):
    """Items that appear near the user's recent items in other users' sequences."""

    name: ClassVar[str] = "cooc"
    config_class: ClassVar[type] = CooccurrenceConfig

    def __init__(self, config: CooccurrenceConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config: CooccurrenceConfig = merge_config(
            CooccurrenceConfig, config, overrides, self.name
        )
        self.matrix: ItemMatrix | None = None
        self._shared: SharedScores | None = None  # all-zero row, known = items with pairs
        self._known: np.ndarray | None = None  # items with pairs

    def fit(
        self,
        train: Sequence[UserSequence],
        catalog: Catalog,
        valid: Sequence[EvalCase] | None = None,
    ) -> Cooccurrence:
        n = len(catalog)
        # pairs are collected per chunk of sequences (one code array each, not an array object
        # per sequence and distance), in sequence order, so equal pairs add up in that order
        codes, weights = [np.zeros(0, np.int64)], [np.zeros(0)]
        for start in range(0, len(train), _FIT_CHUNK):
            chunk = encode(train[start : start + _FIT_CHUNK], catalog)
            chunk_codes, chunk_weights = self._pair_codes(chunk, n)
            codes.append(chunk_codes)
            weights.append(chunk_weights)
        all_codes, all_weights = np.concatenate(codes), np.concatenate(weights)
        del codes, weights
        matrix = ItemMatrix.from_codes(all_codes, n, all_weights)
        del all_codes, all_weights
        totals = matrix.row_sums()  # (N,)
        safe = np.where(totals > 0, totals, 1.0)
        alpha = self.config.alpha
        self.matrix = matrix.scale(safe**-alpha, safe ** -(1 - alpha))
        if self.config.neighbours is not None:
            self.matrix = self.matrix.strongest(self.config.neighbours)
        self.catalog = catalog
        self._shared = None
        self._known = None
        logger.info(
            "cooc: %d item pairs within %d positions, %d kept",
            len(matrix.data),
            self.config.window,
            len(self.matrix.data),
        )
        return self

    def _pair_codes(self, encoded: Sequence[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
        """Codes ``i * n + j`` of the pairs within ``window`` positions (both directions) and
        their weights ``1 / distance``, sequence by sequence, distance by distance."""
        rows, cols, weights = [], [], []
        for seq in encoded:
            for d in range(1, min(self.config.window, len(seq) - 1) + 1):
                a, b = seq[:-d], seq[d:]  # (L - d,) pairs d positions apart
                rows += [a, b]
                cols += [b, a]
                weights += [np.full(2 * len(a), 1.0 / d)]
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(rows) * n + np.concatenate(cols), np.concatenate(weights)

    def known_items(self) -> np.ndarray | None:
        if self.matrix is None:
            return None
        if self._known is None:  # the fusion asks once per batch: computed once
            self._known = self.matrix.row_sums() > 0
        return self._known

    def score(self, histories: Sequence[UserSequence]) -> np.ndarray:
        catalog = self._require_fitted()
        assert self.matrix is not None
        scores = np.zeros((len(histories), len(catalog)), dtype=np.float64)  # (n, N)
        out_rows, rows, weights = self._votes(histories)
        if len(out_rows):
            self.matrix.add_rows(scores, out_rows, rows, weights)
        return scores.astype(np.float32)

    def score_candidates(
        self, histories: Sequence[UserSequence], candidates: np.ndarray
    ) -> np.ndarray:
        """:meth:`score` at catalogue indices ``candidates`` (n, C) only, float32."""
        cand = np.asarray(candidates, dtype=np.int64)  # (n, C)
        out = np.zeros(cand.shape, dtype=np.float32)
        for u, (cols, values) in enumerate(self._user_rows(histories)):
            if len(cols):
                pos = np.minimum(np.searchsorted(cols, cand[u]), len(cols) - 1)  # (C,)
                hit = cols[pos] == cand[u]
                out[u, hit] = values[pos[hit]]
        return out

    def top_k(
        self,
        histories: Sequence[UserSequence],
        k: int,
        *,
        exclude_history: bool = True,
        with_moments: bool = False,
    ) -> TopK:
        """The ``k`` best items per history, scoring only the items its recent items touch
        (the rest score 0 and follow in catalogue order)."""
        self._require_fitted()
        assert self.matrix is not None
        if self._shared is None:
            zeros = np.zeros(self.matrix.n, dtype=np.float32)
            self._shared = SharedScores(zeros, self.known_items())
        exclude = self.excluded(histories, exclude_history)
        touched = self._user_rows(histories)
        return shared_top_k(self._shared, k, exclude, touched, with_moments=with_moments)

    def _votes(self, histories: Sequence[UserSequence]) -> tuple[np.ndarray, ...]:
        """(output row, history item, weight) of every vote: each history's recent items, the
        most recent first with weight ``recency_decay ** i``."""
        catalog = self._require_fitted()
        out_rows, rows, weights = [], [], []
        for u, history in enumerate(histories):
            recent = catalog.indices(history.item_ids[-self.config.history_items :])[::-1]
            out_rows.append(np.full(len(recent), u))
            rows.append(recent)
            weights.append(self.config.recency_decay ** np.arange(len(recent)))
        if not out_rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(out_rows), np.concatenate(rows), np.concatenate(weights)

    def _user_rows(self, histories: Sequence[UserSequence]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per history: the items it touches (ascending) and their scores (float32), the
        values :meth:`score` gives them."""
        assert self.matrix is not None
        out_rows, rows, weights = self._votes(histories)
        indptr, cols, data = self.matrix.combine_rows(out_rows, rows, len(histories), weights)
        values = data.astype(np.float32)
        return [
            (cols[indptr[u] : indptr[u + 1]], values[indptr[u] : indptr[u + 1]])
            for u in range(len(histories))
        ]

    def save(self, path: str | os.PathLike[str]) -> Path:
        catalog = self._require_fitted()
        assert self.matrix is not None
        with atomic_dir(path) as tmp:
            write_model_meta(tmp, self.name, catalog, dataclasses.asdict(self.config))
            np.savez(tmp / "cooccurrence.npz", **self.matrix.to_arrays())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], catalog: Catalog) -> Cooccurrence:
        meta = read_model_meta(Path(path), cls.name, catalog)
        model = cls(config_from_dict(CooccurrenceConfig, meta.get("config", {}), cls.name))
        with np.load(Path(path) / "cooccurrence.npz", allow_pickle=False) as arrays:
            model.matrix = ItemMatrix.from_arrays(arrays)
        if model.matrix.n != len(catalog):
            raise ValueError(f"{path}: matrix does not match a catalogue of {len(catalog)} items")
        model.catalog = catalog
        return model
