"""Fixtures shared by the LLM-stage and serving tests: the tiny offline Llama (built once per
session by ``tests/llm_fakes.py``), its tokenizer, the movie catalogue and a small dataset."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from llmrec.data import Catalog, RecDataset, UserSequence

from .llm_fakes import build_tiny_llm, make_catalog, make_dataset, make_sequence, movie_items


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


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module's tests (restored after them): the tiny model's ops are far
    too small to gain from threads, and on a busy machine OpenMP workers waiting for a core made
    these tests 5-10x slower on 2 cores. Modules that run the tiny model ask for it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def seq() -> Callable[..., UserSequence]:
    """Build a :class:`UserSequence` from item ids (``tests/llm_fakes.make_sequence``)."""
    return make_sequence
