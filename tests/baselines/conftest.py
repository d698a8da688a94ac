"""Shared fixtures for the baseline tests: a tiny catalogue and sequence builders."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import pytest

from llmrec.data.catalog import Catalog
from llmrec.data.records import UserSequence


def build_catalog(n: int, prefix: str = "") -> Catalog:
    """A catalogue of ``n`` items with ids ``prefix + "0" .. prefix + str(n - 1)``."""
    return Catalog(
        pd.DataFrame(
            {
                "item_id": [f"{prefix}{i}" for i in range(n)],
                "title": [f"item {i}" for i in range(n)],
                "year": [None] * n,
                "categories": [[] for _ in range(n)],
                "description": [None] * n,
            }
        )
    )


def build_sequence(user_id: str, items: Sequence[int | str]) -> UserSequence:
    """A user's sequence of the given item ids (ints are turned into strings)."""
    ids = tuple(str(i) for i in items)
    return UserSequence(user_id, ids, tuple(float(t) for t in range(len(ids))))


@pytest.fixture
def make_catalog() -> Callable[..., Catalog]:
    return build_catalog


@pytest.fixture
def seq() -> Callable[[str, Sequence[int | str]], UserSequence]:
    return build_sequence
