"""The record the retrieval stage hands on: a candidate item with the evidence of each view."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ViewEvidence:
    """What one view said about a candidate: its raw score and its 0-based rank in that view."""

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
