"""Fixtures of the retrieval tests: tiny offline sentence-transformers and items (built by the
helpers in ``tests/retrieval/fakes.py``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from llmrec.data.catalog import Catalog
from llmrec.data.records import UserSequence

from .fakes import MOVIES, build_tiny_model, make_catalog, make_sequence


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a tiny random sentence-transformer (seed 0), built once per session."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-a"), seed=0))


@pytest.fixture(scope="session")
def other_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Another tiny sentence-transformer (seed 1): same shape, other weights."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-b"), seed=1))


@pytest.fixture
def movies() -> Catalog:
    return make_catalog(MOVIES)


@pytest.fixture
def seq() -> Callable[[str, Sequence[str]], UserSequence]:
    return make_sequence


@pytest.fixture(scope="session")
def minilm() -> object:
    """The packaged all-MiniLM-L6-v2, loaded once per session (a few seconds)."""
    from llmrec.retrieval.text import load_encoder

    return load_encoder(None, device="cpu")
