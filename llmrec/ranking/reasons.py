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
from typing import Any

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.records import UserSequence
from llmrec.ranking.wish import CATEGORY_WORDS
from llmrec.sparse import ItemMatrix

#: A rating at or above this is "liked": only such history items are cited as a reason to like
#: (on a 1-5 scale; a history without ratings counts every item as chosen, hence liked).
LIKED_RATING = 4.0
#: A rating at or below this is "disliked": such an item is never cited as a reason to like.
DISLIKED_RATING = 2.0


@dataclass(frozen=True)
class Fact:
    """One statement that the data makes true of this user and item.

    ``kind``: ``item`` (the item's categories), ``genre`` (a category the item shares with the
    recent history, ``category``), ``similar`` (a liked history item ``item_id`` rated
    ``rating``, tied to the item by ``evidence``: ``cooc``, ``text`` or ``genre``), ``year``.
    """

    text: str
    kind: str
    item_id: str | None = None
    rating: float | None = None
    category: str | None = None
    evidence: str | None = None


_ARTICLE_LAST = re.compile(
    r"^(?P<head>.+), (?P<article>the|a|an|les|la|le|il|el|das|der|die)$", re.IGNORECASE
)


def display_title(catalog: Catalog, item_id: str) -> str:
    """The title as a sentence writes it, with its year: "The Usual Suspects (1995)" for the
    catalogue's "Usual Suspects, The"."""
    item = catalog.item(item_id)
    match = _ARTICLE_LAST.match(item.title)
    title = f"{match['article']} {match['head']}" if match else item.title
    return f"{title} ({item.year})" if item.year is not None else title


def _joined(words: Sequence[str]) -> str:
    return " and ".join(words)


class ReasonFacts:
    """Facts and silver reasons for (history, item) pairs of one catalogue.

    The history item a reason points at is always one the user liked (rated at least
    ``liked``, :data:`LIKED_RATING`), chosen by the strongest evidence the retrieval views
    have: co-occurrence in other users' sequences (``cooccurrence``, the cooc view's item x
    item matrix), else text similarity (``item_embeddings``, the text view's), else shared
    categories.
    """

    def __init__(
        self,
        catalog: Catalog,
        item_embeddings: np.ndarray | None = None,
        recent: int = 20,
        cooccurrence: ItemMatrix | None = None,
        liked: float = LIKED_RATING,
    ) -> None:
        self.catalog = catalog
        self.embeddings = item_embeddings
        self.recent = recent
        self.cooccurrence = cooccurrence
        self.liked = liked

    @classmethod
    def from_retriever(cls, catalog: Catalog, retriever: Any) -> ReasonFacts:
        """Facts with the evidence of the retriever's views: the text view's item embeddings
        and the cooc view's matrix, where the retriever has them."""
        views = getattr(retriever, "views", {})
        embeddings = getattr(views.get("text"), "item_embeddings", None)
        matrix = getattr(views.get("cooc"), "matrix", None)
        return cls(
            catalog,
            None if embeddings is None else np.asarray(embeddings),
            cooccurrence=matrix if isinstance(matrix, ItemMatrix) else None,
        )

    def _rating(self, history: UserSequence, item_id: str) -> float | None:
        return history_rating(history, item_id)

    def liked_items(self, history: UserSequence, exclude: str | None = None) -> list[str]:
        """Recent history items the user liked (all of them when the data has no ratings)."""
        out = []
        for i in history.item_ids[-self.recent :]:
            if i not in self.catalog or i == exclude:
                continue
            rating = self._rating(history, i)
            if history.ratings is None or (rating is not None and rating >= self.liked):
                out.append(i)
        return out

    def _cooc(self, a: str, b: str) -> float:
        matrix = self.cooccurrence
        assert matrix is not None
        row = self.catalog.index(a)
        col = self.catalog.index(b)
        lo, hi = int(matrix.indptr[row]), int(matrix.indptr[row + 1])
        k = lo + int(np.searchsorted(matrix.indices[lo:hi], col))
        return float(matrix.data[k]) if k < hi and matrix.indices[k] == col else 0.0

    def similar(self, history: UserSequence, item_id: str) -> tuple[str, str] | None:
        """The liked history item most tied to ``item_id`` and the evidence (``cooc``, ``text``
        or ``genre``); ties go to the most recent."""
        liked = self.liked_items(history, exclude=item_id)
        if not liked:
            return None
        if self.cooccurrence is not None:
            values = [self._cooc(i, item_id) for i in liked]
            best = max(range(len(liked)), key=lambda k: (values[k], k))
            if values[best] > 0:
                return liked[best], "cooc"
        if self.embeddings is not None:
            target = self.embeddings[self.catalog.index(item_id)]
            sims = self.embeddings[self.catalog.indices(liked)] @ target
            return liked[int(np.argmax(sims))], "text"
        genres = set(self.catalog.item(item_id).categories)

        def overlap(i: str) -> float:
            other = set(self.catalog.item(i).categories)
            return len(genres & other) / max(1, len(genres | other))

        best_item = max(reversed(liked), key=overlap)  # ties: the most recent
        return (best_item, "genre") if genres and overlap(best_item) > 0 else None

    def most_similar(self, history: UserSequence, item_id: str) -> str | None:
        found = self.similar(history, item_id)
        return None if found is None else found[0]

    def facts(self, history: UserSequence, item_id: str, max_genres: int = 2) -> list[Fact]:
        item = self.catalog.item(item_id)
        title = display_title(self.catalog, item_id)
        out: list[Fact] = []
        if item.categories:
            out.append(Fact(f"{title} is listed as {_joined(item.categories)}", "item", item_id))
        recent = [i for i in history.item_ids[-self.recent :] if i in self.catalog]
        counts = Counter(g for i in recent for g in self.catalog.item(i).categories)
        shared = sorted(
            (g for g in item.categories if counts.get(g)), key=lambda g: (-counts[g], g)
        )[:max_genres]
        for genre in shared:
            text = f"{counts[genre]} of your last {len(recent)} items are {genre}"
            out.append(Fact(text, "genre", category=genre))
        similar = self.similar(history, item_id)
        if similar is not None:
            out.append(self._similar_fact(history, item_id, *similar))
        if item.year is not None:
            out.append(Fact(f"it is from {item.year}", "year", item_id))
        return out

    def _similar_fact(self, history: UserSequence, item_id: str, other: str, how: str) -> Fact:
        rating = self._rating(history, other)
        named = display_title(self.catalog, other)
        rated = "" if rating is None else f", which you rated {rating:g}"
        if how == "cooc":
            text = f"people who chose {named}{rated}{',' if rated else ''} often chose it too"
        elif how == "text":
            text = f"its description is close to that of {named}{rated}"
        else:
            theirs = set(self.catalog.item(other).categories)
            both = [g for g in self.catalog.item(item_id).categories if g in theirs]
            text = f"it is {_joined(both)} like {named}{rated}"
        return Fact(text, "similar", other, rating, evidence=how)

    def silver(
        self, history: UserSequence, item_id: str, facts: Sequence[Fact] | None = None
    ) -> str:
        facts = self.facts(history, item_id) if facts is None else list(facts)
        title = display_title(self.catalog, item_id)
        similar = next((f for f in facts if f.kind == "similar"), None)
        genres = [f.category for f in facts if f.kind == "genre" and f.category]
        if similar is not None and genres:
            return f"{title} is {_a(genres[0])} {_joined(genres)} pick, and {similar.text}."
        if similar is not None:
            return f"{title}: {similar.text}."
        if genres:
            return f"{title} matches the {_joined(genres)} items you often choose."
        return f"{title} is often chosen by people whose history resembles yours."


def history_rating(history: UserSequence, item_id: str) -> float | None:
    """The user's latest rating of ``item_id`` (None: not rated, or no ratings in the data)."""
    if history.ratings is None:
        return None
    for i in range(len(history) - 1, -1, -1):
        if history.item_ids[i] == item_id:
            value = history.ratings[i]
            return None if value is None or np.isnan(value) else float(value)
    return None


def _a(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


# --------------------------------------------------------------------------- grounding
_QUOTED = re.compile(r"[\"“”‘’]([^\"“”‘’]{2,80})[\"“”‘’]")
_WITH_YEAR = re.compile(r"([A-Z0-9][\w'&.,:!?\- ]{1,80}?)\s*\((\d{4})\)")
_BRACKET_YEAR = re.compile(r"\s*\(\d{4}\)")
_WORD = re.compile(r"[A-Za-z0-9][\w'\-]*|[.!?;:]")
_JOINERS = {"of", "the", "and", "a", "an", "in", "on", "to", "for", "with", "&"}


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w ]", " ", text.lower()).split())


class Grounder:
    """Checks that a reason may be shown: it names only the recommended item and the user's
    history items, and every factual claim it makes holds (:class:`ClaimChecker`)."""

    def __init__(
        self,
        catalog: Catalog,
        extra_words: Sequence[str] = (),
        liked: float = LIKED_RATING,
    ) -> None:
        self.catalog = catalog
        self.claims = ClaimChecker(catalog, liked, extra_words=extra_words)
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

    def title_problems(self, text: str, history: UserSequence, item_id: str) -> list[str]:
        """Spans of ``text`` that name something other than the item or the history items."""
        allowed = self._allowed(history, item_id)
        quoted = [m.group(1) for m in _QUOTED.finditer(text)]
        spans = [(q, "quoted") for q in quoted]
        spans += [(m.group(1), "year") for m in _WITH_YEAR.finditer(text)]
        # a year in brackets belongs to the title before it (checked above), not to a run
        spans += [(s, "run") for s in _capitalised_runs(_BRACKET_YEAR.sub(" ", text))]
        norm_text = f" {_norm(text)} "
        spans += [(t, "title") for t in self.multiword_titles if f" {t} " in norm_text]
        found = {s for s, kind in spans if not self._refers_to_allowed(s, allowed, kind)}
        # a quote of small words only ('the "The" in Bound') names nothing
        found |= {q for q in quoted if not set(_norm(q).split()) - _JOINERS}
        return sorted(found)

    def findings(self, text: str, history: UserSequence, item_id: str) -> list[Claim]:
        """Everything that keeps ``text`` from being shown: titles outside the history and the
        item, then every false or unverifiable claim (:class:`ClaimChecker`)."""
        titles = [
            Claim(ClaimKind.TITLE, span, False, "not the item or a history item")
            for span in self.title_problems(text, history, item_id)
        ]
        return titles + self.claims.false_claims(text, history, item_id)

    def problems(self, text: str, history: UserSequence, item_id: str) -> list[str]:
        """:meth:`findings` as readable lines."""
        return [str(c) for c in self.findings(text, history, item_id)]

    def check(self, text: str, history: UserSequence, item_id: str) -> bool:
        return bool(text.strip()) and not self.findings(text, history, item_id)

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


# --------------------------------------------------------------------------- claims
#: The words a reason may use besides titles, category and era words, years and numbers (each of
#: those is checked on its own): the words facts are told in, and the words that join them. Any
#: other word is a claim the data cannot verify ("a brilliant plot", "an Oscar-winning cast", "a
#: favourite among gamers"), unless the item's own description or attributes use it. A list of
#: what may be said, rather than of what may not, so that a new kind of invention is caught too.
REASON_WORDS: frozenset[str] = frozenset(
    """
    a an the and or but so as of in on at to for with by from than then too also both either not
    no nor very more most much many some any all each every other another one ones this that
    these those it its is are was were be been being has have had having do does did will would
    can could may might should must if because since while which who whom whose what when where
    why how there here just only even still same such own
    you your yours yourself user users they them their he she his her him people person others
    someone anyone everyone who viewers
    like likes liked liking love loves loved enjoy enjoys enjoyed enjoying enjoyable appreciate
    appreciates appreciated adore adored prefer prefers preferred fan fans fond favorite favourite
    favorites favourites taste tastes interest interests
    choose chooses chose chosen choosing pick picks picked picking choice choices option watch
    watches watched watching saw seen see try trying give gave given rate rates rated rating
    ratings star stars out score high highly well
    often usually frequently typically commonly together along
    similar similarly alike same share shares shared sharing common match matches matching
    genre genres category categories kind type sort mix blend combination combines combining
    element elements blend
    film films movie movies item items title titles pick
    release released releases came come comes year years era decade decades old older new newer
    last recent recently latest past history list
    recommend recommended recommendation suggest suggested suggestion next worth fit fits fitting
    good great fun perfect nice solid strong
    likely probably might especially particularly mostly mainly unlike after before listed
    resembles resemble whose description close
    """.split()
)

#: A sentence in the first person speaks for a recommender that has no taste of its own ("I just
#: love Fargo"): nothing in the data can make it true.
_FIRST_PERSON = re.compile(r"\b(?:I|I'm|I've|I'd|[Mm]e|[Mm]y|[Mm]ine|[Mm]yself)\b")

#: Era words: "old" holds for an item at least :data:`CLASSIC_AGE` years older than the
#: catalogue's newest, "new" for one at most :data:`RECENT_AGE` years older.
ERA_WORDS: dict[str, str] = {
    "classic": "old",
    "vintage": "old",
    "golden age": "old",
    "old-school": "old",
    "recent release": "new",
    "recent film": "new",
    "recent movie": "new",
    "new release": "new",
    "latest release": "new",
}
CLASSIC_AGE = 20
RECENT_AGE = 2

DECADE_WORDS = {
    "twenties": 2, "thirties": 3, "forties": 4, "fifties": 5, "sixties": 6, "seventies": 7,
    "eighties": 8, "nineties": 9,
}  # fmt: skip


class ClaimKind(str, Enum):
    """What a checked claim is about."""

    TITLE = "title"  # names something outside the history and the item (the grounding check)
    CATEGORY = "category"  # "a comedy", "this horror film", "your love of westerns"
    YEAR = "year"  # "from 1995", "a 90s film", "a classic"
    RATING = "rating"  # "you rated Heat 4", "which you rated highly"
    HISTORY = "history"  # "you loved Toy Story", any history item cited as a reason
    UNVERIFIABLE = "unverifiable"  # awards, plot, cast, critics: nothing in the data says so

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Claim:
    """One factual claim a sentence makes, and whether the data holds it."""

    kind: ClaimKind
    span: str
    holds: bool
    #: What the data says (for a false claim: why it is false).
    note: str = ""
    #: The history item (or the item) the claim is about, when it names one.
    item_id: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.span!r}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Mention:
    """A title of the item or of a history item, found in a sentence at ``[start, end)``."""

    start: int
    end: int
    item_id: str
    #: The year in brackets right after the title, if the sentence gives one.
    year: int | None


_NUMBER = re.compile(r"(?<![\w\x00])\d+(?:[.,]\d+)?")
_WORD_TOKEN = re.compile(r"(?<![\w'’\x00])[A-Za-z][A-Za-z'’\-]*")
_CONTRACTION = re.compile(r"['’](?:s|ll|ve|re|d|t)$|['’]$")
_CLAUSE_END = re.compile(r"[,;:.!?()]|\b(?:but|while|whereas|although|though)\b")
_POSITIVE = re.compile(
    r"\byou(?:'ve|'re|\s+have|\s+had|\s+are|\s+really|\s+also|\s+clearly|\s+seem\s+to)*\s+"
    r"(?:liked?|loved?|enjoy(?:ed)?|ador(?:e|ed)|appreciated?|into|a\s+fan\s+of)\b"
    r"|\b(?:liked|loved|enjoyed|adored|favou?rites?|fans?\s+of|fond\s+of|rated\s+highly)\b"
)
_PAST_POSITIVE = re.compile(
    r"\b(?:you|the\s+user|user|they|he|she)(?:'ve|\s+have|\s+has|\s+had)?\s+"
    r"(?:really\s+|also\s+|already\s+)?"
    r"(?:liked|loved|enjoyed|adored|watched|saw|seen|rated|chose|picked|likes|loves|enjoys"
    r"|adores|watches)(?:\s+the)?(?:\s+(?:movie|film|item|game|show|series|book))?\s*$"
)
#: "the user liked it": the recommended item, which the user has not had.
_LIKED_IT = re.compile(
    r"\b(?:you|the\s+user|user|they)\s+(?:really\s+|already\s+)?"
    r"(?:liked|loved|enjoyed|adored|watched|saw|likes|loves|enjoys|adores)\s+"
    r"(?:it|this|(?:the|this)\s+(?:movie|film|item))\b(?!\s*\x00)",
    re.IGNORECASE,
)
#: "similar to X", "X-like": X must share a category with the item.
_SIMILAR = re.compile(r"\b(?:similar|alike|resembl\w*|reminiscent|same\s+kind)\b[^,;.!?]*$")
_NEGATIVE = re.compile(
    r"\b(?:unlike|dislike[sd]?|hated?|(?:didn't|did\s+not|don't|do\s+not)\s+(?:like|enjoy|love)"
    r"|not\s+a\s+fan\s+of)\b"
)
_AFTER_POSITIVE = re.compile(
    r"^\s*,?\s*(?:which|that)\s+you\s+(?:really\s+|also\s+)?(?:liked|loved|enjoyed|adored)\b"
)
#: "you like", "your", "you have always enjoyed" ... right before a category or era word: a claim
#: about the user's taste (checked against the history), not about the item.
_TASTE = re.compile(
    r"(?:\byour\b|\byou(?:'ve|\s+have|\s+had|'d)?\s+(?:\w+\s+){0,2}?"
    r"(?:like|love|enjoy|prefer|liked|loved|enjoyed|preferred|watch|watched|choose|chose|pick"
    r"|picked|rate|rated|seek|appreciate|appreciated|fancy|are\s+into|are\s+a\s+fan\s+of))"
    r"(?:\s+(?!this\b|that\b|it\b|which\b|its\b)[\w'-]+){0,4}\s*$"
)
_RATING_NUMBER = re.compile(
    r"\b(?:rat(?:ed|ing|es?)|gave|give|scored?)\b[^\d.!?;]{0,60}?(?P<a>\d+(?:\.\d+)?)"
    r"(?:\s*(?:out\s+of|/)\s*(?P<scale_a>\d+))?"
    r"|(?P<b>\d+(?:\.\d+)?)\s*(?:out\s+of|/)\s*(?P<scale>\d+)"
    r"|(?P<c>\d+(?:\.\d+)?)\s+stars?\b",
    re.IGNORECASE,
)
_RATING_HIGH = re.compile(
    r"\brated\b[^.!?;\d]{0,60}?\b(?:highly|high|well)\b|\bhighly[\s-]rated\b|\btop[\s-]rated\b"
    r"|\b(?:gave|give)\b[^.!?;\d]{0,40}?\b(?:high|top)\s+(?:rating|marks|score)s?\b",
    re.IGNORECASE,
)
_DECADE = re.compile(
    r"(?<![\w'’])(?:['’]?(?P<two>\d0)s|(?P<four>1[89]\d0|20\d0)['’]?s|(?P<word>"
    + "|".join(DECADE_WORDS)
    + r"))\b",
    re.IGNORECASE,
)
_COUNT = re.compile(
    r"\b(\d+)\s+(?:out\s+)?of\s+(?:your|the)\s+(?:last|recent|past|latest)\s+(\d+)\b",
    re.IGNORECASE,
)
_YEAR_ANY = re.compile(r"(?<!\d)(1[89]\d\d|20\d\d)(?![\d'’s])")


def _phrase_pattern(phrase: str) -> str:
    """A regex for ``phrase`` and its plural, words joined by spaces or hyphens."""
    words = re.split(r"[\s\-]+", phrase.lower())
    last = words[-1]
    if last.endswith("y") and len(last) > 2 and last[-2] not in "aeiou":
        words[-1] = re.escape(last[:-1]) + "(?:y|ies)"
    elif last.endswith("s"):
        words[-1] = re.escape(last) + "(?:es)?"
    else:
        words[-1] = re.escape(last) + "(?:s|es)?"
    body = r"[\s\-]*".join([*(re.escape(w) for w in words[:-1]), words[-1]])
    # a hyphen joins words, it does not hide them: "action-adventure" claims both
    return rf"(?<!\w){body}(?!\w)"


def _category_phrases(names: set[str]) -> dict[str, frozenset[str]]:
    """Phrase -> the catalogue categories it can mean: the names themselves (also without
    hyphens and apostrophes: "sci fi", "childrens"), and the entries of
    :data:`llmrec.ranking.wish.CATEGORY_WORDS`, the words a wish reads the same way."""
    by_lower = {n.lower(): n for n in names}
    out: dict[str, set[str]] = {}
    for name in names:
        low = name.lower()
        for variant in {low, low.replace("'", ""), low.replace("'s", ""), low.replace("-", " ")}:
            variant = variant.strip()
            if len(variant) > 2:
                out.setdefault(variant, set()).add(name)
        if low.replace("-", "") != low:
            out.setdefault(low.replace("-", ""), set()).add(name)
    for word, meant in CATEGORY_WORDS.items():
        known = {by_lower[m.lower()] for m in meant if m.lower() in by_lower}
        if known:
            out.setdefault(word, set()).update(known)
    return {k: frozenset(v) for k, v in out.items()}


class ClaimChecker:
    """Finds the factual claims of a reason sentence and checks each against the data.

    - category: a category word (the catalogue's names, :data:`CATEGORY_WORDS`) next to a
      history title in one clause holds when that item has it; said of the user's taste ("you
      love westerns"), when a liked history item has it; otherwise when the item has it.
    - year: a year in brackets after a title is that title's year; another year or a decade
      ("the 90s") is the item's (or that of the history title in the same clause); "classic"
      needs an item :data:`CLASSIC_AGE` years older than the catalogue's newest.
    - rating: "you rated X 4", "4 stars", "rated highly" belong to the nearest title before
      them (else after); it must be a history item whose rating is that number (or liked, for
      "highly"); on the ratings' own scale.
    - history: a history item named with "you liked/loved/enjoyed ..." must be liked
      (:data:`LIKED_RATING`); one rated <= :data:`DISLIKED_RATING` may only be named as a
      contrast ("unlike X"); the recommended item was never watched ("you loved <item>").
    - unverifiable: any word outside :data:`REASON_WORDS` (plot, cast, awards, critics,
      "a favourite among gamers"), unless the item's description or attributes use it;
      anything said in the first person.

    Titles are taken out of the sentence before the words are read: "Star Wars" makes no war
    claim, "Toy Story" no story claim.
    """

    def __init__(
        self,
        catalog: Catalog,
        liked: float = LIKED_RATING,
        disliked: float = DISLIKED_RATING,
        recent: int = 20,
        extra_words: Sequence[str] = (),
    ) -> None:
        self.catalog = catalog
        self.words = REASON_WORDS | {w for phrase in extra_words for w in phrase.lower().split()}
        self.recent = recent
        self.liked = liked
        self.disliked = disliked
        names = {g for item in catalog for g in item.categories if g.lower() != "unknown"}
        phrases = _category_phrases(names)
        self._categories = [
            (re.compile(_phrase_pattern(p), re.IGNORECASE), meant)
            for p, meant in sorted(phrases.items(), key=lambda kv: -len(kv[0]))
        ]
        self._eras = [
            (w, era, re.compile(_phrase_pattern(w), re.IGNORECASE)) for w, era in ERA_WORDS.items()
        ]
        years = [item.year for item in catalog if item.year is not None]
        self.newest = max(years) if years else None

    # ------------------------------------------------------------------ entry points
    def claims(self, text: str, history: UserSequence, item_id: str) -> list[Claim]:
        """Every claim of ``text`` with whether it holds (titles are the grounder's part)."""
        mentions = self.mentions(text, history, item_id)
        masked = _mask(text, mentions)
        ctx = _Context(text, masked, mentions, history, item_id)
        return [
            *self._history_claims(ctx),
            *self._rating_claims(ctx),
            *self._year_claims(ctx),
            *self._category_claims(ctx),
            *self._unverifiable_claims(ctx),
        ]

    def false_claims(self, text: str, history: UserSequence, item_id: str) -> list[Claim]:
        return [c for c in self.claims(text, history, item_id) if not c.holds]

    def mentions(self, text: str, history: UserSequence, item_id: str) -> list[Mention]:
        """Where ``text`` names the item or a history item (longest names first, no overlap)."""
        ids = list(dict.fromkeys([item_id, *[i for i in history.item_ids if i in self.catalog]]))
        found: list[Mention] = []
        for i in ids:
            for name in _title_variants(self.catalog.item(i).title):
                flags = re.IGNORECASE if " " in name.strip() else 0
                pattern = rf"(?<!\w){re.escape(name)}(?!\w)(?:\s*\((\d{{4}})\))?"
                for m in re.finditer(pattern, text, flags):
                    year = int(m.group(1)) if m.group(1) else None
                    found.append(Mention(m.start(), m.end(), i, year))
        found.sort(key=lambda m: (m.start, -(m.end - m.start), m.item_id != item_id))
        out: list[Mention] = []
        for m in found:
            if not out or m.start >= out[-1].end:
                out.append(m)
        return out

    # ------------------------------------------------------------------ claim kinds
    def _history_claims(self, ctx: _Context) -> list[Claim]:
        out = [
            Claim(ClaimKind.HISTORY, m.group(0), False, "the user has not had this item")
            for m in _LIKED_IT.finditer(ctx.masked)
        ]
        for m in ctx.mentions:
            span = ctx.text[m.start : m.end]
            before = ctx.masked_lower[ctx.clause_start(m.start) : m.start]
            after = ctx.masked_lower[m.end : m.end + 40]
            if m.item_id == ctx.item_id:
                if _PAST_POSITIVE.search(before):
                    note = "the user has not had this item"
                    out.append(Claim(ClaimKind.HISTORY, span, False, note, m.item_id))
                continue
            rating = history_rating(ctx.history, m.item_id)
            negative = bool(_NEGATIVE.search(before))
            positive = not negative and bool(
                _POSITIVE.search(before) or _AFTER_POSITIVE.search(after)
            )
            if _SIMILAR.search(before):
                theirs = set(self.catalog.item(m.item_id).categories)
                shared = theirs & set(self.catalog.item(ctx.item_id).categories)
                note = f"shares {_joined(sorted(shared))}" if shared else "shares no category"
                out.append(Claim(ClaimKind.HISTORY, span, bool(shared), note, m.item_id))
            if rating is None:
                if positive:
                    out.append(Claim(ClaimKind.HISTORY, span, True, "in the history", m.item_id))
                continue
            if negative:
                holds = rating <= self.disliked
                out.append(Claim(ClaimKind.HISTORY, span, holds, f"rated {rating:g}", m.item_id))
            elif rating <= self.disliked:
                note = f"rated {rating:g}: not a reason to like"
                out.append(Claim(ClaimKind.HISTORY, span, False, note, m.item_id))
            elif positive:
                holds = rating >= self.liked
                out.append(Claim(ClaimKind.HISTORY, span, holds, f"rated {rating:g}", m.item_id))
        return out

    def _rating_claims(self, ctx: _Context) -> list[Claim]:
        out = []
        ratings = [float(r) for r in ctx.history.ratings or () if r is not None and r == r]
        scale = max([5.0, *ratings])
        for match in _RATING_NUMBER.finditer(ctx.masked):
            value = float(match.group("a") or match.group("b") or match.group("c"))
            stated_scale = match.group("scale") or match.group("scale_a")
            span = ctx.text[match.start() : match.end()].strip()
            number_at = match.start("a") if match.group("a") else match.start()
            target = ctx.owner(number_at)
            actual = None if target is None else history_rating(ctx.history, target)
            if stated_scale is not None and float(stated_scale) != scale:
                out.append(Claim(ClaimKind.RATING, span, False, f"ratings are out of {scale:g}"))
            elif target is None or target == ctx.item_id or actual is None:
                out.append(Claim(ClaimKind.RATING, span, False, "no rating of a named item"))
            else:
                holds = value == actual
                out.append(Claim(ClaimKind.RATING, span, holds, f"rated {actual:g}", target))
        for match in _RATING_HIGH.finditer(ctx.masked):
            span = ctx.text[match.start() : match.end()].strip()
            target = ctx.owner(match.start())
            actual = None if target is None else history_rating(ctx.history, target)
            if target is None or target == ctx.item_id or actual is None:
                out.append(Claim(ClaimKind.RATING, span, False, "no rating of a named item"))
            else:
                holds = actual >= self.liked
                out.append(Claim(ClaimKind.RATING, span, holds, f"rated {actual:g}", target))
        return out

    def _year_claims(self, ctx: _Context) -> list[Claim]:
        out = []
        for m in ctx.mentions:
            if m.year is not None:
                actual = self.catalog.item(m.item_id).year
                span = ctx.text[m.start : m.end]
                out.append(Claim(ClaimKind.YEAR, span, actual == m.year, f"is from {actual}"))
        masked = ctx.masked
        for match in _DECADE.finditer(masked):
            decade = self._decade(match)
            span = match.group(0)
            years = self._years_about(ctx, match.start())
            holds = any(y is not None and decade <= y < decade + 10 for y in years)
            out.append(Claim(ClaimKind.YEAR, span, holds, f"from {_years(years)}"))
        masked = _DECADE.sub(lambda m: " " * len(m.group(0)), masked)
        for match in _YEAR_ANY.finditer(masked):
            years = self._years_about(ctx, match.start())
            holds = int(match.group(1)) in years
            out.append(Claim(ClaimKind.YEAR, match.group(1), holds, f"from {_years(years)}"))
        for word, era, pattern in self._eras:
            for match in pattern.finditer(ctx.masked):
                years = self._years_about(ctx, match.start())
                holds = any(self._in_era(y, era) for y in years)
                out.append(Claim(ClaimKind.YEAR, word, holds, f"from {_years(years)}"))
        return out

    def _category_claims(self, ctx: _Context) -> list[Claim]:
        out = []
        taken: list[tuple[int, int]] = []
        item_cats = set(self.catalog.item(ctx.item_id).categories)
        for pattern, meant in self._categories:
            for match in pattern.finditer(ctx.masked):
                if any(s < match.end() and match.start() < e for s, e in taken):
                    continue
                taken.append((match.start(), match.end()))
                span = match.group(0)
                # "The African Queen is a classic comedy": about the history title it follows
                owner = ctx.owner(match.start(), clause_only=True, within=30)
                if (owner is None or owner == ctx.item_id) and meant & item_cats:
                    out.append(Claim(ClaimKind.CATEGORY, span, True, "the item's"))
                    continue
                if owner is not None and owner != ctx.item_id:
                    theirs = self.catalog.item(owner)
                    holds = bool(meant & set(theirs.categories))
                    note = f"{theirs.title} is {_joined(theirs.categories)}"
                elif ctx.about_taste(match.start()):
                    liked = self._liked(ctx.history)
                    holds = any(meant & set(self.catalog.item(i).categories) for i in liked)
                    note = "none of the liked history items" if not holds else "liked history"
                else:
                    holds, note = False, f"the item is {_joined(sorted(item_cats)) or 'none'}"
                out.append(Claim(ClaimKind.CATEGORY, span, holds, note))
        return out + self._count_claims(ctx, item_cats)

    def _count_claims(self, ctx: _Context, item_cats: set[str]) -> list[Claim]:
        """ "4 of your last 7 items are Thriller": the recent history must hold that count of a
        category named in the clause (or of one of the item's)."""
        recent = [i for i in ctx.history.item_ids[-self.recent :] if i in self.catalog]
        counts = Counter(g for i in recent for g in self.catalog.item(i).categories)
        out = []
        for match in _COUNT.finditer(ctx.masked):
            count, total = int(match.group(1)), int(match.group(2))
            rest = ctx.masked[match.end() : ctx.clause_end(match.end())]
            named = {c for found, meant in self._categories if found.search(rest) for c in meant}
            holds = total == len(recent) and any(counts[g] == count for g in named or item_cats)
            note = f"{len(recent)} recent items: " + ", ".join(
                f"{counts[g]} {g}" for g in sorted(named or item_cats)
            )
            out.append(Claim(ClaimKind.CATEGORY, match.group(0), holds, note))
        return out

    def _unverifiable_claims(self, ctx: _Context) -> list[Claim]:
        """First-person words, and every word outside :data:`REASON_WORDS` (once titles,
        category and era words, years and numbers are taken out) and the item's own text."""
        item = self.catalog.item(ctx.item_id)
        known = " ".join([item.description or "", *map(str, item.attributes.values())]).lower()
        out = [
            Claim(ClaimKind.UNVERIFIABLE, m.group(0), False, "the first person")
            for m in _FIRST_PERSON.finditer(ctx.masked)
        ]
        rest = ctx.masked
        patterns = [p for p, _ in self._categories] + [p for _, _, p in self._eras]
        checked = [_RATING_NUMBER, _RATING_HIGH, _DECADE, _COUNT, _YEAR_ANY]
        for pattern in [*patterns, *checked]:
            rest = pattern.sub(lambda m: " " * len(m.group(0)), rest)
        out += [
            Claim(ClaimKind.UNVERIFIABLE, m.group(0), False, "no fact gives this number")
            for m in _NUMBER.finditer(rest)
        ]
        for match in _WORD_TOKEN.finditer(rest):
            word = match.group(0)
            for part in re.split(r"[\-]", _CONTRACTION.sub("", word.lower())):
                if part and part not in self.words and part not in known:
                    note = "no fact says so"
                    out.append(Claim(ClaimKind.UNVERIFIABLE, word, False, note))
                    break
        return out

    # ------------------------------------------------------------------ helpers
    def _liked(self, history: UserSequence) -> list[str]:
        return [
            i
            for i in history.item_ids
            if i in self.catalog
            and (history.ratings is None or (history_rating(history, i) or 0) >= self.liked)
        ]

    def _years_about(self, ctx: _Context, at: int) -> set[int | None]:
        """The years a year or era word at ``at`` may be about: the history title in its
        clause, the liked history's when it speaks of the user's taste, else the item's."""
        owner = ctx.owner(at, clause_only=True)
        if owner is not None:
            return {self.catalog.item(owner).year}
        if ctx.about_taste(at):
            return {self.catalog.item(i).year for i in self._liked(ctx.history)}
        return {self.catalog.item(ctx.item_id).year}

    def _decade(self, match: re.Match[str]) -> int:
        if match.group("four"):
            return int(match.group("four"))
        digit = int(match.group("two")) // 10 if match.group("two") else None
        if digit is None:
            digit = DECADE_WORDS[match.group("word").lower()]
        newest = self.newest or 1999
        return 2000 + 10 * digit if 2000 + 10 * digit <= newest else 1900 + 10 * digit

    def _in_era(self, year: int | None, era: str) -> bool:
        if year is None or self.newest is None:
            return False
        age = self.newest - year
        return age >= CLASSIC_AGE if era == "old" else age <= RECENT_AGE


@dataclass
class _Context:
    """A sentence being checked: its text, the text with titles blanked out, its mentions."""

    text: str
    masked: str
    mentions: list[Mention]
    history: UserSequence
    item_id: str

    def __post_init__(self) -> None:
        self.masked_lower = self.masked.lower()
        self.bounds = [m.start() for m in _CLAUSE_END.finditer(self.masked_lower)]

    def clause_start(self, at: int) -> int:
        starts = [b + 1 for b in self.bounds if b < at]
        return max(starts, default=0)

    def clause_end(self, at: int) -> int:
        return min((b for b in self.bounds if b >= at), default=len(self.text))

    def owner(self, at: int, clause_only: bool = False, within: int | None = None) -> str | None:
        """The item a claim at ``at`` speaks of: the nearest title before it in its clause,
        else (unless ``clause_only``) the nearest before it in the sentence, else after it."""
        lo, hi = self.clause_start(at), self.clause_end(at)
        inside = [m for m in self.mentions if lo <= m.start and m.end <= hi + 1]
        if within is not None:
            inside = [m for m in inside if min(abs(m.end - at), abs(m.start - at)) <= within]
        before = [m for m in inside if m.start <= at]
        if before:
            return before[-1].item_id
        if clause_only:
            return inside[0].item_id if inside and within is not None else None
        earlier = [m for m in self.mentions if m.start <= at]
        if earlier:
            return earlier[-1].item_id
        later = [m for m in self.mentions if m.start > at]
        return later[0].item_id if later else None

    def about_taste(self, at: int) -> bool:
        """Whether the words right before ``at`` speak of the user's taste ("you love ...")."""
        return bool(_TASTE.search(self.masked_lower[self.clause_start(at) : at]))


def _mask(text: str, mentions: Sequence[Mention]) -> str:
    """``text`` with every mention replaced by a placeholder of the same length."""
    out = list(text)
    for m in mentions:
        out[m.start : m.end] = "\x00" * (m.end - m.start)
    return "".join(out)


def _title_variants(title: str) -> list[str]:
    """Ways a sentence writes a title: as catalogued, "The X" for "X, The", and without a
    bracketed alternative name ("Seven" for "Seven (Se7en)")."""
    variants = [title]
    core = re.sub(r"\s*\([^)]*\)\s*$", "", title).strip()
    if core and core != title:
        variants.append(core)
    for name in list(variants):
        if ", " in name:
            head, _, article = name.rpartition(", ")
            if len(article.split()) == 1:
                variants.append(f"{article} {head}")
                variants.append(head)
    return [v for v in dict.fromkeys(variants) if len(v) >= 2]


def _years(years: set[int | None]) -> str:
    known = sorted(y for y in years if y is not None)
    return ", ".join(map(str, known)) or "an unknown year"


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
