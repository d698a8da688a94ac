"""Reading conversations: title mentions (exact, quoted, misspelt) and the wish that remains."""

from __future__ import annotations

import pytest

from llmrec.serving.chat import MentionFinder, listed_items, read_refinement, wish, wish_text

from ..llm_fakes import make_catalog, movie_items


@pytest.fixture(scope="module")
def finder() -> MentionFinder:
    return MentionFinder(make_catalog(movie_items()))


def titles(finder: MentionFinder, text: str) -> list[tuple[str, str]]:
    mentions, _ = finder.find(text)
    return [(m.text, m.title) for m in mentions]


def test_exact_mentions_any_case_and_moved_articles(finder: MentionFinder) -> None:
    assert titles(finder, "I loved toy story and Fargo, something darker?") == [
        ("toy story", "Toy Story"),
        ("Fargo", "Fargo"),
    ]
    assert titles(finder, "the usual suspects and Usual Suspects") == [
        ("the usual suspects", "Usual Suspects, The"),
        ("Usual Suspects", "Usual Suspects, The"),
    ]
    # the longest title wins: "Star Wars" is not read as something shorter inside it
    assert titles(finder, "star wars (1977)") == [("star wars", "Star Wars")]


def test_one_word_titles_need_a_capital_and_no_common_word(finder: MentionFinder) -> None:
    assert titles(finder, "we watched Speed") == [("Speed", "Speed")]
    assert titles(finder, "more speed please") == []


def test_quoted_and_misspelt_titles_match_fuzzily(finder: MentionFinder) -> None:
    mentions, unmatched = finder.find('I liked "Pulp Fictoin", Toy Stroy and "Zzyzx Qqq"')
    got = {(m.text, m.title): m.score for m in mentions}
    assert set(got) == {("Pulp Fictoin", "Pulp Fiction"), ("Toy Stroy", "Toy Story")}
    assert all(0.8 <= s < 1.0 for s in got.values())  # a fuzzy match says how close it was
    assert unmatched == ["Zzyzx Qqq"]
    assert titles(finder, "Loved The Godfathr!") == [("The Godfathr", "Godfather, The")]
    assert titles(finder, "I Really Liked It") == []


def test_the_wish_is_what_remains(finder: MentionFinder) -> None:
    text = "I loved Toy Story and Fargo, something darker?"
    assert wish(text, finder.find(text)[0]) == "something darker"
    text = "Pulp Fiction and Star Wars"
    assert wish(text, finder.find(text)[0]) is None
    assert wish("recommend something funny", []) == "something funny"
    assert wish("hello, thanks", []) is None
    text = "My son loved Toy Story and Mulan"
    assert wish(text, finder.find(text)[0]) is None


def test_the_wish_text_keeps_negations_and_years(finder: MentionFinder) -> None:
    text = "I loved Toy Story and Fargo, but nothing violent from before 1970"
    assert wish_text(text, finder.find(text)[0]) == "but nothing violent from before 1970"
    text = "I loved Toy Story and Fargo, something darker?"
    assert wish_text(text, finder.find(text)[0]) == "something darker"
    assert wish_text("I liked Heat", finder.find("I liked Heat")[0]) is None


def test_listed_items_and_refinements(finder: MentionFinder) -> None:
    reply = (
        "Here are 3 recommendations:\n1. Heat (1995) [Action, Thriller]\n   Why: ...\n"
        "2. Usual Suspects, The (1995) [Thriller, Drama]\n3. Nonexistent Film (2001)\n4. Alien"
    )
    shown = listed_items(reply, finder.titles)
    assert shown == ["i1", "i5", "i3"]
    years = [1995, 1995, 1979]
    step = read_refinement("Something else, but not too scary", shown, years)
    assert step.exclude == shown and step.text.startswith("Something")
    assert "not too scary" in step.text
    assert read_refinement("not the second one", shown, years).exclude == ["i5"]
    assert read_refinement("not that one", shown, years).exclude == ["i1"]
    more = read_refinement("more like the last one please", shown, years)
    assert more.like == ["i3"] and set(more.exclude) == set(shown)
    older = read_refinement("older ones", shown, years)
    assert older.year_max == 1978 and older.text == ""
    assert read_refinement("newer", shown, years).year_min == 1996
    assert not read_refinement("a romantic comedy", shown, years).refines
    assert not read_refinement("not the 1970s", shown, years).refines
