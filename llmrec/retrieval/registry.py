"""Retrieval views by name: every view is a Recommender, imported on first use.

The baselines are views too (SASRec is the collaborative view, popularity a simple one), so one
registry serves ``llmrec evaluate --model NAME`` and ``llmrec retrieve build --views ...``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from llmrec import baselines
from llmrec.recommender import Recommender

#: Retrieval's own views; the baselines (pop, markov, sasrec) come from llmrec.baselines.
_VIEWS: dict[str, tuple[str, str]] = {
    "text": ("llmrec.retrieval.text", "TextView"),
    "recent-pop": ("llmrec.retrieval.simple", "RecentPopularity"),
    "cooc": ("llmrec.retrieval.simple", "Cooccurrence"),
    "fused": ("llmrec.retrieval.fusion", "FusedRetriever"),
    # trained by `llmrec finetune` (family: nextitem); the view loads it by path
    "nextitem": ("llmrec.nextitem.view", "NextItemView"),
}
#: The views a fused retriever uses unless told otherwise.
DEFAULT_VIEWS = ("text", "sasrec", "cooc", "recent-pop", "pop")


def available() -> list[str]:
    return [*baselines.available(), *_VIEWS]


def view_class(kind: str) -> type[Recommender]:
    if kind in baselines.available():
        return baselines.model_class(kind)
    try:
        module, cls = _VIEWS[kind]
    except KeyError:
        raise ValueError(f"unknown model {kind!r}; valid names are {available()}") from None
    return getattr(importlib.import_module(module), cls)


def config_fields(kind: str) -> dict[str, Any]:
    """Field name -> type hint of the view's config dataclass (empty for ``fused``)."""
    cls = getattr(view_class(kind), "config_class", None)
    return {} if cls is None else dataclass_fields(cls)


def dataclass_fields(cls: type) -> dict[str, Any]:
    """Field name -> resolved type hint of a config dataclass."""
    import typing

    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name) for f in dataclasses.fields(cls)}


def create(
    kind: str,
    settings: Mapping[str, Any] | None = None,
    *,
    views: Sequence[str] = DEFAULT_VIEWS,
    view_settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> Recommender:
    """A new, unfitted model. ``fused`` takes ``views`` and per-view ``view_settings``; its own
    ``settings`` are :class:`~llmrec.retrieval.fusion.FusionConfig` fields."""
    settings = dict(settings or {})
    if kind != "fused":
        return view_class(kind)(**settings)
    view_settings = dict(view_settings or {})
    unknown = sorted(set(view_settings) - set(views))
    if unknown:
        raise ValueError(f"settings given for views {unknown} that are not in {list(views)}")
    members = {v: create(v, view_settings.get(v)) for v in views}
    # Looked up by name like every view: fusion imports this registry (to load its members), so
    # an import of fusion here would close a cycle.
    fused: Any = view_class("fused")
    return fused.from_settings(members, settings)
