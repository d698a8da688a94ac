"""Item and history text: the sandboxed templates that the text view and the prompts share."""

from __future__ import annotations

import pytest

from llmrec.data.records import Item
from llmrec.data.render import HistoryRenderer, ItemTextRenderer
from llmrec.prompts import PromptBuilder, PromptConfig

from ..retrieval.fakes import MOVIES, make_catalog, make_sequence


def test_default_template_renders_title_year_genres() -> None:
    renderer = ItemTextRenderer()
    assert renderer.render(MOVIES[0]) == "Toy Story (1995). Genres: Animation, Children's, Comedy."


def test_default_template_uses_description_and_attributes() -> None:
    item = Item(
        "9",
        "Heat",
        1995,
        ("Action",),
        description="A cop  chases\n a thief.",
        attributes={"director": "Michael Mann", "language": "English"},
    )
    assert ItemTextRenderer().render(item) == (
        "Heat (1995). Genres: Action. A cop chases a thief. director: Michael Mann. "
        "language: English."
    )


def test_missing_fields_are_skipped() -> None:
    assert ItemTextRenderer().render(Item("9", "Untitled")) == "Untitled."
    assert ItemTextRenderer().render(Item("9", "Old", year=0)) == "Old (0)."


def test_field_text_is_never_evaluated() -> None:
    item = Item(
        "9",
        "{{ 7*7 }}",
        None,
        ("{% for x in range(3) %}x{% endfor %}",),
        description="{{ cycler.__init__.__globals__ }}",
        attributes={"{{ 1+1 }}": "{{ title }}"},
    )
    out = ItemTextRenderer().render(item)
    assert out == (
        "{{ 7*7 }}. Genres: {% for x in range(3) %}x{% endfor %}. "
        "{{ cycler.__init__.__globals__ }} {{ 1+1 }}: {{ title }}."
    )
    assert "49" not in out


def test_template_is_sandboxed_and_strict() -> None:
    with pytest.raises(ValueError, match="item template failed"):
        ItemTextRenderer("{{ title.__class__.__mro__[1].__subclasses__() }}").render(MOVIES[0])
    with pytest.raises(ValueError, match="item template failed"):
        ItemTextRenderer("{{ rating }}").render(MOVIES[0])  # undefined name
    with pytest.raises(ValueError, match="not a valid Jinja2 template"):
        ItemTextRenderer("{{ title ")


def test_custom_template_and_truncation() -> None:
    renderer = ItemTextRenderer("{{ title | upper }} [{{ categories | length }}]")
    assert renderer.render(MOVIES[0]) == "TOY STORY [3]"
    long = Item("9", "word " * 100)
    out = ItemTextRenderer(max_chars=30).render(long)
    assert len(out) <= 30 and out.endswith("…") and out.startswith("word word")


def test_history_renderer_newest_first_and_capped() -> None:
    renderer = HistoryRenderer(max_items=2)
    assert renderer.render_items(MOVIES[:3]) == (
        "Recently watched: Schindler's List (1993); Heat (1995)"
    )
    catalog = make_catalog(MOVIES)
    history = make_sequence("u", ["1", "2"])
    assert renderer.render(history, catalog) == "Recently watched: Heat (1995); Toy Story (1995)"
    # too long: the oldest entries go first
    short = HistoryRenderer(max_items=10, max_chars=45)
    assert short.render_items(MOVIES[:3]) == "Recently watched: Schindler's List (1993)"
    with pytest.raises(KeyError, match="'404'"):
        renderer.render(make_sequence("u", ["404"]), catalog)


def test_items_without_text_render_by_id() -> None:
    renderer = ItemTextRenderer()
    assert renderer.render(Item("x9", "")) == "Item x9."
    assert renderer.render(Item("x9", "", year=1999)) == "(1999)."


def test_prompts_and_the_text_view_render_a_history_entry_alike() -> None:
    catalog = make_catalog(MOVIES)
    builder = PromptBuilder(catalog, config=PromptConfig(item_max_chars=120))
    entry = HistoryRenderer().entry
    for item in MOVIES:
        assert builder.item_text(item.item_id, "history") == entry.render(item)
    assert entry.render(MOVIES[0]) == "Toy Story (1995)"
