"""Reasons: facts from the data, silver reasons, and the grounding check."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.ranking.reasons import Grounder, ReasonFacts, display_title

from ..llm_fakes import ITEM_IDS, make_sequence

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Toy Story, Alien, Usual Suspects The, Blade Runner, Matrix The, Pulp Fiction, Heat
HISTORY = ["i0", "i3", "i5", "i6", "i18", "i14", "i1"]
RATINGS = [5, 4, 5, 3, 4, 5, 2]


@pytest.fixture(scope="module")
def history():  # noqa: ANN201
    return make_sequence("u1", HISTORY, ratings=RATINGS)


@pytest.fixture(scope="module")
def grounder(movies) -> Grounder:  # noqa: ANN001
    return Grounder(movies)


def _named_titles(movies, text: str) -> set[str]:  # noqa: ANN001
    return {i.item_id for i in movies if display_title(movies, i.item_id) in text}


def test_facts_and_silver_name_only_the_item_and_history(movies, history) -> None:  # noqa: ANN001
    facts = ReasonFacts(movies)
    for item_id in ("i15", "i12", "i25", "i17", "i9"):  # Fargo, Terminator, Star Wars, ...
        found = facts.facts(history, item_id)
        assert found, item_id
        genres = [f for f in found if f.kind == "genre"]
        similar = [f for f in found if f.kind == "similar"]
        item_genres = set(movies.item(item_id).categories)
        for fact in genres:
            assert fact.category in item_genres
            assert fact.text.endswith(fact.category) and "of your last 7 items" in fact.text
        assert len(similar) <= 1
        if similar:
            assert similar[0].item_id in HISTORY
            rating = RATINGS[HISTORY.index(similar[0].item_id)]
            assert rating >= 4 and similar[0].rating == rating  # a liked item only
            assert f"which you rated {rating}" in similar[0].text
        silver = facts.silver(history, item_id, found)
        assert silver.startswith(display_title(movies, item_id))
        assert _named_titles(movies, silver) <= {item_id, *HISTORY}


def test_silver_for_a_two_genre_match_names_both(movies, history) -> None:  # noqa: ANN001
    facts = ReasonFacts(movies)
    # Fargo (Drama, Thriller): 4 history items are Thriller, 2 Drama; Usual Suspects and Pulp
    # Fiction share both genres, and the more recent one (Pulp Fiction, rated 5) is chosen
    assert [f.text for f in facts.facts(history, "i15")] == [
        "Fargo (1996) is listed as Drama and Thriller",
        "4 of your last 7 items are Thriller",
        "2 of your last 7 items are Drama",
        "it is Drama and Thriller like Pulp Fiction (1994), which you rated 5",
        "it is from 1996",
    ]
    assert facts.silver(history, "i15") == (
        "Fargo (1996) is a Thriller and Drama pick, and it is Drama and Thriller like Pulp "
        "Fiction (1994), which you rated 5."
    )


def test_most_similar_uses_embeddings_when_given(movies, history) -> None:  # noqa: ANN001
    emb = np.eye(len(movies), dtype=np.float32)
    emb[movies.index("i22")] = emb[movies.index("i3")]  # Big Lebowski "looks like" Alien
    assert ReasonFacts(movies, item_embeddings=emb).most_similar(history, "i22") == "i3"
    no_genre_overlap = ReasonFacts(movies).most_similar(make_sequence("u", ["i2"]), "i22")
    assert no_genre_overlap is None


def test_grounder_accepts_every_silver_reason(movies, history, grounder) -> None:  # noqa: ANN001
    facts = ReasonFacts(movies)
    for item_id in ITEM_IDS:
        if item_id in HISTORY:
            continue
        silver = facts.silver(history, item_id)
        assert grounder.check(silver, history, item_id), (
            silver,
            grounder.problems(silver, history, item_id),
        )


def test_grounder_rejects_titles_outside_the_catalogue(history, grounder) -> None:  # noqa: ANN001
    # both extend a history title (The Matrix, Blade Runner) with words that make another film
    for text in (
        'You will love "The Matrix Reloaded Extended".',
        "Like Blade Runner 2049 (2017), it is dark and moody.",
        "Watch Heat Wave Returns tonight.",
        'Fans of "Casablanca 2" agree.',
    ):
        assert not grounder.check(text, history, "i15"), text
        assert grounder.problems(text, history, "i15")


def test_grounder_rejects_catalogue_items_outside_the_history(history, grounder) -> None:  # noqa: ANN001
    for text in (
        "It is as funny as Groundhog Day.",
        "Fans of Die Hard (1988) will enjoy it.",
        "Like Casablanca (1942), it is a classic.",
    ):
        assert not grounder.check(text, history, "i15"), text


def test_grounder_accepts_history_titles_in_other_spellings(history, grounder) -> None:  # noqa: ANN001
    for text in (
        "Like The Usual Suspects, it is a thriller.",
        'You rated "The Usual Suspects" highly, and Fargo is a thriller too.',
        "Fargo (1996) shares the Thriller and Drama of Pulp Fiction (1994).",
        "Like The Matrix and Blade Runner, it is a thriller.",
        "Since you enjoyed Toy Story (1995), try it.",
    ):
        assert grounder.check(text, history, "i15"), (text, grounder.problems(text, history, "i15"))
    assert not grounder.check("   ", history, "i15")


def test_grounder_extra_words_are_allowed(movies, history) -> None:  # noqa: ANN001
    text = "Rotten Tomatoes has Fargo as a thriller."
    assert not Grounder(movies).check(text, history, "i15")
    assert Grounder(movies, extra_words=["Rotten Tomatoes"]).check(text, history, "i15")


def test_cites_needs_a_history_item_or_a_shared_genre() -> None:
    from llmrec.data.records import UserSequence
    from llmrec.ranking.reasons import Grounder

    from ..llm_fakes import make_catalog, movie_items

    catalog = make_catalog(movie_items())
    by_title = {item.title: item.item_id for item in catalog}
    history = UserSequence("u", (by_title["Usual Suspects, The"],), (0.0,))
    target = by_title["Fargo"]
    grounder = Grounder(catalog)
    assert grounder.cites("Like The Usual Suspects, it is a thriller.", history, target)
    shared = set(catalog.item(target).categories) & set(
        catalog.item(by_title["Usual Suspects, The"]).categories
    )
    assert shared  # the fixture gives both films Drama and Thriller
    genre = sorted(shared)[0]
    assert grounder.cites(f"Another {genre.lower()} you may like.", history, target)
    assert not grounder.cites("Another western you may like.", history, target)
    # naming only the recommended item itself is not evidence about the user
    assert not grounder.cites("Fargo is a classic film with stunning visuals.", history, target)


def test_grounder_rejects_years_and_ratings_the_data_does_not_hold(history, grounder) -> None:  # noqa: ANN001
    # i15 is Fargo (1996); the history holds Toy Story (1995, rated 5), Heat (rated 2), ...
    for text in (
        "Toy Story was released in 2003, so you will like it.",  # no such year here
        "You rated Heat 4 out of 5.",  # the user gave Heat a 2
        "You rated Toy Story 9.",  # never a 9
        "You rated Toy Story 5 out of 10.",  # ratings here are on a 1-5 scale
    ):
        assert not grounder.check(text, history, "i15"), (
            text,
            grounder.problems(text, history, "i15"),
        )  # noqa: E501
    for text in (
        "Fargo (1996) came out a year after Toy Story (1995).",
        "You rated Toy Story 5 out of 5.",
        "You gave Pulp Fiction 5 stars, and this is a thriller too.",
    ):
        assert grounder.check(text, history, "i15"), (text, grounder.problems(text, history, "i15"))  # noqa: E501
