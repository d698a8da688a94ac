"""Find catalogue items from the way people write titles ("the usual suspects", "Fargo (1996)")."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from llmrec.data.catalog import Catalog

_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_ARTICLE_LAST = re.compile(r"^(?P<head>.+), (?P<article>the|a|an|les|la|le|il|el|das|der|die)$")


def normalise_title(title: str) -> str:
    """Lowercase, trailing year removed, "Usual Suspects, The" -> "the usual suspects",
    punctuation dropped."""
    text = _YEAR.sub("", title.strip()).lower()
    match = _ARTICLE_LAST.match(text)
    if match:
        text = f"{match['article']} {match['head']}"
    return " ".join(re.sub(r"[^\w ]", " ", text).split())


@dataclass(frozen=True)
class TitleMatch:
    query: str
    item_id: str
    title: str
    score: float  # 1.0 exact (after normalisation), else string similarity


class TitleIndex:
    """Resolve free-text titles to catalogue items: exact after normalisation, else fuzzy."""

    def __init__(self, catalog: Catalog, cutoff: float = 0.75) -> None:
        self.catalog = catalog
        self.cutoff = cutoff
        self._by_key: dict[str, list[str]] = {}
        for item in catalog:
            self._by_key.setdefault(normalise_title(item.title), []).append(item.item_id)

    def _pick(self, ids: list[str], year: int | None) -> str:
        if year is not None:
            for i in ids:
                if self.catalog.item(i).year == year:
                    return i
        return ids[0]

    def match(self, text: str) -> TitleMatch | None:
        text = text.strip()
        if not text:
            return None
        year_match = _YEAR.search(text)
        year = int(year_match.group(1)) if year_match else None
        key = normalise_title(text)
        if not key:
            return None
        if key in self._by_key:
            item_id = self._pick(self._by_key[key], year)
            return TitleMatch(text, item_id, self.catalog.item(item_id).title, 1.0)
        close = difflib.get_close_matches(key, list(self._by_key), n=1, cutoff=self.cutoff)
        if not close:
            return None
        score = difflib.SequenceMatcher(None, key, close[0]).ratio()
        item_id = self._pick(self._by_key[close[0]], year)
        return TitleMatch(text, item_id, self.catalog.item(item_id).title, round(score, 3))
