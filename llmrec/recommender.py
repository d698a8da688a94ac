"""The interface every recommender implements: baselines, retrievers and the LLM pipeline.

One evaluation harness (:mod:`llmrec.evaluation`) scores them all through these two methods:

- :meth:`Recommender.score` - a score for every catalogue item (full-ranking protocol);
- :meth:`Recommender.score_candidates` - scores for given candidate items only (sampled
  protocol, and the LLM ranking stage);
- :meth:`Recommender.top_k` - each user's best ``k`` items (full ranking on large catalogues):
  by default from :meth:`score` one batch at a time; views that score few items per user
  (popularity, co-occurrence, Markov) override it and never build a dense row.

Higher scores rank first. Items a model cannot score get ``-inf``.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.records import EvalCase, UserSequence
from llmrec.data.topk import SharedScores, TopK, check_k, row_moments, shared_top_k, top_k_rows


class Recommender(ABC):
    """Base class. Subclasses set ``name`` and implement ``fit``, ``score``, ``save``, ``load``."""

    name: ClassVar[str] = "recommender"

    def __init__(self) -> None:
        self.catalog: Catalog | None = None

    @abstractmethod
    def fit(
        self,
        train: Sequence[UserSequence],
        catalog: Catalog,
        valid: Sequence[EvalCase] | None = None,
    ) -> Recommender:
        """Learn from training sequences. ``valid`` may be used for early stopping only."""

    @abstractmethod
    def score(self, histories: Sequence[UserSequence]) -> np.ndarray:
        """Scores of shape ``(len(histories), len(catalog))``, float32, higher is better."""

    def score_candidates(
        self, histories: Sequence[UserSequence], candidates: np.ndarray
    ) -> np.ndarray:
        """Scores of shape ``candidates.shape`` for catalogue indices ``candidates`` (n, C)."""
        full = self.score(histories)  # (n, N)
        return np.take_along_axis(full, np.asarray(candidates, dtype=np.int64), axis=1)

    def top_k(
        self,
        histories: Sequence[UserSequence],
        k: int,
        *,
        exclude_history: bool = True,
        with_moments: bool = False,
    ) -> TopK:
        """Each history's ``k`` best items, best first, ties by catalogue index.

        ``exclude_history`` leaves the history's items out; ``with_moments`` adds each user's
        mean and standard deviation over the items :meth:`known_items` marks (see
        :class:`~llmrec.data.topk.TopK`). This default scores the whole catalogue for the given
        histories, so call it with batches of users: memory is O(len(histories) x N).
        """
        catalog = self._require_fitted()
        k = check_k(k)
        scores = np.array(self.score(histories), copy=True)  # (n, N)
        expected = (len(histories), len(catalog))
        if scores.shape != expected:
            raise ValueError(
                f"{type(self).__name__}.score returned shape {scores.shape}, expected {expected}"
            )
        if exclude_history:
            for row, history in enumerate(histories):
                scores[row, catalog.indices(history.item_ids)] = -np.inf
        items, values = top_k_rows(scores, k)  # (n, k) each
        if not with_moments:
            return TopK(items, values)
        mean, std = row_moments(scores, self.known_items())
        return TopK(items, values, mean, std)

    def excluded(
        self, histories: Sequence[UserSequence], exclude_history: bool = True
    ) -> list[np.ndarray]:
        """Per history, the unique catalogue indices of its items (empty when not excluding)."""
        catalog = self._require_fitted()
        if not exclude_history:
            return [np.zeros(0, dtype=np.int64) for _ in histories]
        return [np.unique(catalog.indices(h.item_ids)) for h in histories]

    def known_items(self) -> np.ndarray | None:
        """Which catalogue items the model learned anything about: bool (N,), or ``None`` = all.

        Models fitted on interactions say nothing useful about items absent from training
        (cold-start items); fusion lets them abstain there instead of ranking such items last.
        """
        return None

    # ------------------------------------------------------------ persistence
    @abstractmethod
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted model to a folder (atomically)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | os.PathLike[str], catalog: Catalog) -> Recommender:
        """Read a model saved by :meth:`save`; refuse one fitted on another catalogue."""

    def _require_fitted(self) -> Catalog:
        if self.catalog is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        return self.catalog


class UserIndependent(Recommender):
    """A model that gives every user the same score per item (popularity and its kin): one
    vector :meth:`item_scores` (N,) makes :meth:`score`, :meth:`score_candidates` and a
    :meth:`top_k` that sorts it once and reuses the order for every user. Items with a score
    above zero are the known ones. Subclasses reset ``_shared`` to ``None`` when they refit."""

    _shared: SharedScores | None = None  # item_scores sorted once, for top_k

    @abstractmethod
    def item_scores(self) -> np.ndarray:
        """The fitted per-item scores (N,), float64."""

    def known_items(self) -> np.ndarray | None:
        return None if self.catalog is None else self.item_scores() > 0

    def score(self, histories: Sequence[UserSequence]) -> np.ndarray:
        """The item scores repeated for each history: float32 of shape (n, N)."""
        catalog = self._require_fitted()
        row = self.item_scores().astype(np.float32)  # (N,)
        return np.broadcast_to(row, (len(histories), len(catalog))).copy()  # (n, N)

    def score_candidates(
        self, histories: Sequence[UserSequence], candidates: np.ndarray
    ) -> np.ndarray:
        """The item scores at catalogue indices ``candidates`` (n, C), float32."""
        self._require_fitted()
        return self.item_scores().astype(np.float32)[np.asarray(candidates, dtype=np.int64)]

    def top_k(
        self,
        histories: Sequence[UserSequence],
        k: int,
        *,
        exclude_history: bool = True,
        with_moments: bool = False,
    ) -> TopK:
        """The ``k`` best items outside each history, from one list sorted once."""
        self._require_fitted()
        if self._shared is None:
            scores = self.item_scores()
            self._shared = SharedScores(scores.astype(np.float32), scores > 0)
        exclude = self.excluded(histories, exclude_history)
        return shared_top_k(self._shared, k, exclude, with_moments=with_moments)


def write_model_meta(folder: Path, name: str, catalog: Catalog, config: dict[str, Any]) -> None:
    """Write ``model.json`` naming the model type, its config and the catalogue it was fitted on."""
    meta = {"model": name, "catalog_fingerprint": catalog.fingerprint(), "config": config}
    (folder / "model.json").write_text(json.dumps(meta, indent=2) + "\n")


def read_model_meta(folder: Path, name: str, catalog: Catalog) -> dict[str, Any]:
    """Read ``model.json`` and check it names ``name`` and was fitted on ``catalog``."""
    meta_path = Path(folder) / "model.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} holds no saved llmrec model (no model.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("model") != name:
        raise ValueError(f"{folder} holds a {meta.get('model')!r} model, not {name!r}")
    if meta.get("catalog_fingerprint") != catalog.fingerprint():
        raise ValueError(
            f"{folder} was fitted on another catalogue (fingerprint "
            f"{meta.get('catalog_fingerprint')}, this one is {catalog.fingerprint()}); "
            "fit it again on this dataset"
        )
    return meta
