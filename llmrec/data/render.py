"""Item and history text: one sandboxed Jinja2 rendering that retrieval and prompts share.

- :func:`compile_template` compiles a template in a sandbox (strict undefined names, no
  autoescape); item text is data, so a title holding ``{{ 7*7 }}`` stays literal;
- :class:`ItemTextRenderer` turns an :class:`~llmrec.data.records.Item` into one string;
- :class:`HistoryRenderer` turns a user's recent items into one string, **newest first**, so that
  an encoder which truncates long inputs drops the oldest items rather than the newest.

The text view embeds these strings (:mod:`llmrec.retrieval.text`); the prompt builder renders its
history and candidate lines with :class:`ItemTextRenderer` (:mod:`llmrec.prompts.builder`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmrec.data.catalog import Catalog
from llmrec.data.records import Item, UserSequence
from llmrec.validation import check_number

if TYPE_CHECKING:
    from jinja2 import Template

#: Default item template: ``Toy Story (1995). Genres: Animation, Children's, Comedy.`` plus the
#: description and ``key: value.`` for each attribute, each only when present.
DEFAULT_ITEM_TEMPLATE = (
    "{{ title }}{% if year is not none %} ({{ year }}){% endif %}."
    "{% if categories %} Genres: {{ categories | join(', ') }}.{% endif %}"
    "{% if description %} {{ description }}{% endif %}"
    "{% for key, value in attributes.items() %} {{ key }}: {{ value }}.{% endfor %}"
)

#: Template of one entry in a history text: ``Toy Story (1995)``.
DEFAULT_HISTORY_ENTRY_TEMPLATE = "{{ title }}{% if year is not none %} ({{ year }}){% endif %}"


# --------------------------------------------------------------------------- rendering
def compile_template(source: str, what: str) -> Template:
    """Compile ``source`` in a sandbox: strict undefined names, no autoescape."""
    try:
        from jinja2 import StrictUndefined, TemplateSyntaxError
        from jinja2.sandbox import SandboxedEnvironment
    except ImportError as exc:  # pragma: no cover - jinja2 is a dependency of llmrec
        raise ImportError("rendering item text needs jinja2: pip install 'jinja2>=3.1'") from exc
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise ValueError(f"{what} is not a valid Jinja2 template: {exc}") from exc


def truncate_text(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, at a word boundary, ending in "…"."""
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space > max_chars // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _item_context(item: Item) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "title": item.title,
        "year": item.year,
        "categories": list(item.categories),
        "description": item.description,
        "attributes": dict(item.attributes),
    }


class ItemTextRenderer:
    """Render items to text with a Jinja2 template run in a sandbox.

    The template sees ``item_id``, ``title``, ``year`` (int or ``None``), ``categories`` (list of
    str), ``description`` (str or ``None``) and ``attributes`` (dict str -> str). Field values are
    inserted as plain text and never evaluated as template code. Runs of whitespace are collapsed
    to one space, and the result is cut to ``max_chars`` characters (at a word boundary, ending
    in "…").
    """

    def __init__(self, template: str | None = None, max_chars: int = 512) -> None:
        check_number("max_chars", max_chars, minimum=16)
        self.source = DEFAULT_ITEM_TEMPLATE if template is None else template
        self.max_chars = int(max_chars)
        self._template = compile_template(self.source, "the item template")

    def render(self, item: Item) -> str:
        """One item's text."""
        try:
            text = self._template.render(**_item_context(item))
        except Exception as exc:  # jinja2 UndefinedError, SecurityError, TypeError ...
            raise ValueError(
                f"the item template failed on item {item.item_id!r}: {exc}; the template may use "
                "item_id, title, year, categories, description and attributes"
            ) from exc
        text = " ".join(text.split())
        if not any(ch.isalnum() for ch in text):
            # No text at all: the id at least keeps items apart (they would all embed alike).
            text = f"Item {item.item_id}."
        return truncate_text(text, self.max_chars)

    def render_many(self, items: Sequence[Item]) -> list[str]:
        """The text of each item, in order."""
        return [self.render(item) for item in items]


class HistoryRenderer:
    """Render a user's most recent items as one text, newest first.

    ``"Recently watched: C (1999); B (1996); A (1995)"`` where C is the latest item. Only the
    ``max_items`` most recent items are used; when the text exceeds ``max_chars`` the oldest
    entries are dropped until it fits (each entry is itself cut to ``max_entry_chars``). Newest
    first means an encoder that truncates at its token limit loses the oldest items.
    """

    def __init__(
        self,
        prefix: str = "Recently watched: ",
        max_items: int = 20,
        max_chars: int = 1000,
        entry_template: str | None = None,
        max_entry_chars: int = 120,
        separator: str = "; ",
    ) -> None:
        check_number("max_items", max_items, minimum=1)
        check_number("max_chars", max_chars, minimum=16)
        check_number("max_entry_chars", max_entry_chars, minimum=16)
        self.prefix = prefix
        self.max_items = int(max_items)
        self.max_chars = int(max_chars)
        self.separator = separator
        self.entry = ItemTextRenderer(
            DEFAULT_HISTORY_ENTRY_TEMPLATE if entry_template is None else entry_template,
            max_chars=max_entry_chars,
        )

    def render_items(self, items: Sequence[Item]) -> str:
        """Text for ``items`` given oldest first (as in a :class:`UserSequence`)."""
        recent = list(items)[-self.max_items :]
        return self.join([self.entry.render(item) for item in recent])

    def join(self, entries: Sequence[str]) -> str:
        """Text for already rendered entries given oldest first (see :attr:`entry`)."""
        newest_first = list(entries)[-self.max_items :][::-1]
        while newest_first:
            text = self.prefix + self.separator.join(newest_first)
            if len(text) <= self.max_chars:
                return text
            newest_first.pop()  # drop the oldest remaining entry
        return self.prefix.strip()

    def render(self, history: UserSequence, catalog: Catalog) -> str:
        """Text for a history; raises ``KeyError`` naming an item missing from ``catalog``."""
        tail = history.item_ids[-self.max_items :]
        return self.render_items([catalog.item(item_id) for item_id in tail])
