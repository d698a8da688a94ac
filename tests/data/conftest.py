"""Fixtures of the data tests; the dataset they write is described in ``tests/data/fakes.py``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .fakes import write_format


@pytest.fixture
def write_dataset(tmp_path: Path) -> Callable[[str], tuple[object, object, object]]:
    return lambda fmt: write_format(tmp_path / fmt, fmt)
