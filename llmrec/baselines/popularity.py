"""Most-popular baseline: every user gets the same scores, the items' training counts."""

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
from llmrec.data.topk import SharedScores
from llmrec.io import atomic_dir
from llmrec.recommender import UserIndependent, read_model_meta, write_model_meta
from llmrec.validation import config_from_dict, merge_config

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PopularityConfig:
    """The popularity model has no settings; the class exists so every baseline has a config."""


class PopularityRecommender(UserIndependent):
    """Scores each item by how often it occurs in the training sequences."""

    name: ClassVar[str] = "pop"
    config_class: ClassVar[type] = PopularityConfig

    def __init__(self, config: PopularityConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config: PopularityConfig = merge_config(PopularityConfig, config, overrides, self.name)
        self.counts: np.ndarray | None = None  # (N,) float64
        self._shared: SharedScores | None = None  # the counts sorted once, for top_k

    def fit(
        self,
        train: Sequence[UserSequence],
        catalog: Catalog,
        valid: Sequence[EvalCase] | None = None,
    ) -> PopularityRecommender:
        """Count every item occurrence in ``train`` (``valid`` is not used)."""
        self.counts = item_counts(encode(train, catalog), len(catalog))  # (N,)
        self.catalog = catalog
        self._shared = None
        logger.info(
            "pop: counted %d interactions over %d items (%d items never seen)",
            int(self.counts.sum()),
            len(catalog),
            int((self.counts == 0).sum()),
        )
        return self

    def item_scores(self) -> np.ndarray:
        """The training counts (N,)."""
        assert self.counts is not None
        return self.counts

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``model.json`` and ``counts.npy`` to the folder ``path``."""
        catalog = self._require_fitted()
        assert self.counts is not None
        with atomic_dir(path) as tmp:
            write_model_meta(tmp, self.name, catalog, dataclasses.asdict(self.config))
            np.save(tmp / "counts.npy", self.counts)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], catalog: Catalog) -> PopularityRecommender:
        """Read a model written by :meth:`save`; refuse one fitted on another catalogue."""
        folder = Path(path)
        meta = read_model_meta(folder, cls.name, catalog)
        model = cls(config_from_dict(PopularityConfig, meta.get("config", {}), cls.name))
        counts = np.load(folder / "counts.npy", allow_pickle=False)
        if counts.shape != (len(catalog),):
            raise ValueError(
                f"{folder}/counts.npy has shape {counts.shape}, expected ({len(catalog)},)"
            )
        model.counts = counts.astype(np.float64)
        model.catalog = catalog
        return model
