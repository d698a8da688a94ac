"""Fixtures of the LLM-stage tests: one torch thread, ``seq``. The tiny model, its tokenizer and
the movie catalogue are fixtures of ``tests/conftest.py`` (the serving tests use them too)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from llmrec.data.records import UserSequence

from .fakes import make_sequence


# --------------------------------------------------------------------------- tiny model
@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():  # noqa: ANN202
    """One torch thread while the tests of this folder run (restored after them): the tiny
    model's ops are far too small to gain from threads, and on a busy machine OpenMP workers
    waiting for a core made these tests 5-10x slower on 2 cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def seq() -> Callable[..., UserSequence]:
    return make_sequence
