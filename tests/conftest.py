"""Fixtures shared by the LLM-stage and serving tests: the tiny offline Llama (built once per
session by ``tests/llm/fakes.py``), its tokenizer, the movie catalogue and a small dataset."""

from __future__ import annotations

import pytest

from llmrec.data import Catalog, RecDataset

from .llm.fakes import build_tiny_llm, make_catalog, make_dataset, movie_items


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder of the tiny Llama + tokenizer, built once per session."""
    return str(build_tiny_llm(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="session")
def tiny_llm(tiny_llm_dir: str):  # noqa: ANN201
    """The tiny model loaded once, for read-only use (scoring). Never attach adapters to it."""
    from llmrec.models.loader import load_model

    return load_model(tiny_llm_dir, device="cpu", dtype="float32")


@pytest.fixture
def fresh_llm(tiny_llm_dir: str):  # noqa: ANN201
    """A freshly loaded tiny model (peft modifies the model it wraps in place)."""
    from llmrec.models.loader import load_model

    return load_model(tiny_llm_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tokenizer(tiny_llm):  # noqa: ANN001, ANN201
    return tiny_llm.tokenizer


@pytest.fixture(scope="session")
def movies() -> Catalog:
    return make_catalog(movie_items())


@pytest.fixture(scope="session")
def tiny_dataset() -> RecDataset:
    return make_dataset()
