"""A retriever folder as ``llmrec retrieve build`` writes it: ``retriever.json`` (what it was built
from), ``fused/`` (the fused retriever) and ``index/`` (the text view's faiss index).

:func:`build_retriever` fits and writes one (the CLI and the trainer's example-retriever cache
both call it); :func:`load_retriever` reads one back.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrec.data.catalog import Catalog
from llmrec.data.records import EvalCase, UserSequence
from llmrec.io import atomic_write_text

if TYPE_CHECKING:
    from llmrec.retrieval.fusion import FusedRetriever

logger = logging.getLogger(__name__)

MANIFEST = "retriever.json"


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The folder's manifest; a clear error when the folder is not a built retriever."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a retriever folder (no {MANIFEST}); build one with "
            "`llmrec retrieve build --out FOLDER`"
        )
    return json.loads(path.read_text())


def load_retriever(folder: str | os.PathLike[str], catalog: Catalog) -> Any:
    """The fused retriever saved in ``folder`` (refuses another catalogue)."""
    from llmrec.retrieval.fusion import FusedRetriever

    read_manifest(folder)
    return FusedRetriever.load(Path(folder) / "fused", catalog)


def fit_retriever(
    train: Sequence[UserSequence],
    catalog: Catalog,
    valid: Sequence[EvalCase] | None,
    views: Sequence[str],
    *,
    settings: Mapping[str, Any] | None = None,
    view_settings: Mapping[str, Mapping[str, Any]] | None = None,
    text_model: str | None = None,
) -> FusedRetriever:
    """A fused retriever over ``views``, fitted on ``train``, its fusion tuned on ``valid``.

    ``settings`` are :class:`~llmrec.retrieval.fusion.FusionConfig` fields, ``view_settings``
    each view's own; ``text_model`` (a folder from ``llmrec retrieve finetune-text``) is the text
    view's encoder, under any ``text`` setting given explicitly.
    """
    from llmrec.retrieval import registry

    views = list(views)
    per_view = {name: dict(values) for name, values in (view_settings or {}).items()}
    if text_model and "text" in views:
        from llmrec.retrieval.text_finetune import view_settings_for

        per_view["text"] = {**view_settings_for(text_model), **per_view.get("text", {})}
    elif text_model:
        logger.warning("text model %s unused: 'text' is not among the views %s", text_model, views)
    retriever = registry.create("fused", settings, views=views, view_settings=per_view)
    retriever.fit(list(train), catalog, None if valid is None else list(valid))
    return retriever  # type: ignore[return-value]


def save_retriever(
    folder: str | os.PathLike[str],
    retriever: FusedRetriever,
    catalog: Catalog,
    *,
    data: str | None,
    dataset: str,
    index: str | None = None,
) -> Path:
    """Write a fitted ``retriever`` as a retriever folder: ``fused/``, the text view's faiss index
    of kind ``index`` under ``index/`` (when there is a text view and ``index`` is given), then
    the manifest (``data``: the dataset folder it was built from, None when there is none)."""
    from llmrec.retrieval.index import EmbeddingIndex

    folder = Path(folder)
    retriever.save(folder / "fused")
    if index is not None and "text" in retriever.views:
        text_view: Any = retriever.views["text"]
        EmbeddingIndex.build(
            text_view.item_embeddings,
            catalog.ids,
            index,
            fingerprint=text_view.encoder_fingerprint,
            catalog=catalog,
        ).save(folder / "index")
    manifest = {
        "data": data,
        "dataset": dataset,
        "views": list(retriever.views),
        "fusion": json.loads(retriever.describe()),
    }
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return folder


def build_retriever(
    folder: str | os.PathLike[str],
    train: Sequence[UserSequence],
    catalog: Catalog,
    valid: Sequence[EvalCase] | None,
    views: Sequence[str],
    *,
    settings: Mapping[str, Any] | None = None,
    view_settings: Mapping[str, Mapping[str, Any]] | None = None,
    text_model: str | None = None,
    data: str | None = None,
    dataset: str = "",
    index: str | None = None,
) -> FusedRetriever:
    """Fit a fused retriever (:func:`fit_retriever`) and write it as a retriever folder
    (:func:`save_retriever`); :func:`load_retriever` reads it back."""
    retriever = fit_retriever(
        train,
        catalog,
        valid,
        views,
        settings=settings,
        view_settings=view_settings,
        text_model=text_model,
    )
    save_retriever(folder, retriever, catalog, data=data, dataset=dataset, index=index)
    return retriever
