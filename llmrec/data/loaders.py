"""Entry points that turn files (or a built-in dataset name) into a :class:`RecDataset`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    import datasets

PathLike = str | os.PathLike[str]


def load_files(
    interactions: PathLike | datasets.Dataset,
    items: PathLike | datasets.Dataset | None = None,
    users: PathLike | datasets.Dataset | None = None,
    *,
    name: str | None = None,
    mapping: ColumnMapping | None = None,
    options: LoadOptions | None = None,
    fmt: str | None = None,
    encoding: str = "utf-8",
) -> RecDataset:
    """Read interaction, item and user tables in any supported format and validate them together.

    Each table is a file path, a ``save_to_disk`` folder, or a ``datasets.Dataset`` object.
    """
    mapping = mapping or ColumnMapping()
    # The report belongs to this dataset: options reused for another load must not collect it.
    options = options or LoadOptions()
    options = dataclasses.replace(options, report=list(options.report))
    inter_table = read_table(interactions, fmt, encoding=encoding)
    inter = normalize_interactions(inter_table, mapping)
    item_frame = None
    if items is not None:
        item_table = read_table(items, fmt, encoding=encoding)
        item_frame = normalize_items(item_table, mapping, options.report)
    user_frame = user_table = None
    if users is not None:
        user_table = read_table(users, fmt, encoding=encoding)
        user_frame = normalize_users(user_table, mapping, options.report)
    if not name:
        is_path = isinstance(interactions, (str, os.PathLike))
        name = Path(interactions).stem if is_path else "dataset"
    return build_dataset(
        name,
        inter,
        item_frame,
        user_frame,
        options,
        interactions_source=inter_table,
        users_source=user_table,
    )


def load_builtin(name: str, cache_dir: PathLike | None = None) -> RecDataset:
    """A dataset llmrec knows how to fetch by name."""
    if name in ("ml-100k", "movielens-100k"):
        from llmrec.data.movielens import load_ml100k

        return load_ml100k(cache_dir=cache_dir)
    raise ValueError(f"unknown built-in dataset {name!r}; available: ['ml-100k']")


BUILTIN_DATASETS = ("ml-100k",)


def open_dataset(spec: str) -> RecDataset:
    """A prepared dataset folder, or a built-in dataset by name (fetched and cached)."""
    path = Path(spec)
    if (path / "manifest.json").is_file():
        return RecDataset.load(path)
    if spec in BUILTIN_DATASETS:
        return load_builtin(spec)
    raise FileNotFoundError(
        f"{spec!r} is neither a prepared dataset folder nor a built-in dataset "
        f"({', '.join(BUILTIN_DATASETS)}); run `llmrec data prepare` first"
    )
