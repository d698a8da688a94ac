"""Validation during fine-tuning: NDCG@10 of the ranker over retrieved candidates.

A fixed subset of validation users (:func:`heldout_cases`, never trained on) gets the retriever's
top ``k`` rendered once into prompts (:func:`build_validation`); :meth:`Validation.evaluate`
scores them with the model being trained: the pure LLM, or for a residual ranker the LLM fused
with the retriever's rank at the trained weight (:func:`~llmrec.ranking.fuse.fuse`). A target the
retriever missed counts as a miss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from llmrec.data.records import EvalCase
from llmrec.evaluation.metrics import metrics_from_ranks
from llmrec.finetune import processes
from llmrec.prompts.builder import PromptBuilder, RankPrompt
from llmrec.ranking.fuse import fuse, ranks_to_scores
from llmrec.ranking.pipeline import candidates_from_scores
from llmrec.ranking.scorer import LLMScorer
from llmrec.recommender import Recommender

if TYPE_CHECKING:
    from llmrec.finetune.recipe import TrainingConfig

CUTOFFS = (1, 5, 10, 20)


@dataclass
class Validation:
    """Fixed validation prompts: retrieved candidates for a subset of validation users."""

    prompts: list[RankPrompt]
    targets: list[str]
    retriever_metrics: dict[str, float]
    #: Each prompt's candidates' retrieval ranks, in the prompt's order.
    retrieval_ranks: list[list[int]] | None = None
    #: A residual ranker is scored fused with the retriever at this weight (0: the pure LLM).
    residual_weight: float = 0.0

    def evaluate(self, scorer: LLMScorer) -> dict[str, float]:
        """Ranking metrics of ``scorer``'s model on the prompts (HR/NDCG/MRR@1, 5, 10, 20). In a
        multi-process run each process scores its share of the prompts and every one gets the
        metrics of all of them (:mod:`~llmrec.finetune.processes`)."""
        mine = processes.shard(len(self.prompts))
        local = list(zip(mine, self._ranks(scorer, mine), strict=True))
        every = processes.merge_sharded(processes.gather(local), len(self.prompts))
        return metrics_from_ranks(every, CUTOFFS)

    def _ranks(self, scorer: LLMScorer, indices: Sequence[int]) -> list[int | None]:
        """The target's 0-based rank among each of the ``indices`` prompts' candidates (None: the
        retriever missed it)."""
        prompts = [self.prompts[i] for i in indices]
        scores = scorer.score(prompts) if prompts else []
        out: list[int | None] = []
        for i, prompt, s in zip(indices, prompts, scores, strict=True):
            target = self.targets[i]
            if target not in prompt.item_ids:
                out.append(None)
                continue
            if self.residual_weight and self.retrieval_ranks is not None:
                ret = ranks_to_scores(self.retrieval_ranks[i])  # (1, C)
                s = fuse(np.asarray(s)[None, :], ret, self.residual_weight)[0]  # (C,)
            t = prompt.item_ids.index(target)
            out.append(int((s > s[t]).sum()))
        return out


def build_validation(
    cases: Sequence[EvalCase],
    retriever: Recommender,
    builder: PromptBuilder,
    k: int,
) -> Validation:
    """The retriever's top ``k`` for each case rendered into a listwise prompt, with the
    retriever's own metrics on them."""
    catalog = builder.catalog
    histories = [c.history for c in cases]
    top, _ = candidates_from_scores(retriever.score(histories), histories, catalog, k)
    prompts, ranks, shown_ranks = [], [], []
    for case, row in zip(cases, top, strict=True):
        ids = [catalog.ids[int(i)] for i in row]
        prompt = builder.listwise(case.history, ids, salt="valid")
        prompts.append(prompt)
        shown_ranks.append([ids.index(i) + 1 for i in prompt.item_ids])
        ranks.append(ids.index(case.target) if case.target in ids else None)
    return Validation(
        prompts,
        [c.target for c in cases],
        metrics_from_ranks(ranks, CUTOFFS),
        shown_ranks,
    )


def heldout_cases(valid: Sequence[EvalCase], training: TrainingConfig) -> list[EvalCase]:
    """The validation users kept out of training for early stopping (seeded, ``eval_users``)."""
    cases = list(valid)
    if len(cases) > training.eval_users:
        rng = np.random.default_rng(training.seed)
        pick = np.sort(rng.choice(len(cases), size=training.eval_users, replace=False))
        cases = [cases[i] for i in pick]
    return cases
