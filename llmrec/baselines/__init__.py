"""Baseline recommenders, by name: ``pop`` (popularity), ``markov`` (first-order Markov chain)
and ``sasrec`` (self-attentive sequential recommendation, needs torch).

Modules are imported on first use, so ``import llmrec.baselines`` does not import torch::

    from llmrec import baselines

    model = baselines.create("sasrec", epochs=50).fit(train, catalog, valid)
    model.save("runs/sasrec")
    again = baselines.load("sasrec", "runs/sasrec", catalog)
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from llmrec.data.catalog import Catalog
from llmrec.recommender import Recommender

__all__ = ["available", "config_class", "create", "load", "model_class"]

#: name -> (module, class name). Keep in the order baselines are usually reported.
_REGISTRY: dict[str, tuple[str, str]] = {
    "pop": ("llmrec.baselines.popularity", "PopularityRecommender"),
    "markov": ("llmrec.baselines.markov", "MarkovRecommender"),
    "sasrec": ("llmrec.baselines.sasrec", "SASRecRecommender"),
}


def available() -> list[str]:
    """Names accepted by :func:`create`, :func:`load` and :func:`config_class`."""
    return list(_REGISTRY)


def model_class(name: str) -> type[Recommender]:
    """The :class:`Recommender` subclass registered as ``name`` (imports its module)."""
    try:
        module_name, class_name = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; valid names are {available()}") from None
    cls: type[Recommender] = getattr(importlib.import_module(module_name), class_name)
    return cls


def config_class(name: str) -> type:
    """The config dataclass of the baseline ``name`` (its fields are :func:`create`'s keywords)."""
    return model_class(name).config_class  # type: ignore[attr-defined, no-any-return]


def create(name: str, **config: Any) -> Recommender:
    """A new, unfitted baseline ``name`` with ``config`` overriding its default settings.

    Raises ``ValueError`` for an unknown name, an unknown setting or an invalid value.
    """
    return model_class(name)(**config)  # type: ignore[call-arg]


def load(name: str, path: str | os.PathLike[str], catalog: Catalog) -> Recommender:
    """Read the baseline ``name`` saved at ``path``; it must have been fitted on ``catalog``."""
    return model_class(name).load(path, catalog)
