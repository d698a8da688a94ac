"""The next-item LLM as a ranking-stage model (:class:`NextItemModel`).

A next-item model (:mod:`llmrec.nextitem`, trained by ``llmrec finetune`` with a ``family:
nextitem`` recipe) ranks by one forward pass over the user's history, which scores every
catalogue item; it reads no prompt. It joins the one path through :func:`item_scores`: the
evaluation ranker, the recommend pipeline and the service ask any model for "scores of these
items after this history", which a listwise model answers with a rank prompt and this one with
its item scores. Its backbone is cut to its first layers and cannot write text, so reasons are
written by a text model of the backend (the base model, zero-shot, grounded and fact-checked as
every reason is).

It runs on transformers (CPU or GPU) with either backend: vLLM serves token prompts and LoRA
adapters, while this model reads computed item vectors (``inputs_embeds``) and ends in its own
item head; with ``backend: vllm`` the listwise adapters and the reason writer run on vLLM and the
next-item model beside them on transformers (docs/nextitem.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.records import UserSequence
from llmrec.nextitem.ensemble import NextItemEnsemble, load_nextitem, nextitem_kind
from llmrec.nextitem.recommender import NextItemRecommender
from llmrec.ranking.backends.base import ModelInfo, RankModel
from llmrec.ranking.settings import read_ranker_settings


def is_nextitem_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a saved next-item LLM or ensemble (not a listwise adapter)."""
    return nextitem_kind(folder) is not None


class NextItemModel:
    """A :class:`~llmrec.ranking.backends.base.RankModel` that scores items, not prompts."""

    #: :func:`item_scores` asks this model for item scores directly
    scores_items = True

    def __init__(
        self,
        info: ModelInfo,
        recommender: NextItemRecommender | NextItemEnsemble,
        writer: RankModel,
    ) -> None:
        self.info = info
        self.recommender = recommender
        #: writes the reasons (and builds their prompts)
        self.writer = writer

    @property
    def builder(self) -> Any:
        return self.writer.builder

    @property
    def catalog(self) -> Catalog:
        return self.recommender._require_fitted()

    def score_items(
        self,
        histories: Sequence[UserSequence],
        item_lists: Sequence[Sequence[str]],
        progress: bool = False,  # noqa: ARG002 - one forward pass per user is quick
    ) -> list[np.ndarray]:
        """Each list's scores (float64, in the list's order) after its history."""
        if not histories:
            return []
        full = self.recommender.score(histories)  # (n, N)
        catalog = self.catalog
        return [
            full[row, catalog.indices(list(ids))].astype(np.float64)
            for row, ids in enumerate(item_lists)
        ]

    def score(self, prompts: Sequence[Any], progress: bool = False) -> list[np.ndarray]:
        raise TypeError(
            f"{self.info.name!r} is a next-item model: it scores items after a history "
            "(item_scores), not rank prompts"
        )

    def generate(
        self,
        texts: Sequence[str],
        max_new_tokens: int,
        min_new_tokens: int = 0,
        sample_seed: int | None = None,
    ) -> list[str]:
        return self.writer.generate(texts, max_new_tokens, min_new_tokens, sample_seed)


def open_nextitem_model(
    name: str,
    folder: str | os.PathLike[str],
    catalog: Catalog,
    writer: RankModel,
    device: str = "auto",
    dtype: str | None = None,
    base_model: str | None = None,
) -> NextItemModel:
    """Load the next-item model in ``folder`` under the served ``name``; ``writer`` writes its
    reasons. Its fusion weight is the folder's ranker settings (``llmrec evaluate
    --save-weight``), else the default. ``base_model``: the base to run on instead of the one
    its record names (``--llm``)."""
    recommender = load_nextitem(folder, catalog, base_model=base_model, device=device, dtype=dtype)
    info = ModelInfo(
        name=name,
        base_model=str(recommender.record.get("base_model")),
        method=f"nextitem-{recommender.record.get('method', 'lora')}",
        adapter_dir=str(folder),
        fusion_weight=read_ranker_settings(folder).fusion_weight,
        writes_text=False,
    )
    return NextItemModel(info, recommender, writer)


class WithNextItemModels:
    """A backend's models plus next-item models, whose reasons its base model writes."""

    def __init__(self, inner: Any, folders: dict[str, str], config: Any, catalog: Catalog) -> None:
        self.inner = inner
        self.kind = inner.kind
        listed = inner.models()
        writer = listed[config.base_name]
        if not config.load_base:  # loaded only to write reasons: not a model to serve
            listed.pop(config.base_name)
        # on the vLLM backend "auto" means its GPU; transformers takes the same device
        self._models: dict[str, RankModel] = dict(listed)
        for name, folder in folders.items():
            self._models[name] = open_nextitem_model(
                name, folder, catalog, writer, device=config.device, dtype=config.dtype,
                # a base given by hand (--llm) wins over the record's, as for adapters
                base_model=config.base_model if config.adapters_on_base_model else None,
            )  # fmt: skip

    def models(self) -> dict[str, RankModel]:
        return dict(self._models)

    def close(self) -> None:
        self._models.clear()
        self.inner.close()
