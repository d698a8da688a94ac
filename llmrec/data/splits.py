"""Splits: leave-one-out per user, and a global time split.

A :class:`Split` holds the training sequences a model fits on, and the validation and test
questions (:class:`~llmrec.data.records.EvalCase`: a history and the item that came next).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from llmrec.data.dataset import RecDataset
from llmrec.data.records import EvalCase, UserSequence

logger = logging.getLogger(__name__)


class SplitKind(str, Enum):
    LEAVE_ONE_OUT = "loo"
    TIME = "time"


@dataclass
class Split:
    kind: SplitKind
    train: list[UserSequence]
    valid: list[EvalCase]
    test: list[EvalCase]
    report: list[str] = field(default_factory=list)

    def cases(self, part: str) -> list[EvalCase]:
        if part not in ("valid", "test"):
            raise ValueError(f"split part must be 'valid' or 'test', got {part!r}")
        return self.valid if part == "valid" else self.test

    def train_for(self, part: str) -> list[UserSequence]:
        """Sequences to fit on before evaluating ``part``.

        Models always fit on ``train`` (validation targets are for model selection); at test time
        the validation item is part of each test history, as in RecBole and LlamaRec.
        """
        self.cases(part)
        return self.train


def leave_one_out(dataset: RecDataset, min_length: int = 3) -> Split:
    """Per user: last item -> test target, the one before -> validation target, rest -> train.

    Users with fewer than ``min_length`` (>= 3) interactions are kept for training only, and
    counted in the report.
    """
    if min_length < 3:
        raise ValueError(f"min_length must be >= 3 for leave-one-out, got {min_length}")
    train: list[UserSequence] = []
    valid: list[EvalCase] = []
    test: list[EvalCase] = []
    short = 0
    for seq in dataset.sequences():
        if len(seq) < min_length:
            short += 1
            train.append(seq)
            continue
        head = seq.head(-2)  # frozen, so training and validation share one object
        train.append(head)
        valid.append(EvalCase(seq.user_id, head, seq.item_ids[-2]))
        test.append(EvalCase(seq.user_id, seq.head(-1), seq.item_ids[-1]))
    report = [
        f"leave-one-out: {len(test)} users evaluated; {short} users with fewer than "
        f"{min_length} interactions used for training only"
    ]
    logger.info(report[0])
    return Split(SplitKind.LEAVE_ONE_OUT, train, valid, test, report)


def time_split(
    dataset: RecDataset,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> Split:
    """Global time split: cut the timeline at two quantiles of all timestamps.

    Train is everything before the first cut. Validation asks, for each user active between the
    cuts, for their first item after the first cut given everything before it; test asks the same
    after the second cut given everything before it (validation-period behaviour included).
    """
    fractions_ok = 0 < valid_fraction < 1 and 0 < test_fraction < 1
    if not (fractions_ok and valid_fraction + test_fraction < 1):
        raise ValueError(
            f"valid_fraction ({valid_fraction}) and test_fraction ({test_fraction}) must be in "
            "(0, 1) and sum to less than 1"
        )
    ts = np.sort(dataset.interactions["timestamp"].to_numpy(dtype=float))
    t_valid = _cut(ts, 1 - valid_fraction - test_fraction)
    t_test = _cut(ts, 1 - test_fraction)
    train: list[UserSequence] = []
    valid: list[EvalCase] = []
    test: list[EvalCase] = []
    for seq in dataset.sequences():
        times = np.asarray(seq.timestamps)
        n_before_valid = int(np.searchsorted(times, t_valid, side="left"))
        n_before_test = int(np.searchsorted(times, t_test, side="left"))
        if n_before_valid:
            train.append(seq.head(n_before_valid))
        if n_before_valid < len(seq) and n_before_valid < n_before_test:
            target = seq.item_ids[n_before_valid]
            valid.append(EvalCase(seq.user_id, seq.head(n_before_valid), target))
        if n_before_test < len(seq):
            target = seq.item_ids[n_before_test]
            test.append(EvalCase(seq.user_id, seq.head(n_before_test), target))
    report = [
        f"time split at t={t_valid:.0f} / t={t_test:.0f}: {len(train)} training sequences, "
        f"{len(valid)} validation and {len(test)} test users "
        f"({sum(1 for c in test if len(c.history) == 0)} test users with no earlier history)"
    ]
    logger.info(report[0])
    return Split(SplitKind.TIME, train, valid, test, report)


def _cut(sorted_ts: np.ndarray, q: float) -> float:
    """The ``q`` quantile (linear interpolation) of sorted timestamps.

    Float noise in ``q`` (``1 - 0.2 - 0.2`` is ``0.6000000000000001``) can put the cut a hair after
    a timestamp it should equal, moving the interactions at the cut to the earlier period; a cut
    that falls on a timestamp up to such noise is that timestamp.
    """
    pos = q * (len(sorted_ts) - 1)
    if abs(pos - round(pos)) < 1e-9:
        return float(sorted_ts[round(pos)])
    return float(np.quantile(sorted_ts, q))


def make_split(dataset: RecDataset, kind: str | SplitKind = SplitKind.LEAVE_ONE_OUT) -> Split:
    kind = SplitKind(kind)
    return leave_one_out(dataset) if kind is SplitKind.LEAVE_ONE_OUT else time_split(dataset)


def hold_out_items(
    split: Split, item_ids: Sequence[str], fraction: float = 0.1, seed: int = 0
) -> tuple[Split, frozenset[str]]:
    """A cold-start variant of ``split``: a seeded ``fraction`` of ``item_ids`` never in training.

    Their interactions are removed from the training sequences only; validation and test cases
    are unchanged, so test targets that are held-out items measure cold-start retrieval.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    ids = list(item_ids)
    n_cold = max(1, int(round(fraction * len(ids))))
    cold = frozenset(ids[i] for i in rng.choice(len(ids), size=n_cold, replace=False))
    train: list[UserSequence] = []
    removed = 0
    for seq in split.train:
        keep = [i for i, item in enumerate(seq.item_ids) if item not in cold]
        removed += len(seq) - len(keep)
        if keep:
            train.append(_select(seq, keep))
    n_cold_targets = sum(c.target in cold for c in split.test)
    report = [
        *split.report,
        f"cold start: {n_cold} of {len(ids)} items held out of training (seed {seed}); "
        f"{removed} training interactions removed; {n_cold_targets} test targets are cold",
    ]
    logger.info(report[-1])
    return Split(split.kind, train, split.valid, split.test, report), cold


def _select(seq: UserSequence, positions: list[int]) -> UserSequence:
    def pick(values):  # noqa: ANN001, ANN202
        return None if values is None else tuple(values[i] for i in positions)

    return UserSequence(
        user_id=seq.user_id,
        item_ids=pick(seq.item_ids),
        timestamps=pick(seq.timestamps),
        ratings=pick(seq.ratings),
        behaviors=pick(seq.behaviors),
        context={k: pick(v) for k, v in seq.context.items()},
    )
