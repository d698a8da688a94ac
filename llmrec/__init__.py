"""llmrec: LLM-based sequential recommendation.

The entry points a notebook needs, importable from the package itself; each is imported on first
use, so ``import llmrec`` stays light (no torch, pandas or transformers until one is called)::

    import llmrec

    data = llmrec.open_dataset("ml-100k")                 # a built-in name or a prepared folder
    split = llmrec.make_split(data)                       # leave-one-out ("time": global time)
    model = llmrec.create_recommender("sasrec").fit(split.train, data.catalog, split.valid)
    result = llmrec.evaluate(model, data, split.test)     # full ranking; result.metrics
    pipe = llmrec.load_pipeline("runs/retriever", data, "runs/adapter-lora/adapter")
    for rec in llmrec.recommend(pipe, data.sequence("1"), k=5):
        print(rec.title, rec.score, rec.reason.text)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> (module, attribute), imported on first access.
_LAZY: dict[str, tuple[str, str]] = {
    "open_dataset": ("llmrec.data", "open_dataset"),
    "make_split": ("llmrec.data", "make_split"),
    "RecDataset": ("llmrec.data", "RecDataset"),
    "UserSequence": ("llmrec.data", "UserSequence"),
    "create_recommender": ("llmrec.retrieval.registry", "create"),
    "evaluate": ("llmrec.evaluation", "evaluate"),
    "EvalConfig": ("llmrec.evaluation", "EvalConfig"),
    "format_table": ("llmrec.evaluation", "format_table"),
    "load_pipeline": ("llmrec.ranking.recommend", "load_pipeline"),
    "recommend": ("llmrec.ranking.recommend", "recommend"),
}

__all__ = [  # written out (not built from _LAZY) for linters; a test checks that the two agree
    "EvalConfig",
    "RecDataset",
    "UserSequence",
    "__version__",
    "create_recommender",
    "evaluate",
    "format_table",
    "load_pipeline",
    "make_split",
    "open_dataset",
    "recommend",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on demand
    from llmrec.data import RecDataset, UserSequence, make_split, open_dataset
    from llmrec.evaluation import EvalConfig, evaluate, format_table
    from llmrec.ranking.recommend import load_pipeline, recommend
    from llmrec.retrieval.registry import create as create_recommender


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'llmrec' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
