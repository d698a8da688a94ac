"""Reading a conversation: which catalogue items the user mentions, and what else they ask for.

"I loved Toy Story and Fargo, something darker?" -> mentions Toy Story (1995) and Fargo (1996)
(each with the text it was matched from), wish "something darker". Titles are found as runs of
words equal to a catalogue title after normalisation (case, punctuation, a trailing year and a
moved article ignored); a title of one word must be written capitalised and not be a common word,
so "I like heat" mentions nothing while "I liked Heat" does. Quoted text ("...") is matched
fuzzily as well. What remains of the last message, minus the mentions and filler, is the wish.

Nothing here follows instructions found in the text: it only looks titles up in the catalogue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from llmrec.data.catalog import Catalog
from llmrec.data.titles import TitleIndex, TitleMatch, normalise_title

_WORD = re.compile(r"[\w']+", re.UNICODE)
_QUOTED = re.compile(r"[\"“”«»]([^\"“”«»]{2,120})[\"“”«»]")
_MAX_TITLE_WORDS = 10
#: Words that alone never count as a title mention, even when a catalogue title equals them.
COMMON = frozenset(
    """a about after again all also an and any anything are as at be because before best better
    big but by can could dark darker day do does else enjoyed every favorite favourite film films
    for from fun funny get give go good great had happy has have he hello help her here hey hi his
    how
    i if in into is it its just kids last late less like liked love loved lovely make man maybe me
    men mine more most movie movies much my need new next night no not now of ok okay old on once
    one or other our out please recommend recommendation recommendations said same saw scary see
    she show similar so some something still such suggest than thank thanks that the their them then
    there these they thing things think this those time to too up us very want was watch watched
    way we well what when where which while who why will with woman women would yes yet you your
    """.split()
)
#: Words about who is asking ("my son loved ...") that say nothing about the items wanted.
_PEOPLE = frozenset(
    "son sons daughter daughters wife husband partner friend friends boy girl mom mum dad "
    "brother sister children child grandson granddaughter".split()
)
_FILLER = COMMON | _PEOPLE | {"i'd", "i'm", "i've", "also", "really", "something", "anything"}
#: Common words that still describe a wish ("something darker", "funny").
_DESCRIBING = frozenset("dark darker funny scary fun happy sad old new kids family".split())
_KEEP_IN_WISH = _DESCRIBING | {"something", "anything", "similar", "like"}


@dataclass(frozen=True)
class Mention:
    text: str  # as the user wrote it
    item_id: str
    title: str
    score: float
    start: int
    end: int


def _keys(title: str) -> list[str]:
    key = normalise_title(title)
    out = [key] if key else []
    for article in ("the ", "a ", "an "):
        if key.startswith(article) and len(key) > len(article) + 2:
            out.append(key[len(article) :])
    return out


class MentionFinder:
    def __init__(self, catalog: Catalog, fuzzy_cutoff: float = 0.8) -> None:
        self.catalog = catalog
        self.titles = TitleIndex(catalog, cutoff=fuzzy_cutoff)
        self._by_key: dict[str, str] = {}
        for item in catalog:
            for key in _keys(item.title):
                self._by_key.setdefault(key, item.item_id)

    def find(self, text: str) -> tuple[list[Mention], list[str]]:
        """(mentions in order of appearance, quoted texts that matched nothing)."""
        mentions: list[Mention] = []
        taken: list[tuple[int, int]] = []
        unmatched: list[str] = []
        for quoted in _QUOTED.finditer(text):
            match = self.titles.match(quoted.group(1))
            if match is None:
                unmatched.append(quoted.group(1).strip())
                continue
            mentions.append(self._mention(quoted.group(1), match, *quoted.span()))
            taken.append(quoted.span())
        words = [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(text)]
        i = 0
        while i < len(words):
            found = None
            for n in range(min(_MAX_TITLE_WORDS, len(words) - i), 0, -1):
                start, end = words[i][1], words[i + n - 1][2]
                if any(s < end and start < e for s, e in taken):
                    continue
                key = normalise_title(" ".join(w for w, _, _ in words[i : i + n]))
                item_id = self._by_key.get(key)
                if item_id is None:
                    continue
                if n == 1 and not self._single_word_ok(words[i][0]):
                    continue
                found = (n, item_id, start, end)
                break
            if found is None:
                i += 1
                continue
            n, item_id, start, end = found
            title = self.catalog.item(item_id).title
            written = text[start:end].strip("'")
            mentions.append(Mention(written, item_id, title, 1.0, start, end))
            taken.append((start, end))
            i += n
        mentions.extend(self._fuzzy_runs(text, words, taken))
        mentions.sort(key=lambda m: m.start)
        return mentions, unmatched

    def _fuzzy_runs(
        self, text: str, words: list[tuple[str, int, int]], taken: list[tuple[int, int]]
    ) -> list[Mention]:
        """Misspelt titles: runs of two or more capitalised words ("Toy Stroy", "Pulp Fictoin")
        outside the exact matches, matched fuzzily (similarity >= the finder's cutoff)."""
        found: list[Mention] = []
        run: list[tuple[str, int, int]] = []

        def flush() -> None:
            # a run may start with a capitalised word that is no title ("I", "Loved")
            while len(run) >= 2 and run[0][0].lower() in COMMON - {"the", "a", "an"}:
                run.pop(0)
            if len(run) >= 2:
                start, end = run[0][1], run[-1][2]
                match = self.titles.match(text[start:end])
                if match is not None and match.score < 1.0:
                    found.append(self._mention(text[start:end], match, start, end))
            run.clear()

        for word, start, end in words:
            free = not any(s < end and start < e for s, e in taken)
            if free and word[:1].isupper() and len(run) < _MAX_TITLE_WORDS:
                run.append((word, start, end))
            else:
                flush()
        flush()
        return found

    @staticmethod
    def _single_word_ok(word: str) -> bool:
        return word[:1].isupper() and len(word) >= 3 and word.lower() not in COMMON

    def _mention(self, text: str, match: TitleMatch, start: int, end: int) -> Mention:
        return Mention(text.strip(), match.item_id, match.title, match.score, start, end)


def without_mentions(text: str, mentions: list[Mention]) -> str:
    """``text`` with every mention replaced by a line break (a clause boundary)."""
    pieces, last = [], 0
    for m in sorted(mentions, key=lambda m: m.start):
        pieces.append(text[last : m.start])
        pieces.append("\n")
        last = max(last, m.end)
    pieces.append(text[last:])
    return "".join(pieces)


def wish_clauses(text: str) -> str | None:
    """The clauses of ``text`` that hold more than filler, words kept as written, so that
    negations and years survive; ``None`` when no clause is left."""
    from llmrec.ranking.wish import FILLER

    kept = []
    for clause in re.split(r"[\n,;.!?]+", text):
        words = [w.lower() for w in _WORD.findall(clause)]
        if any(w not in FILLER and w not in _PEOPLE for w in words):
            kept.append(" ".join(clause.split()))
    return ", ".join(kept)[:1000] or None


def wish_text(text: str, mentions: list[Mention]) -> str | None:
    """The message without its mentions, for the wish reader
    (:class:`llmrec.ranking.wish.WishParser`): "I loved Fargo, but nothing violent" ->
    "but nothing violent" (:func:`wish_clauses` of :func:`without_mentions`)."""
    return wish_clauses(without_mentions(text, mentions))


def wish(text: str, mentions: list[Mention]) -> str | None:
    """What the message asks for once the mentioned titles are taken out ("something darker"),
    or ``None`` when nothing but filler is left."""
    pieces, last = [], 0
    for m in sorted(mentions, key=lambda m: m.start):
        pieces.append(text[last : m.start])
        pieces.append(" , ")
        last = max(last, m.end)
    pieces.append(text[last:])
    rest = "".join(pieces)
    # the clause after the last mention is usually the wish; keep content words from everything
    words = _WORD.findall(rest)
    content = [w for w in words if w.lower() not in _FILLER or w.lower() in _KEEP_IN_WISH]
    if not any(w.lower() not in _FILLER or w.lower() in _DESCRIBING for w in content):
        return None
    # drop leading filler ("and", "but") but keep the words in their order
    while content and content[0].lower() in _FILLER and content[0].lower() not in _KEEP_IN_WISH:
        content.pop(0)
    phrase = " ".join(content)[:300]
    return phrase or None


# --------------------------------------------------------------------------- refinement
#: A numbered line of a reply: "2. Fargo (1996) [Crime, Drama]" (render_reply's list).
_LISTED = re.compile(
    r"^\s*\d{1,2}\.\s+(?P<title>.+?)(?:\s+\((?P<year>\d{4})\))?(?:\s+\[[^\]]*\])?\s*$"
)
_ORDINALS = {"first": 0, "second": 1, "third": 2, "fourth": 3, "fifth": 4, "1st": 0, "2nd": 1,
             "3rd": 2, "4th": 3, "5th": 4}  # fmt: skip
_WHICH = (
    r"(?:the\s+)?(?:#|number\s+)?"
    r"(?P<which>first|second|third|fourth|fifth|1st|2nd|3rd|4th|5th|last|\d)"
)
_ELSE = re.compile(
    r"\b(?:else|other ones?|others|different ones?|something different|another one|"
    r"more options|new ones|not these|none of (?:these|those|them))\b"
)
_NOT_ONE = re.compile(
    rf"\b(?:not|no|drop|skip|without)\s+(?:(?P<that>that|this)(?:\s+one)?|{_WHICH}(?:\s+one)?)\b"
)
_MORE_LIKE = re.compile(rf"\b(?:more\s+)?(?:like|similar to)\s+{_WHICH}(?:\s+one)?\b")
_OLDER = re.compile(r"\b(?:older|earlier|less recent)(?:\s+ones?)?\b")
_NEWER = re.compile(r"\b(?:newer|more recent|later)(?:\s+ones?)?\b")


def listed_items(text: str, titles: TitleIndex, limit: int = 50) -> list[str]:
    """Item ids of a reply's numbered list, in order. A line counts only when its title is a
    catalogue title exactly (after normalisation): anything else in the text is not read."""
    out: list[str] = []
    for line in text.splitlines():
        match = _LISTED.match(line)
        if match is None:
            continue
        found = titles.match(match["title"] + (f" ({match['year']})" if match["year"] else ""))
        if found is not None and found.score >= 1.0 and found.item_id not in out:
            out.append(found.item_id)
        if len(out) == limit:
            break
    return out


@dataclass
class Refinement:
    """How a message refines the previous answer (``shown``, its items in order): items not to
    show again, items to be more like, years relative to the shown ones, and the message's text
    with the refinement cues taken out (what is left is read as a wish)."""

    shown: list[str]
    text: str
    exclude: list[str]
    like: list[str]
    year_min: int | None = None
    year_max: int | None = None
    said: list[str] = field(default_factory=list)

    @property
    def refines(self) -> bool:
        return bool(self.exclude or self.like or self.year_min or self.year_max)


def read_refinement(text: str, shown: list[str], years: list[int]) -> Refinement:
    """Read "something else", "not that one", "not the second", "more like the first", "older",
    "newer" against the items of the previous answer (``shown``, with their ``years``)."""
    norm = re.sub(r"[ \t]+", " ", text).strip()
    lower = norm.lower()
    if len(lower) != len(norm):
        norm = lower
    out = Refinement(shown=list(shown), text=norm, exclude=[], like=[])
    spans: list[tuple[int, int]] = []

    def pick(which: str | None) -> str | None:
        if not shown:
            return None
        if which in (None, "that", "this"):
            return shown[0]
        if which == "last":
            return shown[-1]
        n = _ORDINALS.get(which, int(which) - 1 if which.isdigit() else -1)
        return shown[n] if 0 <= n < len(shown) else None

    def cut(match: re.Match[str]) -> None:
        spans.append(match.span())

    for match in _MORE_LIKE.finditer(lower):
        item = pick(match["which"])
        if item is not None:
            out.like.append(item)
            out.said.append(f'"{match.group(0)}" -> like item {shown.index(item) + 1}')
            cut(match)
    for match in _NOT_ONE.finditer(lower):
        item = pick(match["which"] or match["that"])
        if item is not None:
            out.exclude.append(item)
            out.said.append(f'"{match.group(0)}" -> not item {shown.index(item) + 1}')
            cut(match)
    if _ELSE.search(lower) or out.like:
        out.exclude = list(dict.fromkeys([*out.exclude, *shown]))
        out.said.append(f"not the {len(shown)} items shown before")
        for match in _ELSE.finditer(lower):
            cut(match)
    known = [y for y in years if y]
    for pattern, older in ((_OLDER, True), (_NEWER, False)):
        match = pattern.search(lower)
        if match is None or not known:
            continue
        if older:
            out.year_max = min(known) - 1
            out.said.append(f'"{match.group(0)}" -> up to {out.year_max}')
        else:
            out.year_min = max(known) + 1
            out.said.append(f'"{match.group(0)}" -> from {out.year_min}')
        out.exclude = list(dict.fromkeys([*out.exclude, *shown]))
        cut(match)
    kept, last = [], 0
    for start, end in sorted(spans):
        kept.append(norm[last:start])
        last = max(last, end)
    kept.append(norm[last:])
    out.text = re.sub(r"[ \t]+", " ", " ".join(kept)).strip()
    return out
