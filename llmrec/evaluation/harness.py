"""One harness evaluates any :class:`~llmrec.recommender.Recommender` under either protocol.

Users are scored in batches of ``batch_size``. Under the full protocol a large catalogue is
ranked through the model's top-k lists (``ranking``, see
:class:`~llmrec.evaluation.protocols.FullRanking`): memory O(batch x N) at most, O(users x depth)
for what is kept.

It writes a metrics JSON and, optionally, the rankings it scored (one JSON line per user:
``user_id``, ``ranked`` item ids best first, ``target``), from which any metric can be recomputed
independently (``bench/recompute_metrics.py`` does so without importing llmrec).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from llmrec.data.dataset import RecDataset
from llmrec.data.records import EvalCase
from llmrec.data.topk import SPARSE_MIN_ITEMS, TopK
from llmrec.evaluation.metrics import DEFAULT_KS, metrics_from_ranks
from llmrec.evaluation.protocols import (
    FullRanking,
    Protocol,
    rank_candidates,
    rank_full,
    sample_candidates,
)
from llmrec.io import atomic_write_text
from llmrec.recommender import Recommender

logger = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    protocol: Protocol = Protocol.FULL
    ks: tuple[int, ...] = DEFAULT_KS
    #: Items listed per user in the rankings file (full protocol); at least max(ks).
    depth: int = 100
    n_negatives: int = 19
    seed: int = 0
    batch_size: int = 256
    exclude_history: bool = True
    #: Full protocol: rank dense rows, top-k lists, or ``auto`` (by catalogue size).
    ranking: FullRanking = FullRanking.AUTO

    def __post_init__(self) -> None:
        self.protocol = Protocol(self.protocol)
        self.ranking = FullRanking(self.ranking)
        self.ks = tuple(sorted(set(int(k) for k in self.ks)))
        if self.depth < max(self.ks):
            raise ValueError(f"depth ({self.depth}) must be >= the largest K ({max(self.ks)})")
        if self.n_negatives < 1:
            raise ValueError(f"n_negatives must be >= 1, got {self.n_negatives}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class EvalResult:
    model: str
    dataset: str
    protocol: str
    part: str
    users: int
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    rankings: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("rankings")
        out["machine"] = f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}"
        out["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return out

    def write(self, metrics_out: str | None = None, rankings_out: str | None = None) -> None:
        if metrics_out:
            atomic_write_text(metrics_out, json.dumps(self.to_json(), indent=2) + "\n")
        if rankings_out:
            lines = (json.dumps(r, ensure_ascii=False) for r in self.rankings)
            atomic_write_text(rankings_out, "\n".join(lines) + "\n")


def evaluate(
    model: Recommender,
    dataset: RecDataset,
    cases: Sequence[EvalCase],
    config: EvalConfig | None = None,
    *,
    part: str = "test",
    progress: bool = True,
) -> EvalResult:
    """Score ``cases`` with a fitted ``model`` and compute metrics under ``config.protocol``."""
    config = config or EvalConfig()
    if not cases:
        raise ValueError("no evaluation cases: the split left no user with a target")
    catalog = dataset.catalog
    start = time.perf_counter()
    ranks: list[int | None] = []
    rankings: list[dict[str, Any]] = []
    notes: list[str] = []
    targets_in_history = 0
    interacted = _interacted(dataset) if config.protocol is Protocol.SAMPLED else {}
    top_k = config.protocol is Protocol.FULL and (
        config.ranking is FullRanking.TOP_K
        or (config.ranking is FullRanking.AUTO and len(catalog) >= SPARSE_MIN_ITEMS)
    )
    bar = tqdm(
        total=len(cases),
        desc=f"evaluate {model.name} ({config.protocol.value})",
        unit="user",
        disable=not progress,
        leave=False,
    )
    for batch in _batches(cases, config.batch_size):
        histories = [c.history for c in batch]
        targets = catalog.indices(c.target for c in batch)
        if config.protocol is Protocol.FULL:
            exclude = [
                catalog.indices(c.history.item_ids) if config.exclude_history else np.empty(0, int)
                for c in batch
            ]
            targets_in_history += sum(
                int(t) in set(e.tolist()) for t, e in zip(targets, exclude, strict=True)
            )
            if top_k:
                top = model.top_k(histories, config.depth, exclude_history=config.exclude_history)
                _check_top_k(model, top, len(batch), config.depth, len(catalog), exclude)
                ranked, batch_ranks = top.items, top.ranks_of(targets)
            else:
                scores = np.array(model.score(histories), dtype=np.float64, copy=True)  # (n, N)
                _check_shape(model, scores, (len(batch), len(catalog)))
                ranked, batch_ranks = rank_full(scores, exclude, targets, config.depth)
        else:
            candidates = sample_candidates(
                batch, catalog, interacted, config.n_negatives, config.seed
            )
            scores = np.asarray(model.score_candidates(histories, candidates), dtype=np.float64)
            _check_shape(model, scores, candidates.shape)
            ranked, batch_ranks = rank_candidates(scores, candidates, targets)
        ranks.extend(batch_ranks)
        for case, row in zip(batch, ranked, strict=True):
            rankings.append(
                {
                    "user_id": case.user_id,
                    "ranked": [catalog.ids[i] for i in row if i >= 0],
                    "target": case.target,
                }
            )
        bar.update(len(batch))
    bar.close()
    if config.protocol is Protocol.FULL:
        notes.append(
            "full ranking over all items; items in the user's history are excluded"
            if config.exclude_history
            else "full ranking over all items; history items are NOT excluded"
        )
        if top_k:
            notes.append(
                f"ranked from each user's top {config.depth} list (a target below it is a miss "
                "at every K reported)"
            )
        if targets_in_history:
            notes.append(
                f"{targets_in_history} users' targets were in their own history (repeat "
                "consumption) and count as misses"
            )
    else:
        notes.append(
            f"sampled protocol: target + {config.n_negatives} uniform negatives the user never "
            f"interacted with, seed {config.seed}, shuffled; NDCG@{config.n_negatives + 1} is "
            "NDCG over all candidates"
        )
    result = EvalResult(
        model=model.name,
        dataset=dataset.name,
        protocol=config.protocol.value,
        part=part,
        users=len(cases),
        metrics=metrics_from_ranks(ranks, config.ks),
        notes=notes,
        seconds=time.perf_counter() - start,
        rankings=rankings,
    )
    logger.debug("%s %s: %s", model.name, config.protocol.value, result.metrics)
    return result


def _interacted(dataset: RecDataset) -> dict[str, set[int]]:
    index = dataset.catalog.indices(dataset.interactions["item_id"])
    out: dict[str, set[int]] = {}
    for user, i in zip(dataset.interactions["user_id"].tolist(), index.tolist(), strict=True):
        out.setdefault(user, set()).add(i)
    return out


def _batches(cases: Sequence[EvalCase], size: int) -> Iterator[Sequence[EvalCase]]:
    for start in range(0, len(cases), size):
        yield cases[start : start + size]


def _check_shape(model: Recommender, scores: np.ndarray, expected: tuple[int, ...]) -> None:
    if scores.shape != tuple(expected):
        raise ValueError(
            f"{type(model).__name__} returned scores of shape {scores.shape}, expected {expected}"
        )


def _check_top_k(
    model: Recommender,
    top: TopK,
    n: int,
    depth: int,
    n_items: int,
    exclude: Sequence[np.ndarray],
) -> None:
    """A model's top-k lists must have the asked shape, hold catalogue indices and leave out the
    excluded items."""
    name = type(model).__name__
    if not isinstance(top, TopK) or top.items.shape != (n, depth):
        shape = top.items.shape if isinstance(top, TopK) else type(top).__name__
        raise ValueError(
            f"{name}.top_k returned {shape}, expected TopK lists of shape {(n, depth)}"
        )
    if ((top.items < -1) | (top.items >= n_items)).any():
        raise ValueError(f"{name}.top_k returned item indices outside [0, {n_items})")
    for row, items in enumerate(exclude):
        if len(items) and np.isin(top.items[row], items).any():
            raise ValueError(
                f"{name}.top_k listed an item of the user's history in row {row}; it must leave "
                "history items out when exclude_history is True"
            )


def format_table(results: Sequence[EvalResult], ks: Sequence[int] = DEFAULT_KS) -> str:
    """A Markdown table: one row per result, HR/NDCG/MRR at each K."""
    cols = [f"HR@{k}" for k in ks] + [f"NDCG@{k}" for k in ks] + [f"MRR@{k}" for k in ks]
    cols = [c for c in cols if any(c in r.metrics for r in results)]
    head = "| model | protocol | users | " + " | ".join(cols) + " |"
    sep = "|" + "---|" * (3 + len(cols))
    rows = [
        f"| {r.model} | {r.protocol} | {r.users} | "
        + " | ".join(f"{r.metrics[c]:.4f}" if c in r.metrics else "" for c in cols)
        + " |"
        for r in results
    ]
    return "\n".join([head, sep, *rows])
