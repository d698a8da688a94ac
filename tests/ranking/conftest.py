"""Fixtures of the ranking-backend tests: the tiny offline LLM and catalogue of tests/llm and the
adapter makers of tests/serving."""

from tests.serving.conftest import (  # noqa: F401  (fixtures are found by name)
    fresh_llm,
    movies,
    one_torch_thread,
    tiny_dataset,
    tiny_llm,
    tiny_llm_dir,
    tokenizer,
)
