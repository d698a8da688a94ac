"""Fixtures of the evaluation tests: the tiny hand-made dataset of ``tests/evaluation/fakes.py``."""

from __future__ import annotations

import pytest

from llmrec.data import RecDataset

from .fakes import make_dataset


@pytest.fixture
def tiny() -> RecDataset:
    # user a: 0 1 2 3 4 (target 4, valid 3); user b: 5 6 7 (target 7); user c: 9 8 7 6 (target 6)
    return make_dataset(
        {"a": ["0", "1", "2", "3", "4"], "b": ["5", "6", "7"], "c": ["9", "8", "7", "6"]}
    )
