"""Fixtures of the ranking tests. The tiny offline LLM and catalogue come from tests/conftest.py;
adapter makers from tests/serving/fakes.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module's tests: the tiny model's ops gain nothing from threads and
    OpenMP workers waiting for a busy core slow them down."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
