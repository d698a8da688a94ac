"""The claim checker: each kind of claim (category, year, rating, history item, unverifiable) is
found and checked against the data; template reasons never cite a disliked item; the reason
generator replaces a generated sentence that makes a false claim."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from llmrec.ranking.backends.base import ModelInfo
from llmrec.ranking.reasons import ClaimChecker, ClaimKind, Grounder, ReasonFacts
from llmrec.ranking.recommend import ReasonGenerator
from llmrec.sparse import ItemMatrix

from ..llm_fakes import ITEM_IDS, make_sequence

# Toy Story 5, Alien 4, Usual Suspects The 5, Blade Runner 3, Matrix The 4, Pulp Fiction 5, Heat 2
HISTORY = ["i0", "i3", "i5", "i6", "i18", "i14", "i1"]
RATINGS = [5, 4, 5, 3, 4, 5, 2]
FARGO = "i15"  # Fargo (1996): Drama, Thriller


@pytest.fixture(scope="module")
def history():  # noqa: ANN201
    return make_sequence("u1", HISTORY, ratings=RATINGS)


@pytest.fixture(scope="module")
def checker(movies) -> ClaimChecker:  # noqa: ANN001
    return ClaimChecker(movies)


def _false_kinds(checker: ClaimChecker, text: str, history, item_id: str = FARGO) -> set[str]:  # noqa: ANN001
    return {str(c.kind) for c in checker.false_claims(text, history, item_id)}


@pytest.mark.parametrize(
    ("kind", "false", "true"),
    [
        ("category", "Fargo is a great comedy.", "Fargo is a great thriller."),
        ("category", "You will enjoy this horror film.", "This dramatic film is a good pick."),
        ("category", "You love romances, so try Fargo.", "You love comedies, so try Fargo."),
        ("year", "Fargo came out in 1994.", "Fargo came out in 1996."),
        ("year", "Fargo is an 80s film.", "Fargo is a 90s film."),
        ("year", "Fargo (1995) is a pick.", "Fargo (1996) is a pick."),
        ("year", "Fargo is a classic.", "Toy Story (1995) and Fargo are both from the 90s."),
        ("rating", "You rated Pulp Fiction 4.", "You rated Pulp Fiction 5."),
        ("rating", "You gave Alien 5 stars.", "You gave Alien 4 stars."),
        ("rating", "You rated it 5 out of 10.", "You rated Toy Story 5 out of 5."),
        ("rating", "You rated Blade Runner highly.", "You rated The Usual Suspects highly."),
        ("history", "Since you loved Blade Runner, try Fargo.", "Since you loved Alien, try it."),
        ("history", "It is similar to Heat (1995).", "It is similar to Pulp Fiction (1994)."),
        ("history", "Since you enjoyed Fargo, watch it again.", "Unlike Heat, it is a Drama."),
        ("unverifiable", "Fargo has a brilliant plot.", "Fargo is a Drama and a Thriller."),
        (
            "unverifiable",
            "It is like Toy Story, but with a twist.",
            "It is from the same year as Toy Story.",
        ),
    ],
)
def test_each_claim_kind_has_a_false_and_a_true_sentence(
    checker: ClaimChecker,
    history,  # noqa: ANN001
    kind: str,
    false: str,
    true: str,
) -> None:
    assert kind in _false_kinds(checker, false, history), checker.claims(false, history, FARGO)
    assert not checker.false_claims(true, history, FARGO), checker.claims(true, history, FARGO)


def test_the_reported_falsehoods_are_caught(movies, history) -> None:  # noqa: ANN001
    checker = ClaimChecker(movies)
    schindler = "i2"  # Schindler's List (1993): Drama
    text = "The user found it to be a great example of a classic comedy."
    # "found it to be a great example of": words no fact is told in
    assert _false_kinds(checker, text, history, schindler) == {"category", "year", "unverifiable"}
    assert _false_kinds(checker, "It is similar to Heat (1995), which you rated 2.", history) == {
        "history"
    }
    grounder = Grounder(movies)
    assert not grounder.check(
        'The user might enjoy the story of the "The" in Fargo.', history, FARGO
    )
    assert not grounder.check(
        "This product is similar to Toy Story, but with a twist.", history, FARGO
    )


def test_titles_are_not_read_as_claims(movies) -> None:  # noqa: ANN001
    checker = ClaimChecker(movies)
    # Star Wars names no war, Toy Story no story; the bracketed years are the titles' own
    history = make_sequence("u", ["i25", "i0"], ratings=[5, 4])
    text = "Like Star Wars (1977) and Toy Story (1995), which you loved, Fargo (1996) is a pick."
    assert checker.false_claims(text, history, FARGO) == []
    kinds = {c.kind for c in checker.claims(text, history, FARGO)}
    assert ClaimKind.CATEGORY not in kinds and ClaimKind.UNVERIFIABLE not in kinds


def test_similar_to_a_history_item_needs_a_shared_category(checker, history) -> None:  # noqa: ANN001
    # Fargo is Drama and Thriller; Pulp Fiction shares both, Toy Story neither
    assert not checker.false_claims("It is similar to Pulp Fiction.", history, FARGO)
    assert _false_kinds(checker, "It is similar to Toy Story.", history) == {"history"}


def test_a_category_claim_next_to_a_history_title_is_about_that_title(checker, history) -> None:  # noqa: ANN001
    # Toy Story is Animation and Comedy; Fargo is neither
    assert not checker.false_claims("Toy Story is a comedy; Fargo is a thriller.", history, FARGO)
    assert _false_kinds(checker, "Alien is a comedy; Fargo is a thriller.", history) == {"category"}


def test_without_ratings_every_history_item_counts_as_chosen(movies) -> None:  # noqa: ANN001
    checker = ClaimChecker(movies)
    unrated = make_sequence("u", ["i0", "i1"])
    assert not checker.false_claims("Since you loved Heat, try Fargo.", unrated, FARGO)
    # but no rating can be quoted
    assert _false_kinds(checker, "You rated Heat 5.", unrated) == {"rating"}


def test_facts_and_silver_never_cite_a_disliked_item(movies) -> None:  # noqa: ANN001
    # every film the user liked is far from the targets; the close ones were rated 1 or 2
    history = make_sequence("u", ["i1", "i9", "i21", "i35", "i7"], ratings=[1, 2, 1, 2, 5])
    facts = ReasonFacts(movies)
    grounder = Grounder(movies)
    for item_id in ITEM_IDS:
        if item_id in history.item_ids:
            continue
        found = facts.facts(history, item_id)
        for fact in found:
            assert fact.item_id in (None, item_id, "i7"), (item_id, fact)
        silver = facts.silver(history, item_id, found)
        for low in ("Heat", "Die Hard", "Speed", "Twister"):
            assert low not in silver, silver
        assert grounder.check(silver, history, item_id), grounder.problems(silver, history, item_id)


def test_cooccurrence_evidence_picks_the_liked_item_others_chose_with_it(movies) -> None:  # noqa: ANN001
    n = len(movies)
    index = movies.index
    # Heat (rated 2) co-occurs most with Fargo, then Alien (rated 4)
    matrix = ItemMatrix.from_pairs(
        np.array([index("i1"), index("i3")]), np.array([index(FARGO), index(FARGO)]), n,
        np.array([5.0, 1.0]),
    )  # fmt: skip
    facts = ReasonFacts(movies, cooccurrence=matrix)
    history = make_sequence("u", ["i3", "i1"], ratings=[4, 2])
    similar = [f for f in facts.facts(history, FARGO) if f.kind == "similar"]
    assert [(f.item_id, f.evidence) for f in similar] == [("i3", "cooc")]
    assert similar[0].text == "people who chose Alien (1979), which you rated 4, often chose it too"
    silver = facts.silver(history, FARGO)
    assert Grounder(movies).check(silver, history, FARGO), silver


# --------------------------------------------------------------------------- the generator
@dataclass
class _Prompt:
    text: str


@dataclass
class _Builder:
    prompts: list[tuple[str, list[str]]] = field(default_factory=list)

    def reason(self, history, item_id: str, facts: Sequence[str] = ()) -> _Prompt:  # noqa: ANN001
        self.prompts.append((item_id, list(facts)))
        return _Prompt(f"why {item_id}")


class _ScriptedModel:
    """A RankModel whose generations are chosen per item (one list entry per attempt)."""

    def __init__(self, script: dict[str, list[str]]) -> None:
        self.info = ModelInfo("fake", "fake", None, None, 0.0)
        self.builder = _Builder()
        self.script = script
        self.calls: list[int | None] = []

    def score(self, prompts, progress: bool = False) -> list[np.ndarray]:  # noqa: ANN001
        raise NotImplementedError

    def generate(
        self,
        texts: Sequence[str],
        max_new_tokens: int,
        min_new_tokens: int = 0,
        sample_seed: int | None = None,
    ) -> list[str]:
        self.calls.append(sample_seed)
        attempt = len(self.calls) - 1
        return [self.script[t.removeprefix("why ")][attempt] for t in texts]


def test_the_generator_replaces_a_false_sentence_by_the_fact_built_one(movies, history) -> None:  # noqa: ANN001
    facts, grounder = ReasonFacts(movies), Grounder(movies)
    model = _ScriptedModel(
        {
            # false twice: a comedy claim, then citing Heat (rated 2) as a reason to like
            FARGO: ["Fargo is a classic comedy, like Toy Story.", "Since you loved Heat, try it."],
            # true at once
            "i9": ["Die Hard is an action film, like The Matrix, which you rated 4."],
        }
    )
    reasons = ReasonGenerator(model, facts, grounder).generate(history, [FARGO, "i9"])
    fargo, die_hard = reasons
    assert fargo.source == "template" and fargo.text == facts.silver(history, FARGO)
    assert [set(r.kinds) for r in fargo.rejected] == [{"category", "year"}, {"history"}]
    assert die_hard.source == "llm" and die_hard.text.startswith("Die Hard is an action film")
    assert len(model.calls) == 2 and model.calls[0] is None and model.calls[1] is not None
    # the prompt carries the facts, the liked similar item among them
    prompt_facts = dict(model.builder.prompts)[FARGO]
    assert "it is Drama and Thriller like Pulp Fiction (1994), which you rated 5" in prompt_facts


def test_a_true_sentence_that_cites_nothing_of_the_user_is_not_shown(movies, history) -> None:  # noqa: ANN001
    model = _ScriptedModel({FARGO: ["Fargo came out in 1996.", "Fargo is a thriller that"]})
    (reason,) = ReasonGenerator(model, ReasonFacts(movies), Grounder(movies)).generate(
        history, [FARGO]
    )
    assert reason.source == "template"
    # the second ran out of tokens before its sentence ended
    assert [r.kinds for r in reason.rejected] == [("no citation",), ("incomplete",)]


def test_first_person_and_a_leading_bullet(movies, history) -> None:  # noqa: ANN001
    from llmrec.ranking.recommend import first_sentence

    checker = ClaimChecker(movies)
    assert first_sentence("- I just love Toy Story! More text.") == "I just love Toy Story!"
    assert _false_kinds(checker, "I just love Toy Story!", history) == {"unverifiable"}
    assert _false_kinds(checker, "The user enjoyed Fargo.", history) == {"history"}


def test_a_count_of_recent_items_must_match_the_history(checker, history) -> None:  # noqa: ANN001
    # the last 7 items hold 4 Thrillers and 2 Dramas
    assert not checker.false_claims("4 of your last 7 items are Thriller.", history, FARGO)
    assert not checker.false_claims("2 of your last 7 items are dramas.", history, FARGO)
    assert _false_kinds(checker, "5 of your last 7 items are Thriller.", history) == {"category"}
    assert _false_kinds(checker, "4 of your last 10 items are thrillers.", history) == {"category"}


def test_a_text_similarity_fact_passes_the_checker(movies, history) -> None:  # noqa: ANN001
    emb = np.eye(len(movies), dtype=np.float32)
    emb[movies.index("i22")] = emb[movies.index("i3")]  # Big Lebowski "reads like" Alien
    facts = ReasonFacts(movies, item_embeddings=emb)
    silver = facts.silver(history, "i22")
    assert "Alien (1979)" in silver  # a comedy and a horror film: no shared category
    assert Grounder(movies).check(silver, history, "i22"), silver


def test_a_number_no_fact_gives_is_unverifiable(checker, history) -> None:  # noqa: ANN001
    assert _false_kinds(checker, "You chose 7 thrillers like Pulp Fiction.", history) == {
        "unverifiable"
    }
    assert not checker.false_claims("You rated Pulp Fiction 5 out of 5.", history, FARGO)


def test_hyphenated_category_words_are_each_checked(checker, history) -> None:  # noqa: ANN001
    assert not checker.false_claims("A drama-thriller like Pulp Fiction.", history, FARGO)
    assert _false_kinds(checker, "A comedy-drama like Pulp Fiction.", history) == {"category"}


def test_a_category_said_of_a_history_title_is_checked_against_it(checker, history) -> None:  # noqa: ANN001
    # Alien is Horror and Sci-Fi; the recommended Fargo is a Thriller
    assert _false_kinds(checker, "Alien is a thriller too.", history) == {"category"}
    assert not checker.false_claims("Alien is a horror film, Fargo a thriller.", history, FARGO)
