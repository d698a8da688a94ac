"""Reasons: facts true of a user and an item, template ("silver") reasons, and grounding checks.

- :class:`ReasonFacts` derives facts from the data only: genres the item shares with the user's
  history (with how many history items have them), and the history item most similar to the
  recommended one (text-view embeddings when given, else genre overlap). The silver reason joins
  them into one sentence; it is the fine-tuning target for reason generation and the fallback
  whenever a generated reason fails the check.
- :class:`Grounder` decides whether a reason may be shown: every title-like span in it (quoted
  text, ``Name (1995)`` patterns, runs of capitalised words, any multi-word catalogue title) must
  refer to the recommended item or to an item in the user's history. A reason naming anything
  else, inside or outside the catalogue, is rejected.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.records import UserSequence


@dataclass(frozen=True)
class Fact:
    text: str
    kind: str  # "genre" | "similar"
    item_id: str | None = None


def display_title(catalog: Catalog, item_id: str) -> str:
    item = catalog.item(item_id)
    return f"{item.title} ({item.year})" if item.year is not None else item.title


class ReasonFacts:
    """Facts and silver reasons for (history, item) pairs of one catalogue."""

    def __init__(
        self,
        catalog: Catalog,
        item_embeddings: np.ndarray | None = None,
        recent: int = 20,
    ) -> None:
        self.catalog = catalog
        self.embeddings = item_embeddings
        self.recent = recent

    def _rating(self, history: UserSequence, item_id: str) -> float | None:
        if history.ratings is None:
            return None
        for i in range(len(history) - 1, -1, -1):
            if history.item_ids[i] == item_id:
                value = history.ratings[i]
                return None if value is None or np.isnan(value) else float(value)
        return None

    def most_similar(self, history: UserSequence, item_id: str) -> str | None:
        recent = [i for i in history.item_ids[-self.recent :] if i in self.catalog and i != item_id]
        if not recent:
            return None
        if self.embeddings is not None:
            target = self.embeddings[self.catalog.index(item_id)]
            sims = self.embeddings[self.catalog.indices(recent)] @ target
            return recent[int(np.argmax(sims))]
        genres = set(self.catalog.item(item_id).categories)
        if not genres:
            return None

        def overlap(i: str) -> float:
            other = set(self.catalog.item(i).categories)
            return len(genres & other) / max(1, len(genres | other))

        best = max(reversed(recent), key=overlap)  # ties: the most recent
        return best if overlap(best) > 0 else None

    def facts(self, history: UserSequence, item_id: str, max_genres: int = 2) -> list[Fact]:
        item = self.catalog.item(item_id)
        out: list[Fact] = []
        counts = Counter(
            g
            for i in history.item_ids[-self.recent :]
            if i in self.catalog
            for g in self.catalog.item(i).categories
        )
        shared = sorted(
            (g for g in item.categories if counts.get(g)), key=lambda g: (-counts[g], g)
        )[:max_genres]
        n = len([i for i in history.item_ids[-self.recent :] if i in self.catalog])
        for genre in shared:
            out.append(Fact(f"{counts[genre]} of your last {n} items are {genre}", "genre"))
        similar = self.most_similar(history, item_id)
        if similar is not None:
            rating = self._rating(history, similar)
            rated = f", which you rated {rating:g}" if rating is not None else ""
            out.append(
                Fact(
                    f"it is similar to {display_title(self.catalog, similar)}{rated}",
                    "similar",
                    similar,
                )
            )
        return out

    def silver(
        self, history: UserSequence, item_id: str, facts: Sequence[Fact] | None = None
    ) -> str:
        facts = self.facts(history, item_id) if facts is None else list(facts)
        title = display_title(self.catalog, item_id)
        similar = next((f for f in facts if f.kind == "similar"), None)
        genres = [f.text.rsplit(" are ", 1)[-1] for f in facts if f.kind == "genre"]
        if similar is not None and genres:
            return f"{title} is {_a(genres[0])} {' and '.join(genres)} pick, and {similar.text}."
        if similar is not None:
            return f"{title}: {similar.text}."
        if genres:
            return f"{title} matches the {' and '.join(genres)} items you often choose."
        return f"{title} is popular with people whose history resembles yours."


def _a(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


# --------------------------------------------------------------------------- grounding
_QUOTED = re.compile(r"[\"“”‘’]([^\"“”‘’]{2,80})[\"“”‘’]")
_WITH_YEAR = re.compile(r"([A-Z0-9][\w'&.,:!?\- ]{1,80}?)\s*\((\d{4})\)")
_BRACKET_YEAR = re.compile(r"\s*\(\d{4}\)")
_WORD = re.compile(r"[A-Za-z0-9][\w'\-]*|[.!?;:]")
_JOINERS = {"of", "the", "and", "a", "an", "in", "on", "to", "for", "with", "&"}
_YEAR = re.compile(r"(?<!\d)(1[89]\d\d|20\d\d)(?!\d)")
#: "rated it 4", "rating of 4.5", "4 out of 5", "4/5", "4 stars"
_RATING = re.compile(
    r"\brat(?:ed|ing|es?)\b[^\d.!?;]{0,60}?(?P<a>\d+(?:\.\d+)?)"
    r"(?:\s*(?:out\s+of|/)\s*(?P<scale_a>\d+))?"
    r"|(?P<b>\d+(?:\.\d+)?)\s*(?:out\s+of|/)\s*(?P<scale>\d+)"
    r"|(?P<c>\d+(?:\.\d+)?)\s+stars?\b",
    re.IGNORECASE,
)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w ]", " ", text.lower()).split())


class Grounder:
    """Checks that a reason names only the recommended item and the user's history items."""

    def __init__(self, catalog: Catalog, extra_words: Sequence[str] = ()) -> None:
        self.catalog = catalog
        genres = {g for item in catalog for g in item.categories}
        self.genres = {_norm(g) for g in genres}
        self.extra = {_norm(w) for w in extra_words}
        titles: dict[str, str] = {}
        for item in catalog:
            key = _norm(item.title)
            if len(key.split()) >= 2:
                titles.setdefault(key, item.item_id)
        self.multiword_titles = titles

    def _allowed(self, history: UserSequence, item_id: str) -> list[str]:
        return self._names([item_id, *[i for i in history.item_ids if i in self.catalog]])

    def _names(self, ids: Sequence[str]) -> list[str]:
        names = []
        for i in ids:
            item = self.catalog.item(i)
            names.append(_norm(item.title))
            # "Usual Suspects, The" is also written "The Usual Suspects"
            if ", " in item.title:
                head, _, article = item.title.rpartition(", ")
                names.append(_norm(f"{article} {head}"))
        return names

    def _refers_to_allowed(self, span: str, allowed: Sequence[str], kind: str = "run") -> bool:
        """Whether ``span`` (``kind``: quoted, year, run or title) names only allowed things.

        A span may be (part of) an allowed title or close to one; otherwise, once the allowed
        titles, genres and extra words are taken out, only small joining words may be left (a
        capitalised run may also keep its first word: "Like Toy Story"). A span that precedes a
        year must end with an allowed title, since the title is what stands before the year.
        Containment is checked on whole words: "Heat" does not vouch for "Heat Wave".
        """
        span_n = _norm(span)
        if not span_n or span_n in self.genres or span_n in self.extra:
            return True
        padded = f" {span_n} "
        for name in allowed:
            if padded in f" {name} ":
                return True
            if difflib.SequenceMatcher(None, span_n, name).ratio() >= 0.85:
                return True
        if kind == "year":
            words = span_n.split()
            for name in allowed:
                tail = " ".join(words[-len(name.split()) :])
                if tail == name or difflib.SequenceMatcher(None, tail, name).ratio() >= 0.85:
                    return True
            return False
        rest = span_n
        for phrase in sorted({*allowed, *self.genres, *self.extra}, key=len, reverse=True):
            if phrase:
                rest = re.sub(rf"(?<!\S){re.escape(phrase)}(?!\S)", " ", rest)
        left = [w for w in rest.split() if w not in _JOINERS]
        if not left:
            return True
        removed = len(rest.split()) < len(span_n.split())
        return kind == "run" and removed and left == span_n.split()[:1]

    def problems(self, text: str, history: UserSequence, item_id: str) -> list[str]:
        """Spans of ``text`` that name something other than the item or the history items."""
        allowed = self._allowed(history, item_id)
        spans = [(m.group(1), "quoted") for m in _QUOTED.finditer(text)]
        spans += [(m.group(1), "year") for m in _WITH_YEAR.finditer(text)]
        # a year in brackets belongs to the title before it (checked above), not to a run
        spans += [(s, "run") for s in _capitalised_runs(_BRACKET_YEAR.sub(" ", text))]
        norm_text = f" {_norm(text)} "
        spans += [(t, "title") for t in self.multiword_titles if f" {t} " in norm_text]
        found = {s for s, kind in spans if not self._refers_to_allowed(s, allowed, kind)}
        return sorted(found | set(self._wrong_facts(text, history, item_id)))

    def _wrong_facts(self, text: str, history: UserSequence, item_id: str) -> list[str]:
        """Years and ratings the reason states that the data does not hold: a year that is no
        year of the item or a history item, a rating the user never gave, a scale wider than
        the ratings'."""
        catalog = self.catalog
        shown = [item_id, *[i for i in history.item_ids if i in catalog]]
        years = {catalog.item(i).year for i in shown if catalog.item(i).year is not None}
        wrong = [f"year {y}" for y in _YEAR.findall(text) if int(y) not in years]
        pairs = [
            (i, float(r))
            for i, r in zip(history.item_ids, history.ratings or (), strict=False)
            if i in catalog and r is not None and r == r
        ]
        ratings = [r for _, r in pairs]
        # a rating stated next to history items must be the rating of one of them
        norm = f" {_norm(text)} "
        named = [r for i, r in pairs if any(f" {n} " in norm for n in self._names([i]))]
        plausible = named or ratings
        for match in _RATING.finditer(text):
            value = float(match.group("a") or match.group("b") or match.group("c"))
            scale = match.group("scale") or match.group("scale_a")
            if value not in plausible:
                wrong.append(f"rating {match.group(0).strip()}")
            elif scale is not None and float(scale) != max(5.0, max(ratings)):
                wrong.append(f"rating scale {match.group(0).strip()}")
        return wrong

    def check(self, text: str, history: UserSequence, item_id: str) -> bool:
        return bool(text.strip()) and not self.problems(text, history, item_id)

    def cites(self, text: str, history: UserSequence, item_id: str) -> bool:
        """Whether ``text`` names a history item or a genre the item shares with the history."""
        norm = f" {_norm(text)} "
        for name in self._names([i for i in history.item_ids if i in self.catalog]):
            if name and f" {name} " in norm:
                return True
        catalog = self.catalog
        item_genres = set(catalog.item(item_id).categories)
        hist_genres = {
            g for i in history.item_ids if i in catalog for g in catalog.item(i).categories
        }
        return any(f" {_norm(g)} " in norm for g in item_genres & hist_genres)


def _capitalised_runs(text: str) -> list[str]:
    """Runs of two or more capitalised words (joined by small words), ignoring a capital that only
    starts a sentence."""
    runs, current = [], []
    sentence_start = True
    for token in _WORD.findall(text):
        if token in ".!?;:":
            if len(current) >= 2:
                runs.append(" ".join(current))
            current, sentence_start = [], True
            continue
        capital = token[0].isupper() or token[0].isdigit()
        if capital and not (sentence_start and not current):
            current.append(token)
        elif capital:  # first word of a sentence: start a run only if the next is capitalised too
            current = [token]
        elif current and token.lower() in _JOINERS:
            current.append(token)
        else:
            while current and current[-1].lower() in _JOINERS:
                current.pop()
            if len(current) >= 2:
                runs.append(" ".join(current))
            current = []
        sentence_start = False
    while current and current[-1].lower() in _JOINERS:
        current.pop()
    if len(current) >= 2:
        runs.append(" ".join(current))
    return runs


class ReasonMode(str, Enum):
    """What a recommendation's reason is: ``generate`` (written by the LLM and grounded, the
    template reason when the check fails), ``template`` (built from facts only, fast) or
    ``none``. The one list the CLI, the serve config and the pipeline accept."""

    GENERATE = "generate"
    TEMPLATE = "template"
    NONE = "none"

    def __str__(self) -> str:  # "generate", as the value is written in configs and flags
        return self.value

    @classmethod
    def values(cls) -> list[str]:
        return [m.value for m in cls]
