"""The retrievers of a fine-tuning run, from its recipe's ``retrieval`` section.

:func:`fit_recipe_retriever` fits the run's retriever when none is given (it proposes hard
negatives and the validation candidates); :func:`shifted_retriever` is the "shifted" example
source's second retriever, fitted on cut training sequences and cached as a retriever folder
(:func:`llmrec.retrieval.saved.build_retriever`) so that every adapter trained on the same data
reuses it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from llmrec.data.dataset import RecDataset
from llmrec.data.records import EvalCase, UserSequence
from llmrec.finetune.recipe import Recipe
from llmrec.recommender import Recommender
from llmrec.retrieval import saved

logger = logging.getLogger(__name__)

#: Under ``$LLMREC_CACHE``: the shifted retrievers, one folder per key.
CACHE_DIR = "example-retrievers"


def fit_recipe_retriever(
    recipe: Recipe, train: Sequence[UserSequence], valid: Sequence[EvalCase], catalog: Any
) -> Recommender:
    """The recipe's retriever, fitted on ``train`` with its fusion tuned on ``valid``."""
    cfg = recipe.retrieval
    return saved.fit_retriever(
        train,
        catalog,
        valid,
        cfg.views,
        settings={"method": cfg.fusion},
        text_model=cfg.text_model,
    )


def shifted_retriever(
    recipe: Recipe,
    dataset: RecDataset,
    cut_train: Sequence[UserSequence],
    valid: Sequence[EvalCase],
) -> Recommender:
    """The "shifted" source's retriever, fitted once per (data, retrieval settings, shift,
    held-out users) and cached as a retriever folder under ``$LLMREC_CACHE/example-retrievers``:
    every adapter method trained on the same data reuses it."""
    import hashlib

    from llmrec.fetch import cache_root

    key = json.dumps(
        {
            "data": dataset.fingerprint(),
            "retrieval": recipe.retrieval.__dict__,
            "shift": recipe.examples.shift,
            "min_history": recipe.examples.min_history,
            "heldout": sorted(c.user_id for c in valid),
        },
        sort_keys=True,
        default=list,
    )
    folder = cache_root() / CACHE_DIR / hashlib.sha256(key.encode()).hexdigest()[:16]
    if (folder / "fused").is_dir():  # a folder cached before it had a manifest is fitted again
        try:
            logger.info("reusing the shifted retriever cached in %s", folder)
            return saved.load_retriever(folder, dataset.catalog)
        except (OSError, ValueError) as exc:
            logger.warning("cached shifted retriever unusable (%s): fitting it again", exc)
    cfg = recipe.retrieval
    return saved.build_retriever(
        folder,
        cut_train,
        dataset.catalog,
        valid,
        cfg.views,
        settings={"method": cfg.fusion},
        text_model=cfg.text_model,
        dataset=dataset.name,
    )
