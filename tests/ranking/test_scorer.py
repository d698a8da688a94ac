"""One-pass scoring with the tiny model, the generative fallback and answer parsing."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.data.records import Item
from llmrec.models.loader import load_tokenizer
from llmrec.prompts import PromptBuilder, PromptConfig
from llmrec.ranking.scorer import LLMScorer, parse_ranking

from ..llm_fakes import INJECTION, ITEM_IDS, make_catalog, make_sequence, movie_items

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def builder(movies, tokenizer) -> PromptBuilder:  # noqa: ANN001
    return PromptBuilder(movies, tokenizer)


@pytest.fixture(scope="module")
def prompts(builder):  # noqa: ANN001, ANN201
    """Prompts of different lengths and label counts (so batches need padding)."""
    out = []
    for u in range(6):
        history = make_sequence(f"u{u}", ITEM_IDS[u : u + 2 + 2 * u])
        out.append(builder.listwise(history, ITEM_IDS[20 : 23 + 3 * u]))
    return out


def _scorer(tiny_llm, builder, batch_size: int, tokenizer=None) -> LLMScorer:  # noqa: ANN001
    return LLMScorer(tiny_llm.model, tokenizer or tiny_llm.tokenizer, builder, batch_size)


def test_scores_are_log_probabilities_over_the_labels(tiny_llm, builder, prompts) -> None:  # noqa: ANN001
    scores = _scorer(tiny_llm, builder, 4).score(prompts)
    assert len(scores) == len(prompts)
    for prompt, s in zip(prompts, scores, strict=True):
        assert s.shape == (len(prompt.labels),) and s.dtype == np.float32
        assert np.all(s <= 0)
        assert np.exp(s.astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-5)
    assert _scorer(tiny_llm, builder, 4).score([]) == []


def test_batching_and_sorting_do_not_change_scores(tiny_llm, builder, prompts) -> None:  # noqa: ANN001
    one = _scorer(tiny_llm, builder, 1).score(prompts)
    four = _scorer(tiny_llm, builder, 4).score(prompts)
    shuffled_order = [3, 0, 5, 1, 4, 2]
    shuffled = _scorer(tiny_llm, builder, 4).score([prompts[i] for i in shuffled_order])
    for a, b in zip(one, four, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    for j, i in enumerate(shuffled_order):
        np.testing.assert_allclose(shuffled[j], one[i], atol=1e-4)
    # the scores are not all alike: the model reads the prompt
    assert not np.allclose(one[0][:3], one[1][:3], atol=1e-4)


def test_right_padding_tokenizer_gives_the_same_scores(
    tiny_llm, tiny_llm_dir, builder, prompts
) -> None:  # noqa: ANN001
    right = load_tokenizer(tiny_llm_dir)
    right.padding_side = "right"
    left = _scorer(tiny_llm, builder, 4).score(prompts)
    other = _scorer(tiny_llm, builder, 4, tokenizer=right).score(prompts)
    for a, b in zip(left, other, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_prompts_over_max_length_are_refused(tiny_llm, builder, prompts) -> None:  # noqa: ANN001
    scorer = LLMScorer(tiny_llm.model, tiny_llm.tokenizer, builder, max_length=32)
    with pytest.raises(ValueError, match="over max_length 32"):
        scorer.score(prompts[:1])


def test_injected_title_cannot_change_the_output_format(tiny_llm) -> None:  # noqa: ANN001
    catalog = make_catalog([*movie_items(), Item("evil", INJECTION, 2020, ("Drama",))])
    builder = PromptBuilder(catalog, tiny_llm.tokenizer, PromptConfig(item_max_chars=200))
    candidates = ["i2", "evil", "i4", "i5", "i6"]
    prompts = [
        builder.listwise(make_sequence(f"u{u}", ["i0", "evil", "i1"]), candidates) for u in range(3)
    ]
    scorer = LLMScorer(tiny_llm.model, tiny_llm.tokenizer, builder, batch_size=2)
    for prompt, s in zip(prompts, scorer.score(prompts), strict=True):
        assert s.shape == (5,) and np.isfinite(s).all()
        ranking = [prompt.item_ids[j] for j in np.argsort(-s, kind="stable")]
        assert sorted(ranking) == sorted(candidates)  # a permutation, nothing else
    for ranking in scorer.rank_generative(prompts[:2], max_new_tokens=6):
        assert sorted(ranking) == sorted(candidates)


# --------------------------------------------------------------------------- parse_ranking
@pytest.fixture(scope="module")
def small_prompt(movies, tokenizer):  # noqa: ANN001, ANN201
    catalog = make_catalog([*movie_items(), Item("mind", "A Beautiful Mind", 2001, ("Drama",))])
    builder = PromptBuilder(catalog, tokenizer, PromptConfig(shuffle=False))
    prompt = builder.listwise(make_sequence("u1", ["i0"]), ["i1", "i2", "i3", "mind", "i9"])
    return builder, prompt  # A Heat, B Schindler's List, C Alien, D A Beautiful Mind, E Die Hard


def test_parse_labels_in_order_and_append_the_rest(small_prompt) -> None:  # noqa: ANN001
    builder, prompt = small_prompt
    assert parse_ranking("C, A", prompt) == ["i3", "i1", "i2", "mind", "i9"]
    assert parse_ranking("(E) > (B)\nD", prompt, builder) == ["i9", "i2", "mind", "i1", "i3"]
    assert parse_ranking("C: Alien; A. Heat", prompt) == ["i3", "i1", "i2", "mind", "i9"]


def test_parse_deduplicates_and_ignores_foreign_labels(small_prompt) -> None:  # noqa: ANN001
    builder, prompt = small_prompt
    assert parse_ranking("B, B, (B), Z, Q, B", prompt, builder) == [
        "i2",
        "i1",
        "i3",
        "mind",
        "i9",
    ]
    assert parse_ranking("", prompt, builder) == list(prompt.item_ids)
    nonsense = parse_ranking("I think <|im_end|> the Matrix, X, 42", prompt, builder)
    assert nonsense == list(prompt.item_ids)


def test_parse_maps_titles_to_candidates_only(small_prompt) -> None:  # noqa: ANN001
    builder, prompt = small_prompt
    got = parse_ranking("Die Hard (1988), Alien, Toy Story (1995), heat", prompt, builder)
    assert got == ["i9", "i3", "i1", "i2", "mind"]  # Toy Story is no candidate: ignored
    # a title starting with a capital letter word is a title, not label A
    got = parse_ranking("A Beautiful Mind, C", prompt, builder)
    assert got[:2] == ["mind", "i3"]
    # without the builder, titles are not read
    assert parse_ranking("Die Hard (1988)", prompt) == list(prompt.item_ids)


def test_pointwise_preference_scores_yes_against_no(tiny_llm, tiny_dataset) -> None:  # noqa: ANN001
    from llmrec.data import leave_one_out
    from llmrec.prompts import PromptBuilder
    from llmrec.ranking.scorer import LLMScorer

    builder = PromptBuilder(tiny_dataset.catalog, tiny_llm.tokenizer)
    history = leave_one_out(tiny_dataset).valid[0].history
    items = list(tiny_dataset.catalog.ids[:5])
    prompts = [builder.pointwise(history, i) for i in items]
    assert "Answer Yes or No" in prompts[0].text
    scorer = LLMScorer(tiny_llm.model, tiny_llm.tokenizer, builder, batch_size=2)
    scores = scorer.preference(prompts)
    assert scores.shape == (5,) and np.isfinite(scores).all()
    one = LLMScorer(tiny_llm.model, tiny_llm.tokenizer, builder, batch_size=1).preference(prompts)
    np.testing.assert_allclose(scores, one, atol=1e-4)
    assert builder.pointwise(history, items[0], label=True).answer == "Yes"
