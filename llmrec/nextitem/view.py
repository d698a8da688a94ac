"""The next-item LLM as a retrieval view (``nextitem`` in :mod:`llmrec.retrieval.registry`).

A view is fitted by the fused retriever; the next-item LLM is trained by ``llmrec finetune``. So
this view's "fit" loads a trained model (``path``), refusing one trained on another catalogue or
data, and its saved form carries a copy of that model, so a built retriever folder stands alone::

    llmrec retrieve build --views cooc,sasrec,recent-pop,pop,nextitem \\
        --set views.nextitem.path=runs/nextitem-lora/model --out runs/retriever-nextitem
    llmrec evaluate --model nextitem --load runs/nextitem-lora/model
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.records import EvalCase, UserSequence
from llmrec.io import atomic_dir
from llmrec.nextitem.ensemble import NextItemEnsemble, load_nextitem, nextitem_kind
from llmrec.nextitem.recommender import NextItemRecommender
from llmrec.recommender import Recommender, read_model_meta, write_model_meta
from llmrec.validation import merge_config

#: Where a saved view keeps its copy of the model.
MODEL_COPY = "model"


@dataclass(frozen=True)
class NextItemViewConfig:
    """``path``: a trained next-item model (``OUT/model`` of ``llmrec finetune``);
    ``device``/``dtype``: where and how it runs (``None``: the dtype it was trained in)."""

    path: str = ""
    device: str = "auto"
    dtype: str | None = None


class NextItemView(Recommender):
    """A trained next-item LLM, loaded as a view (see the module docstring)."""

    name: ClassVar[str] = "nextitem"
    config_class: ClassVar[type] = NextItemViewConfig

    def __init__(self, config: NextItemViewConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config: NextItemViewConfig = merge_config(
            NextItemViewConfig, config, overrides, self.name
        )
        self.model: NextItemRecommender | NextItemEnsemble | None = None
        self._source: Path | None = None

    def fit(
        self,
        train: Sequence[UserSequence],
        catalog: Catalog,
        valid: Sequence[EvalCase] | None = None,
    ) -> NextItemView:
        """Load the model at ``path`` (trained elsewhere; the sequences are not used)."""
        if not self.config.path:
            raise ValueError(
                "the nextitem view loads a trained model: set its path (--set "
                "views.nextitem.path=runs/nextitem-lora/model); train one with `llmrec finetune "
                "--recipe finetune/nextitem-lora.yaml`"
            )
        self._open(Path(self.config.path), catalog)
        return self

    def _open(self, folder: Path, catalog: Catalog) -> None:
        if not (folder / "model.json").is_file():
            raise FileNotFoundError(f"{folder} holds no trained next-item model (no model.json)")
        self.model = load_nextitem(
            folder, catalog, device=self.config.device, dtype=self.config.dtype
        )
        self._source = folder
        self.catalog = catalog

    def _require_model(self) -> NextItemRecommender | NextItemEnsemble:
        if self.model is None:
            raise RuntimeError("the nextitem view is not loaded: call fit() or load() first")
        return self.model

    def score(self, histories: Sequence[UserSequence]) -> np.ndarray:
        return self._require_model().score(histories)

    def known_items(self) -> np.ndarray | None:
        return self._require_model().known_items()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """The view's record and a copy of the model it loaded."""
        catalog = self._require_fitted()
        source = self._source
        if source is None:
            raise RuntimeError("the nextitem view is not loaded: nothing to save")
        with atomic_dir(path) as tmp:
            shutil.copytree(source, tmp / MODEL_COPY)
            write_model_meta(tmp, self.name, catalog, asdict(self.config))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], catalog: Catalog) -> NextItemView:
        """A saved view, or a trained model folder itself."""
        folder = Path(path)
        if nextitem_kind(folder) is not None:
            view = cls(path=str(folder))
            view._open(folder, catalog)
            return view
        meta = read_model_meta(folder, cls.name, catalog)
        view = cls(NextItemViewConfig(**meta.get("config", {})))
        view._open(folder / MODEL_COPY, catalog)
        return view
