"""Typed records passed between stages: items, users, interactions, behaviour sequences and the
retrieved candidates (with each retrieval view's evidence) that ranking and prompts take.

Bulk data lives in columnar tables (see :mod:`llmrec.data.dataset`); these records are what one
row looks like when a stage hands it on. None of them needs torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Item:
    """One catalogue item and its text views."""

    item_id: str
    title: str
    year: int | None = None
    categories: tuple[str, ...] = ()
    description: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class User:
    """One user and the profile fields the data has for them (age, gender, ...)."""

    user_id: str
    profile: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Interaction:
    """One logged behaviour: a user did something with an item at a time."""

    user_id: str
    item_id: str
    timestamp: float
    rating: float | None = None
    behavior: str | None = None
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UserSequence:
    """A user's behaviour in time order (oldest first), with the views the data has.

    ``ratings`` and ``behaviors`` are ``None`` when the data has no such column; otherwise they are
    aligned with ``item_ids``, as is each value list in ``context`` (context column name ->
    values, ``None`` where missing: device, session, ...).
    """

    user_id: str
    item_ids: tuple[str, ...]
    timestamps: tuple[float, ...]
    ratings: tuple[float, ...] | None = None
    behaviors: tuple[str, ...] | None = None
    context: Mapping[str, tuple[str | None, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        views = {name: getattr(self, name) for name in ("timestamps", "ratings", "behaviors")}
        views.update({f"context[{k!r}]": v for k, v in self.context.items()})
        for name, values in views.items():
            if values is not None and len(values) != n:
                raise ValueError(
                    f"UserSequence {self.user_id!r}: {name} has {len(values)} entries but "
                    f"item_ids has {n}; every view must be aligned with item_ids"
                )

    def __len__(self) -> int:
        return len(self.item_ids)

    def head(self, n: int) -> UserSequence:
        """The first ``n`` behaviours (``n`` may be negative, as in slicing)."""
        return self._slice(slice(None, n))

    def tail(self, max_len: int) -> UserSequence:
        """The most recent ``max_len`` behaviours."""
        if max_len <= 0:
            raise ValueError(f"max_len must be positive, got {max_len}")
        return self._slice(slice(max(0, len(self) - max_len), None))

    def _slice(self, part: slice) -> UserSequence:
        return UserSequence(
            user_id=self.user_id,
            item_ids=self.item_ids[part],
            timestamps=self.timestamps[part],
            ratings=None if self.ratings is None else self.ratings[part],
            behaviors=None if self.behaviors is None else self.behaviors[part],
            context={k: v[part] for k, v in self.context.items()},
        )


@dataclass(frozen=True)
class EvalCase:
    """One evaluation question: given ``history``, which item comes next? (``target``)."""

    user_id: str
    history: UserSequence
    target: str


@dataclass(frozen=True)
class ViewEvidence:
    """What one retrieval view said about a candidate: its raw score and its 0-based rank there."""

    score: float
    rank: int


@dataclass(frozen=True)
class Candidate:
    """A retrieved item: the fused score and the evidence of every view that proposed it.

    ``views`` maps a view name ("text", "sasrec", "pop", ...) to its evidence; views that did not
    rank the item within their own top list are absent. Later stages use this for prompts
    (retrieval evidence), reasons and features.
    """

    item_id: str
    score: float
    views: Mapping[str, ViewEvidence] = field(default_factory=dict)
