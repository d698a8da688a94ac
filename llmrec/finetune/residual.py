"""Residual training: the LLM learns a correction to the retriever's order.

The retriever's rank enters the loss as a prior, ``w * z(rank)`` per candidate label (``z``: the
rank standardised over the list, :func:`~llmrec.ranking.fuse.rank_prior`, as fusion uses it).
:func:`fit_residual_weight` finds ``w`` by maximum likelihood on the rank rows before training;
:func:`with_residual_prior` gives each rank row its prior.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmrec.finetune.examples import RankRow, TrainingRow
from llmrec.ranking.fuse import rank_prior


def fit_residual_weight(rows: Sequence[TrainingRow], top: float = 8.0) -> float:
    """The weight ``w`` for which ``softmax(w * z(rank))`` best predicts the rank rows' targets
    (maximum likelihood over a 0.01 grid up to ``top``): the retriever's order as a prior, as
    sure of itself as it has earned on these examples."""
    rank_rows = [r for r in rows if isinstance(r, RankRow)]
    if not rank_rows:
        raise ValueError("no rank rows to fit the residual weight on")
    grid = np.arange(0.0, top + 1e-9, 0.01)  # (G,)
    loglik = np.zeros_like(grid)  # (G,)
    for row in rank_rows:
        z = rank_prior(row.ranks)  # (L,)
        logits = grid[:, None] * z[None, :]  # (G, L)
        top_logit = logits.max(axis=1, keepdims=True)  # (G, 1)
        lse = np.log(np.exp(logits - top_logit).sum(axis=1)) + top_logit[:, 0]  # (G,)
        loglik += logits[:, row.target] - lse
    return float(grid[int(np.argmax(loglik))])


def with_residual_prior(rows: Sequence[TrainingRow], weight: float) -> list[TrainingRow]:
    """The rows with each rank row's prior, ``weight * z(rank)`` per label, for the residual
    loss (reason rows unchanged)."""
    return [
        row.with_prior(weight * rank_prior(row.ranks)) if isinstance(row, RankRow) else row
        for row in rows
    ]
