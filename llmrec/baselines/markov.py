"""First-order Markov chain baseline: what tends to follow the user's last item.

``score(u)[j] = P(j | last item of u) + backoff * popularity(j) / max popularity``

where ``P(j | i)`` is the share of training transitions ``i -> j`` (consecutive pairs inside one
sequence) among all transitions out of ``i``. The popularity term orders the items with no
observed transition; users with an empty history, or whose last item was never followed by
anything in training, get the popularity term alone.

Transitions are stored sparsely in CSR layout (``indptr``, ``indices``, ``data``) built with
numpy, so a catalogue of a million items costs memory in proportion to the observed pairs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from llmrec.baselines._common import encode, item_counts
from llmrec.data.catalog import Catalog
from llmrec.data.records import EvalCase, UserSequence
from llmrec.data.topk import SharedScores, TopK, shared_top_k
from llmrec.io import atomic_dir
from llmrec.recommender import Recommender, read_model_meta, write_model_meta
from llmrec.validation import check_number, config_from_dict, merge_config

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MarkovConfig:
    """Settings of :class:`MarkovRecommender`.

    ``backoff`` weighs the popularity term (popularity normalised to [0, 1]); keep it well below
    the smallest transition share you care about so that transitions always rank first.
    """

    backoff: float = 1e-3

    def __post_init__(self) -> None:
        check_number("backoff", self.backoff, kind=float, minimum=0.0)


class MarkovRecommender(Recommender):
    """Item-to-item transition probabilities from the last history item, with popularity backoff."""

    name: ClassVar[str] = "markov"
    config_class: ClassVar[type] = MarkovConfig

    def __init__(self, config: MarkovConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config: MarkovConfig = merge_config(MarkovConfig, config, overrides, self.name)
        self.popularity: np.ndarray | None = None  # (N,) float64, normalised to max 1
        self.indptr: np.ndarray | None = None  # (N + 1,) int64 row starts
        self.indices: np.ndarray | None = None  # (nnz,) int64 next-item index
        self.data: np.ndarray | None = None  # (nnz,) float64 P(next | row item)
        self._shared: SharedScores | None = None  # the backoff row sorted once, for top_k

    # ---------------------------------------------------------------- fitting
    def fit(
        self,
        train: Sequence[UserSequence],
        catalog: Catalog,
        valid: Sequence[EvalCase] | None = None,
    ) -> MarkovRecommender:
        """Count transitions and item occurrences in ``train`` (``valid`` is not used)."""
        n_items = len(catalog)
        encoded = encode(train, catalog)
        counts = item_counts(encoded, n_items)  # (N,)
        top = counts.max() if n_items else 0.0
        self.popularity = counts / top if top > 0 else counts  # (N,)

        pairs = [np.stack([s[:-1], s[1:]], axis=1) for s in encoded if len(s) > 1]
        if pairs:
            edges = np.concatenate(pairs)  # (P, 2) [from, to]
        else:
            edges = np.zeros((0, 2), dtype=np.int64)
        codes = edges[:, 0] * n_items + edges[:, 1]  # (P,) one code per (from, to)
        unique, pair_counts = np.unique(codes, return_counts=True)  # (nnz,) sorted by from, to
        rows = unique // n_items  # (nnz,)
        self.indices = (unique % n_items).astype(np.int64)  # (nnz,)
        row_totals = np.bincount(rows, weights=pair_counts, minlength=n_items)  # (N,)
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_items))]).astype(
            np.int64
        )  # (N + 1,)
        self.data = pair_counts / row_totals[rows]  # (nnz,)
        self.catalog = catalog
        self._shared = None
        logger.info(
            "markov: %d transitions, %d distinct pairs, %d of %d items have successors",
            len(codes),
            len(unique),
            int((row_totals > 0).sum()),
            n_items,
        )
        return self

    # ---------------------------------------------------------------- scoring
    def known_items(self) -> np.ndarray | None:
        return None if self.popularity is None else self.popularity > 0

    def score(self, histories: Sequence[UserSequence]) -> np.ndarray:
        """Transition shares from each history's last item plus the popularity backoff: (n, N)."""
        catalog = self._require_fitted()
        assert self.popularity is not None and self.indptr is not None
        assert self.indices is not None and self.data is not None
        n = len(histories)
        base = (self.config.backoff * self.popularity).astype(np.float32)  # (N,)
        scores = np.broadcast_to(base, (n, len(catalog))).copy()  # (n, N)
        users = np.array([u for u, h in enumerate(histories) if len(h)], dtype=np.int64)  # (m,)
        if len(users) == 0:
            return scores
        last = catalog.indices(histories[u].item_ids[-1] for u in users)  # (m,)
        starts = self.indptr[last]  # (m,)
        lengths = self.indptr[last + 1] - starts  # (m,)
        out_rows = np.repeat(users, lengths)  # (k,) output row of every stored entry
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        entries = np.repeat(starts, lengths) + offsets  # (k,) positions in indices/data
        scores[out_rows, self.indices[entries]] += self.data[entries].astype(np.float32)
        return scores

    def score_candidates(
        self, histories: Sequence[UserSequence], candidates: np.ndarray
    ) -> np.ndarray:
        """:meth:`score` at catalogue indices ``candidates`` (n, C) only, float32."""
        self._require_fitted()
        assert self.popularity is not None and self.indices is not None and self.data is not None
        cand = np.asarray(candidates, dtype=np.int64)  # (n, C)
        base = (self.config.backoff * self.popularity).astype(np.float32)  # (N,)
        out = base[cand]  # (n, C)
        for u, (cols, probs) in enumerate(self._successors(histories)):
            pos = np.minimum(np.searchsorted(cols, cand[u]), max(len(cols) - 1, 0))  # (C,)
            hit = (cols[pos] == cand[u]) if len(cols) else np.zeros(cand.shape[1], dtype=bool)
            out[u, hit] += probs[pos[hit]]
        return out

    def top_k(
        self,
        histories: Sequence[UserSequence],
        k: int,
        *,
        exclude_history: bool = True,
        with_moments: bool = False,
    ) -> TopK:
        """The ``k`` best items per history: the last item's successors, then the popularity
        backoff in one list sorted once; no dense row is built."""
        self._require_fitted()
        assert self.popularity is not None
        if self._shared is None:
            base = (self.config.backoff * self.popularity).astype(np.float32)  # (N,)
            self._shared = SharedScores(base, self.popularity > 0)
        touched = [
            (cols, self._shared.values[cols] + probs) for cols, probs in self._successors(histories)
        ]
        exclude = self.excluded(histories, exclude_history)
        return shared_top_k(self._shared, k, exclude, touched, with_moments=with_moments)

    def _successors(self, histories: Sequence[UserSequence]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per history: the items that followed its last item in training (ascending) and their
        transition shares as float32; empty for an empty history."""
        catalog = self._require_fitted()
        assert self.indptr is not None and self.indices is not None and self.data is not None
        out = []
        for history in histories:
            if not len(history):
                out.append((np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)))
                continue
            last = catalog.index(history.item_ids[-1])
            span = slice(self.indptr[last], self.indptr[last + 1])
            out.append((self.indices[span], self.data[span].astype(np.float32)))
        return out

    def transition(self, item_id: str) -> dict[str, float]:
        """The fitted ``P(next | item_id)`` as ``{next item id: share}`` (for inspection)."""
        catalog = self._require_fitted()
        assert self.indptr is not None and self.indices is not None and self.data is not None
        row = catalog.index(item_id)
        span = slice(self.indptr[row], self.indptr[row + 1])
        return {
            catalog.ids[j]: float(p)
            for j, p in zip(self.indices[span], self.data[span], strict=True)
        }

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``model.json`` and ``transitions.npz`` to the folder ``path``."""
        catalog = self._require_fitted()
        with atomic_dir(path) as tmp:
            write_model_meta(tmp, self.name, catalog, dataclasses.asdict(self.config))
            np.savez(
                tmp / "transitions.npz",
                popularity=self.popularity,
                indptr=self.indptr,
                indices=self.indices,
                data=self.data,
            )
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], catalog: Catalog) -> MarkovRecommender:
        """Read a model written by :meth:`save`; refuse one fitted on another catalogue."""
        folder = Path(path)
        meta = read_model_meta(folder, cls.name, catalog)
        model = cls(config_from_dict(MarkovConfig, meta.get("config", {}), cls.name))
        with np.load(folder / "transitions.npz", allow_pickle=False) as arrays:
            model.popularity = arrays["popularity"]
            model.indptr = arrays["indptr"]
            model.indices = arrays["indices"]
            model.data = arrays["data"]
        n = len(catalog)
        if model.popularity.shape != (n,) or model.indptr.shape != (n + 1,):
            raise ValueError(f"{folder}/transitions.npz does not match a catalogue of {n} items")
        model.catalog = catalog
        return model
