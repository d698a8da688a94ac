"""Entry points that turn files (or a built-in dataset name) into a :class:`RecDataset`."""

from __future__ import annotations

import os
from pathlib import Path

from llmrec.data.dataset import RecDataset
from llmrec.data.readers import read_table
from llmrec.data.schema import (
    ColumnMapping,
    LoadOptions,
    build_dataset,
    normalize_interactions,
    normalize_items,
    normalize_users,
)

PathLike = str | os.PathLike[str]


def load_files(
    interactions: PathLike,
    items: PathLike | None = None,
    users: PathLike | None = None,
    *,
    name: str | None = None,
    mapping: ColumnMapping | None = None,
    options: LoadOptions | None = None,
    fmt: str | None = None,
    encoding: str = "utf-8",
) -> RecDataset:
    """Read interaction, item and user tables in any supported format and validate them together."""
    mapping = mapping or ColumnMapping()
    options = options or LoadOptions()
    inter_table = read_table(interactions, fmt, encoding=encoding)
    inter = normalize_interactions(inter_table, mapping)
    item_frame = None
    if items is not None:
        item_frame = normalize_items(read_table(items, fmt, encoding=encoding), mapping, options.report)
    user_frame = None
    if users is not None:
        user_frame = normalize_users(read_table(users, fmt, encoding=encoding), mapping, options.report)
    return build_dataset(
        name or Path(interactions).stem,
        inter,
        item_frame,
        user_frame,
        options,
        interactions_source=str(interactions),
    )


def load_builtin(name: str, cache_dir: PathLike | None = None) -> RecDataset:
    """A dataset llmrec knows how to fetch by name."""
    if name in ("ml-100k", "movielens-100k"):
        from llmrec.data.movielens import load_ml100k

        return load_ml100k(cache_dir=cache_dir)
    raise ValueError(f"unknown built-in dataset {name!r}; available: ['ml-100k']")


BUILTIN_DATASETS = ("ml-100k",)
