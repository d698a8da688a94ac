"""Supervised examples for the LLM ranker, built with the same prompt builder serving uses.

Ranking examples: for each training sequence, a few prefixes (the longest always, others sampled
uniformly) -> the next item among ``num_candidates`` candidates: the target, ``hard_negatives``
from the retriever's top list for that prefix (history and target excluded), and uniform random
items for the rest. The loss is the cross-entropy of the target's label over the candidate labels
at the answer position: exactly what one-pass ranking reads at inference.

Reason examples (multi-task, ``reason_fraction`` > 0): the prompt asks why the user may like the
next item; the answer is a "silver" reason built from facts that are true of this user and item
(shared genres, the most similar history item), see :mod:`llmrec.ranking.reasons`.

Each example is a typed row: :class:`RankRow` or :class:`ReasonRow` (:data:`TrainingRow`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from llmrec.data.catalog import Catalog
from llmrec.data.records import EvalCase, UserSequence
from llmrec.prompts.builder import MAX_CANDIDATES, PromptBuilder, stable_seed
from llmrec.recommender import Recommender
from llmrec.validation import check_number, reject_unknown

SOURCES = ("train", "valid", "both", "shifted")


@dataclass(frozen=True)
class ExampleConfig:
    num_candidates: int = 20
    hard_negatives: int = 12
    prefixes_per_user: int = 2
    min_history: int = 3
    max_examples: int | None = None
    reason_fraction: float = 0.0
    #: Keep only cases whose target is among the retriever's top ``num_candidates`` (the lists
    #: the ranker sees at test time). Otherwise a missed target would have to be appended below
    #: every hard negative, and the model learns "the last line is the answer".
    require_retrieved: bool = False
    #: Where examples come from: "train" (prefixes of the training sequences), "valid" (each
    #: user's validation target after their training sequence, the users held out for early
    #: stopping excluded: the retriever never saw these targets, so its evidence is honest), or
    #: "both"; or "shifted": a second retriever is fitted on the training sequences without their
    #: last ``shift`` items, and each user's last ``shift`` training items and validation target
    #: become cases whose candidates come from it: ``shift + 1`` honest cases a user instead of
    #: one, with the retriever's evidence as unseen as at test time.
    source: str = "train"
    shift: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        check_number("num_candidates", self.num_candidates, minimum=2, maximum=MAX_CANDIDATES)
        check_number("hard_negatives", self.hard_negatives, minimum=0)
        check_number("prefixes_per_user", self.prefixes_per_user, minimum=1)
        check_number("min_history", self.min_history, minimum=1)
        if self.hard_negatives > self.num_candidates - 1:
            raise ValueError("hard_negatives must leave room for the target")
        check_number("shift", self.shift, minimum=1)
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if not 0 <= self.reason_fraction <= 1:
            raise ValueError("reason_fraction must be in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExampleConfig:
        reject_unknown(cls, raw, "example")
        return cls(**raw)


@dataclass(frozen=True)
class RankRow:
    """One listwise ranking example: the prompt, its candidates' labels in the prompt's order and
    the target's position among them (the loss is the cross-entropy over ``labels``)."""

    text: str
    labels: tuple[str, ...]
    #: Index of the target's label in ``labels``.
    target: int
    #: Each label's candidate's place (1-based) in the list handed over: the retriever's order
    #: when there is a retriever, what a residual ranker adds its prior to.
    ranks: tuple[int, ...]
    #: Residual training: each label's prior logit, ``w * z(rank)`` (None: a plain ranker).
    prior: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        if n < 2:
            raise ValueError(f"a rank row needs at least 2 labels, got {list(self.labels)}")
        if not 0 <= self.target < n:
            raise ValueError(
                f"target must index labels (0..{n - 1}), got {self.target}: pass the target "
                "label's position, not the label"
            )
        if len(self.ranks) != n:
            raise ValueError(f"ranks must give one rank per label ({n}), got {len(self.ranks)}")
        if self.prior is not None and len(self.prior) != n:
            raise ValueError(f"prior must give one value per label ({n}), got {len(self.prior)}")

    def with_prior(self, prior: Sequence[float]) -> RankRow:
        """This row with each label's prior logit (residual training)."""
        return replace(self, prior=tuple(float(p) for p in prior))


@dataclass(frozen=True)
class ReasonRow:
    """One reason example: the prompt and the answer the causal-LM loss is computed on."""

    text: str
    answer: str

    def __post_init__(self) -> None:
        if not self.answer:
            raise ValueError("a reason row needs a non-empty answer (the text the loss reads)")


#: A training example, as :func:`build_examples` makes it and the collator reads it.
TrainingRow = RankRow | ReasonRow


def training_cases(train: Sequence[UserSequence], config: ExampleConfig) -> list[EvalCase]:
    """(prefix -> next item) cases from training sequences: the longest prefix of every user and
    ``prefixes_per_user - 1`` more sampled uniformly (seeded per user)."""
    cases = []
    for seq in train:
        n = len(seq)
        if n <= config.min_history:
            continue
        cuts = list(range(config.min_history, n))  # history = seq[:cut], target = seq[cut]
        chosen = {cuts[-1]}
        rest = cuts[:-1]
        if rest and config.prefixes_per_user > 1:
            rng = np.random.default_rng(stable_seed(config.seed, "prefix", seq.user_id))
            take = min(len(rest), config.prefixes_per_user - 1)
            chosen.update(int(c) for c in rng.choice(rest, size=take, replace=False))
        for cut in sorted(chosen):
            cases.append(EvalCase(seq.user_id, seq.head(cut), seq.item_ids[cut]))
    if config.max_examples is not None and len(cases) > config.max_examples:
        rng = np.random.default_rng(stable_seed(config.seed, "subsample"))
        keep = np.sort(rng.choice(len(cases), size=config.max_examples, replace=False))
        cases = [cases[i] for i in keep]
    return cases


def shifted_cases(
    train: Sequence[UserSequence],
    valid: Sequence[EvalCase],
    config: ExampleConfig,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> tuple[list[UserSequence], list[EvalCase]]:
    """The ``shifted`` source: (training sequences cut ``shift`` items short, cases).

    A retriever fitted on the cut sequences has never seen any case's target, so the ranks it
    gives them are as honest as at test time. Users in ``exclude`` (held out for early stopping)
    keep their whole sequence and give no case.
    """
    valid_by_user = {c.user_id: c for c in valid}
    cut_train: list[UserSequence] = []
    cases: list[EvalCase] = []
    for seq in train:
        n = len(seq)
        if seq.user_id in exclude:
            cut_train.append(seq)
            continue
        start = max(config.min_history, n - config.shift)
        if start < n:
            cut_train.append(seq.head(start))
        else:
            cut_train.append(seq)
        for cut in range(start, n):
            cases.append(EvalCase(seq.user_id, seq.head(cut), seq.item_ids[cut]))
        if seq.user_id in valid_by_user and n >= config.min_history:
            cases.append(valid_by_user[seq.user_id])
    return cut_train, cases


def candidate_lists(
    cases: Sequence[EvalCase],
    catalog: Catalog,
    retriever: Recommender | None,
    config: ExampleConfig,
    batch_size: int = 256,
    progress: bool = True,
) -> list[list[str] | None]:
    """Candidate item ids per case: the target, ``hard_negatives`` of the retriever's best other
    items and uniform random ones, in the retriever's order (target first without a retriever);
    ``None`` for a case that ``require_retrieved`` drops."""
    n_items = len(catalog)
    out: list[list[str]] = []
    bar = tqdm(total=len(cases), desc="candidates", unit="case", disable=not progress)
    for start in range(0, len(cases), batch_size):
        batch = cases[start : start + batch_size]
        scores = None
        if retriever is not None and config.hard_negatives:
            scores = np.asarray(retriever.score([c.history for c in batch]), dtype=np.float64)
        for row, case in enumerate(batch):
            blocked = {catalog.index(i) for i in case.history.item_ids if i in catalog}
            target = catalog.index(case.target)
            blocked.add(target)
            chosen: list[int] = []
            if scores is not None:
                order = np.argsort(-scores[row], kind="stable")
                for j in order[: config.hard_negatives + len(blocked) + 1]:
                    j = int(j)
                    if j not in blocked and np.isfinite(scores[row, j]):
                        chosen.append(j)
                        if len(chosen) == config.hard_negatives:
                            break
            rng = np.random.default_rng(
                stable_seed(config.seed, "neg", case.user_id, len(case.history))
            )
            taken = blocked | set(chosen)
            want = min(config.num_candidates - 1, n_items - len(blocked))
            while len(chosen) < want:
                j = int(rng.integers(0, n_items))
                if j not in taken:
                    taken.add(j)
                    chosen.append(j)
            if config.require_retrieved:
                if scores is None:
                    raise ValueError("require_retrieved needs a retriever")
                top = np.argsort(
                    -np.where(np.isfinite(scores[row]), scores[row], -np.inf), kind="stable"
                )
                allowed = [int(j) for j in top if int(j) not in blocked or int(j) == target]
                if target not in allowed[: config.num_candidates]:
                    out.append(None)
                    continue
            items = [target, *chosen]
            if scores is not None:
                # the retriever's order, so that retrieval evidence in the prompt (its rank) is
                # what the retriever says, never the position of the target in this list
                items.sort(key=lambda j, s=scores[row]: -s[j] if np.isfinite(s[j]) else np.inf)
            out.append([catalog.ids[j] for j in items])
        bar.update(len(batch))
    bar.close()
    return out


def build_examples(
    cases: Sequence[EvalCase],
    candidates: Sequence[Sequence[str]],
    builder: PromptBuilder,
    config: ExampleConfig,
    reasons: Any | None = None,
    progress: bool = True,
) -> list[TrainingRow]:
    """Render cases into training rows: a :class:`RankRow` per case, followed by a
    :class:`ReasonRow` for a ``reason_fraction`` of them."""
    rows: list[TrainingRow] = []
    rng = np.random.default_rng(stable_seed(config.seed, "reasons"))
    for case, cands in tqdm(
        list(zip(cases, candidates, strict=True)), desc="prompts", unit="case", disable=not progress
    ):
        salt = ("train", len(case.history))
        prompt = builder.listwise(case.history, list(cands), target=case.target, salt=salt)
        order = {item: k for k, item in enumerate(cands)}
        rows.append(
            RankRow(
                text=prompt.text,
                labels=tuple(prompt.labels),
                target=prompt.labels.index(prompt.target_label),
                ranks=tuple(order[i] + 1 for i in prompt.item_ids),
            )
        )
        if reasons is not None and config.reason_fraction and rng.random() < config.reason_fraction:
            facts = reasons.facts(case.history, case.target)
            reason = reasons.silver(case.history, case.target, facts)
            rp = builder.reason(case.history, case.target, [f.text for f in facts], reason)
            rows.append(ReasonRow(text=rp.text, answer=rp.answer))
    return rows
