"""Retrieval views by name: every view is a Recommender, imported on first use."""

from __future__ import annotations

import importlib

from llmrec.recommender import Recommender

_VIEWS: dict[str, tuple[str, str]] = {
    "text": ("llmrec.retrieval.text", "TextView"),
    "sasrec": ("llmrec.baselines.sasrec", "SASRecRecommender"),
    "markov": ("llmrec.baselines.markov", "MarkovRecommender"),
    "pop": ("llmrec.baselines.popularity", "PopularityRecommender"),
    "recent-pop": ("llmrec.retrieval.simple", "RecentPopularity"),
    "cooc": ("llmrec.retrieval.simple", "Cooccurrence"),
    "fused": ("llmrec.retrieval.fusion", "FusedRetriever"),
}


def available() -> list[str]:
    return list(_VIEWS)


def view_class(kind: str) -> type[Recommender]:
    try:
        module, cls = _VIEWS[kind]
    except KeyError:
        raise ValueError(
            f"unknown retrieval view {kind!r}; valid views are {available()}"
        ) from None
    return getattr(importlib.import_module(module), cls)
