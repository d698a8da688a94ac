"""Sequence options: rating threshold, de-duplication, k-core filtering and maximum length.

Each step reports what it removed, in the dataset's ``report`` and in the log; nothing is dropped
without a count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

import pandas as pd

from llmrec.data.dataset import RecDataset
from llmrec.data.schema import sort_interactions

logger = logging.getLogger(__name__)


class Dedup(str, Enum):
    """What to do when a user interacts with the same item more than once."""

    NONE = "none"  # keep every interaction (repeat consumption is signal)
    FIRST = "first"  # keep the first occurrence
    LAST = "last"  # keep the most recent occurrence


@dataclass
class SequenceOptions:
    """How raw interactions become behaviour sequences. The defaults change nothing."""

    #: Keep only interactions rated at least this (implicit feedback from explicit ratings).
    min_rating: float | None = None
    #: Iteratively keep users and items with at least this many interactions.
    k_core: int | None = None
    dedup: Dedup = Dedup.NONE
    #: Keep only each user's most recent ``max_len`` interactions.
    max_len: int | None = None

    def __post_init__(self) -> None:
        self.dedup = Dedup(self.dedup)
        if self.k_core is not None and self.k_core < 1:
            raise ValueError(f"k_core must be >= 1, got {self.k_core}; use None for no filter")
        if self.max_len is not None and self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}; use None for no limit")


def apply_options(dataset: RecDataset, options: SequenceOptions) -> RecDataset:
    """A new dataset with the options applied in order: rating, dedup, k-core, max length."""
    inter = sort_interactions(dataset.interactions)
    report = list(dataset.report)

    def note(msg: str) -> None:
        logger.info(msg)
        report.append(msg)

    if options.min_rating is not None:
        if "rating" not in inter.columns:
            raise ValueError(
                "min_rating is set but the interactions have no rating column; map one "
                "(--col rating=COLUMN) or drop --min-rating"
            )
        keep = inter["rating"] >= options.min_rating
        note(f"rating >= {options.min_rating:g}: removed {int((~keep).sum())} interactions")
        inter = inter[keep]
    if options.dedup is not Dedup.NONE:
        keep = ~inter.duplicated(["user_id", "item_id"], keep=options.dedup.value)
        note(f"dedup ({options.dedup.value}): removed {int((~keep).sum())} repeated interactions")
        inter = inter[keep]
    if options.k_core is not None:
        inter = _k_core(inter, options.k_core, note)
    if options.max_len is not None:
        position_from_end = inter.groupby("user_id", sort=False).cumcount(ascending=False)
        keep = position_from_end < options.max_len
        note(f"max_len {options.max_len}: removed {int((~keep).sum())} older interactions")
        inter = inter[keep]
    inter = inter.reset_index(drop=True)
    users = dataset.users[dataset.users["user_id"].isin(pd.Index(inter["user_id"].unique()))]
    n_gone = len(dataset.users) - len(users)
    if n_gone:
        note(f"users left with no interactions after filtering: {n_gone} removed")
    return RecDataset(
        name=dataset.name,
        catalog=dataset.catalog,
        users=users.reset_index(drop=True),
        interactions=inter,
        report=report,
    )


def _k_core(inter: pd.DataFrame, k: int, note) -> pd.DataFrame:  # noqa: ANN001
    before_rows = len(inter)
    before_users = inter["user_id"].nunique()
    before_items = inter["item_id"].nunique()
    rounds = 0  # rounds that removed something
    while True:
        user_counts = inter.groupby("user_id")["item_id"].transform("size")
        item_counts = inter.groupby("item_id")["user_id"].transform("size")
        keep = (user_counts >= k) & (item_counts >= k)
        if keep.all():
            break
        rounds += 1
        inter = inter[keep]
    note(
        f"{k}-core ({rounds} rounds): removed {before_rows - len(inter)} interactions, "
        f"{before_users - inter['user_id'].nunique()} users, "
        f"{before_items - inter['item_id'].nunique()} items from the interactions "
        f"(items stay in the catalogue as cold-start items)"
    )
    return inter
