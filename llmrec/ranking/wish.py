"""Understanding a wish: free text -> hard constraints the catalogue can check + a soft query.

"something scary from the 90s, but no comedies" -> categories (Horror or Thriller), years
1990-1999, not Comedy; soft query "something scary" for the text view. "like Fargo but funnier"
-> Fargo joins the history (``like``), "funnier" is the wish.

What the parser knows comes from the catalogue, not from a fixed list of genres:

- **categories**: the catalogue's own category names (``Catalog`` items' ``categories``), their
  plurals, and the synonyms and moods of :data:`SYNONYMS` (data: "scary" -> Horror/Thriller,
  "for my kids" -> Children's/Animation, "darker" -> Thriller/Crime/Film-Noir/Horror and not
  Comedy/Children's). A synonym keeps only the targets the catalogue has; one with none is unused.
- **years**: decades ("the 90s", "early 80s", "nineties"), "before 1970", "after 1990",
  "since 1990", "between 1980 and 1990", "from 1995"; "recent" = the catalogue's newest tenth of
  items (year >= the 90th percentile), "old"/"classic" = its oldest tenth (<= the 10th).
- **exclusions**: a negation ("not", "no", "nothing", "without", "anything but", "don't want",
  "other than", ...) followed by category words: "not horror", "no comedies", "nothing violent".
- **like X**: "like X", "similar to X" where X is a catalogue title (exact after normalisation,
  :class:`llmrec.data.titles.TitleIndex`; fuzzy only when "but ..." closes it).

The catalogue's free-text attribute columns (``Item.attributes``) are not read: they are strings
without a declared type (no brand or price column says it is one), so "under $20" could not be
checked against them; a dataset with such columns needs them typed first.

Nothing in the text is followed as an instruction: words are only looked up in this vocabulary,
and everything else is either the soft query (content words) or ignored (filler).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.titles import TitleIndex

#: Words for categories, one table read both ways: a wish's word asks for an item with one of the
#: categories ("something scary" -> Horror or Thriller, :class:`WishParser`), and the same word
#: in a reason sentence claims the item has one of them ("a scary film" is true of a Thriller,
#: :class:`llmrec.ranking.reasons.ClaimChecker`). Names are catalogue category names compared
#: loosely (:func:`category_key`); names a catalogue lacks are dropped, so the table serves any
#: dataset, and each catalogue's own category names are words for themselves on both sides.
#: Words are written with spaces (a hyphen reads as a space on both sides). Moods and request
#: phrasings that say more than "has one of these categories" ("darker" also rules out comedies;
#: "for my son"), and the other forms a wish may use, are the wish's own (:data:`SYNONYMS`).
CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(["scary", "frightening", "creepy", "terrifying"], ("Horror", "Thriller")),
    **dict.fromkeys(["spooky", "slasher"], ("Horror",)),
    **dict.fromkeys(["funny", "hilarious", "humorous", "humor", "humour", "comedic"], ("Comedy",)),
    "dramatic": ("Drama",),
    **dict.fromkeys(["romantic", "love story"], ("Romance",)),
    **dict.fromkeys(["suspense", "suspenseful"], ("Thriller", "Mystery", "Film-Noir")),
    "action packed": ("Action",),
    "adventurous": ("Adventure",),
    **dict.fromkeys(["animated", "cartoon"], ("Animation",)),
    **dict.fromkeys(["kids", "family", "children"], ("Children's", "Animation")),
    "gangster": ("Crime", "Film-Noir"),
    **dict.fromkeys(["heist", "mafia", "mob"], ("Crime",)),
    "detective": ("Crime", "Mystery", "Film-Noir"),
    **dict.fromkeys(["whodunit", "mysterious"], ("Mystery",)),
    "noir": ("Film-Noir",),
    "magical": ("Fantasy",),
    **dict.fromkeys(["science fiction", "futuristic"], ("Sci-Fi",)),
    **dict.fromkeys(["wartime", "military"], ("War",)),
    "cowboy": ("Western",),
    "documentaries": ("Documentary",),
}


def _as(word: str, *forms: str) -> dict[str, tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]]:
    """``forms`` read in a wish as the :data:`CATEGORY_WORDS` word ``word`` is."""
    return dict.fromkeys(forms, ((CATEGORY_WORDS[word],), ()))


#: What a wish's words ask for -> (groups of categories, the item needs one of each group;
#: categories the item must not have): every :data:`CATEGORY_WORDS` word (one group), and the
#: moods, phrasings and word forms only a wish uses. Targets are catalogue category names
#: compared case-insensitively without punctuation ("childrens" = "Children's"); targets a
#: catalogue lacks are dropped.
SYNONYMS: dict[str, tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]] = {
    **{word: ((names,), ()) for word, names in CATEGORY_WORDS.items()},
    **_as(
        "scary",
        *"scarier scariest scare scares chilling haunted haunting ghost ghosts monster monsters "
        "zombie zombies nightmare nightmares".split(),
    ),
    **_as("funny", *"laugh laughs comic silly goofy witty funnier".split()),
    **_as("romantic", "love stories", "date night"),
    **dict.fromkeys(
        ["rom com", "romcom", "romcoms", "rom coms"], ((("Romance",), ("Comedy",)), ())
    ),
    **_as("action packed", "explosions", "adrenaline", "fight", "fights", "fighting"),
    **dict.fromkeys(
        ["thrilling", "tense", "edge of my seat", "gripping"], ((("Thriller", "Mystery"),), ())
    ),
    **_as("whodunit", "whodunnit"),
    **_as("detective", "detectives"),
    **_as("gangster", "gangsters"),
    **_as("heist", "heists", "criminals"),
    **_as("science fiction", "space", "aliens", "alien invasion", "robots", "sci fi"),
    **_as("wartime", "soldiers", "battle", "battles", "wwii", "world war"),
    **_as("cowboy", "cowboys", "wild west"),
    **dict.fromkeys(["singing", "songs", "song and dance"], ((("Musical",),), ())),
    **_as("documentaries", "docs", "non fiction", "nonfiction"),
    **_as("animated", "cartoons", "pixar"),
    **_as("magical", "magic", "wizard", "wizards", "dragons", "fairy tale", "fairy tales"),
    **_as("adventurous", "quest", "treasure"),
    **_as("dramatic", "serious", "tearjerker", "tear jerker", "sad", "emotional"),
    **dict.fromkeys(
        "dark darker darkest grim bleak gritty disturbing sinister".split(),
        ((("Thriller", "Crime", "Film-Noir", "Horror"),), ("Comedy", "Children's")),
    ),
    **dict.fromkeys(
        "violent violence gory gore bloody brutal".split(),
        ((("Action", "Crime", "Horror", "War"),), ()),
    ),
    **_as(
        "kids",
        "kid",
        "child",
        "family friendly",
        "little ones",
        "toddler",
        "toddlers",
        "disney",
        "for my son",
        "for my daughter",
    ),
    **dict.fromkeys(
        ["feel good", "feelgood", "uplifting", "cheerful", "lighthearted", "light hearted"],
        ((("Comedy", "Musical", "Children's", "Romance", "Animation"),), ("Horror", "Film-Noir")),
    ),
}

#: Words that open an exclusion ("not horror", "anything but comedies", "don't want war films").
NEGATIONS = (
    "anything but", "other than", "rather than", "instead of", "no more", "don't want",
    "dont want", "do not want", "don't like", "dont like", "do not like", "not", "no", "nothing",
    "without", "except", "avoid", "excluding", "never", "none", "skip", "hate", "minus", "isn't",
)  # fmt: skip
#: Words an exclusion's scope passes over ("not too scary", "no more comedies or horror").
_SCOPE_SKIP = frozenset(
    "a an any the too so very more of or and nor nothing anything something really overly that "
    "is are with movies movie films film please kind kinds sort type types for my our about "
    "involving stuff".split()
)
#: Words that carry no wish: dropped from the soft query and listed as ignored.
FILLER = frozenset(
    """a about above after again all also am an and any anything are as at be because been but by
    can could did do does doing for from get give go going had has have having he her here hey hi
    his how i i'd i'm i've if in into is it it's its just kind let me maybe me might my myself
    need now of off ok okay on one or our out over please recommend recommendation
    recommendations she should show so some something sort suggest suggestion suggestions than
    thank thanks that the their them then there these they this those to tonight too type up us
    very want wanna was watch watching we what whatever which while who will with would you your
    movie movies film films flick flicks title titles like love loved liked enjoy enjoyed wants
    wanted looking look find see seen don't dont good great nice best else other another more
    less much many really maybe perhaps bit little lot year years old son daughter wife husband
    friend friends
    """.split()
)

_WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)*|[^\sa-z0-9]")
_DECADE_WORDS = {
    "twenties": 20, "thirties": 30, "forties": 40, "fifties": 50, "sixties": 60,
    "seventies": 70, "eighties": 80, "nineties": 90,
}  # fmt: skip
_DECADE = re.compile(
    r"(?P<part>\b(?:early|mid|late)[\s-]+)?(?:\bthe\s+)?"
    r"(?:\b(?P<century>1[89]|20)(?P<d1>\d)0'?s\b|(?<![\w])'?(?P<d2>\d)0'?s\b|"
    r"\b(?P<word>" + "|".join(_DECADE_WORDS) + r")\b)"
)
_YEAR = r"(1[89]\d\d|20\d\d)"
_RANGE = re.compile(
    rf"\b(?:between|from)\s+{_YEAR}\s+(?:and|to|until|-)\s+{_YEAR}\b|\b{_YEAR}\s*-\s*{_YEAR}\b"
)
_BOUND = re.compile(
    r"\b(?P<op>before|pre|earlier than|older than|until|up to|through|after|post|later than|"
    r"newer than|since|from|in|of)[\s-]+(?:the\s+year\s+)?"
    + _YEAR
    + r"(?P<on>\s+(?:on|onwards?|and later|or later))?\b"
)
_DECADE_BOUND = re.compile(r"\b(?P<op>before|after|since|pre|post)[\s-]*$")
_RELATIVE_NEW = re.compile(
    r"\b(?:recent|recently|latest|newest|newer|modern|contemporary|"
    r"new (?:movies?|films?|releases?|ones?|stuff))\b"
)
_RELATIVE_OLD = re.compile(
    r"(?<!year )(?<!years )(?<!year-)"
    r"\b(?:old|older|oldies|oldie|classic|classics|vintage|golden age)\b"
)
_LIKE = re.compile(r"\b(?:like|similar to|in the vein of|reminds? me of|same as)\s+", re.IGNORECASE)
_BUT = re.compile(r"\s*,?\s*\b(?:but|only|except|just|yet)\b\s*", re.IGNORECASE)


def category_key(name: str) -> str:
    """A category name compared loosely: lowercase, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class Wish:
    """What a free-text request asks for.

    ``categories``: groups of category names (catalogue spelling); an item must have at least
    one category of every group. ``exclude_categories``: it must have none of these. Years are
    inclusive. ``like``: item ids the text names as a reference ("like Fargo but ..."): they join
    the history. ``query``: the soft rest, for the text view (``None`` when nothing is left).
    ``understood``: each constraint as the text said it (``'"scary" -> Horror or Thriller'``);
    ``ignored``: words that neither became a constraint nor the soft query.
    """

    text: str
    categories: tuple[tuple[str, ...], ...] = ()
    exclude_categories: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None
    like: tuple[str, ...] = ()
    query: str | None = None
    understood: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()

    @property
    def constrains(self) -> bool:
        """Whether the wish has hard constraints (categories, exclusions or years)."""
        return bool(
            self.categories
            or self.exclude_categories
            or self.year_min is not None
            or self.year_max is not None
        )

    @property
    def changed_query(self) -> bool:
        """Whether anything was read out of the text (then the soft query replaces it)."""
        return self.constrains or bool(self.like)


@dataclass
class _Reading:
    groups: list[tuple[str, ...]] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None
    notes: list[str] = field(default_factory=list)

    def years(self, low: int | None, high: int | None, said: str) -> None:
        if low is not None:
            self.year_min = low if self.year_min is None else max(self.year_min, low)
        if high is not None:
            self.year_max = high if self.year_max is None else min(self.year_max, high)
        span = f"{low}-{high}" if low is not None and high is not None else (
            f"from {low}" if low is not None else f"up to {high}"
        )  # fmt: skip
        self.notes.append(f'"{said}" -> years {span}')


class WishParser:
    """Reads wishes against one catalogue's vocabulary (categories, years, titles)."""

    def __init__(
        self,
        catalog: Catalog,
        synonyms: Mapping[str, tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]] = SYNONYMS,
        titles: TitleIndex | None = None,
    ) -> None:
        self.catalog = catalog
        names: dict[str, str] = {}
        years = []
        for item in catalog:
            for c in item.categories:
                names.setdefault(category_key(c), c)
            if item.year is not None:
                years.append(item.year)
        names.pop("unknown", None)
        self.categories = tuple(sorted(names.values()))
        self._names = names
        self.titles = titles or TitleIndex(catalog, cutoff=0.85)
        if years:
            self.recent_from = int(np.percentile(years, 90))
            self.classic_until = int(np.percentile(years, 10))
        else:
            self.recent_from = self.classic_until = None
        self.phrases = self._phrases(synonyms)
        self._longest = max((len(p.split()) for p in self.phrases), default=1)

    def _phrases(
        self, synonyms: Mapping[str, tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]]
    ) -> dict[str, tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]]:
        """phrase (lowercase words) -> (groups, excluded), in this catalogue's spelling."""
        out: dict[str, tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]] = {}
        for phrase, (groups, excluded) in synonyms.items():
            kept = tuple(g for g in (self._known(group) for group in groups) if g)
            if kept:
                out[phrase] = (kept, self._known(excluded))
        for key, name in self._names.items():
            words = " ".join(re.findall(r"[a-z0-9]+", name.lower().replace("'s", "s")))
            forms = {key, words, name.lower()}
            for form in list(forms):
                forms.add(form[:-1] + "ies" if form.endswith("y") else form + "s")
            if key == "childrens":
                forms |= {"children's", "childrens"}
            for form in forms:
                out[form] = (((name,),), ())
        return out

    def _known(self, names: Iterable[str]) -> tuple[str, ...]:
        found = (self._names.get(category_key(n)) for n in names)
        return tuple(dict.fromkeys(n for n in found if n is not None))

    # ------------------------------------------------------------------ parse
    def parse(self, text: str) -> Wish:
        """Read ``text``; words the vocabulary does not know stay in the soft query."""
        text = " ".join(text.split())
        reading = _Reading()
        like, text_left = self._like(text, reading)
        lower = text_left.lower()
        spans: list[tuple[int, int]] = []
        self._years(lower, reading, spans)
        kept, ignored = self._words(lower, spans, reading)
        groups = list(dict.fromkeys(reading.groups))
        exclude = tuple(dict.fromkeys(reading.exclude))
        query = " ".join(kept) or None
        return Wish(
            text=text,
            categories=tuple(groups),
            exclude_categories=exclude,
            year_min=reading.year_min,
            year_max=reading.year_max,
            like=like,
            query=query[:300] if query else None,
            understood=tuple(reading.notes),
            ignored=tuple(ignored),
        )

    def _like(self, text: str, reading: _Reading) -> tuple[tuple[str, ...], str]:
        """ "like X but Y": X's item, and the text without "like X but"."""
        for m in _LIKE.finditer(text):
            before = text[: m.start()].lower().split()[-1:]
            if before and before[0] in {"don't", "dont", "not", "didn't"}:
                continue
            rest = text[m.end() :]
            but = _BUT.search(rest)
            item = None
            if but is not None and but.start() > 0:
                item = self._title(rest[: but.start()], fuzzy=True)
                end = m.end() + but.end() if item else None
            if item is None:
                words = list(re.finditer(r"\S+", rest))
                for n in range(min(8, len(words)), 0, -1):
                    piece = rest[: words[n - 1].end()].rstrip(".,!?;:")
                    item = self._title(piece, fuzzy=False)
                    if item is not None:
                        end = m.end() + words[n - 1].end()
                        tail = _BUT.match(text[end:])
                        end += tail.end() if tail else 0
                        break
            if item is None or end is None:
                continue
            shown = self.catalog.item(item)
            year = f" ({shown.year})" if shown.year else ""
            reading.notes.append(f'"{text[m.start() : end].strip()}" -> like {shown.title}{year}')
            return (item,), (text[: m.start()] + " , " + text[end:]).strip()
        return (), text

    def _title(self, piece: str, fuzzy: bool) -> str | None:
        piece = piece.strip().strip("\"'“”").strip()
        words = re.findall(r"[\w']+", piece.lower())
        if not words or all(w in FILLER or w in self.phrases for w in words):
            return None
        if len(words) == 1 and not piece[:1].isupper():
            return None
        match = self.titles.match(piece)
        if match is None or (match.score < 1.0 and not fuzzy):
            return None
        return match.item_id

    def _years(self, lower: str, reading: _Reading, spans: list[tuple[int, int]]) -> None:
        def free(start: int, end: int) -> bool:
            return not any(s < end and start < e for s, e in spans)

        for m in _RANGE.finditer(lower):
            a, b = (int(g) for g in m.groups() if g)
            reading.years(min(a, b), max(a, b), m.group(0))
            spans.append(m.span())
        for m in _DECADE.finditer(lower):
            if not free(*m.span()):
                continue
            low, high = _decade(m)
            start = m.start()
            bound = _DECADE_BOUND.search(lower[:start])
            if bound is not None:
                op, start = bound.group("op"), bound.start()
                said = lower[start : m.end()]
                if op in ("before", "pre"):
                    reading.years(None, low - 1, said)
                elif op in ("after", "post"):
                    reading.years(high + 1, None, said)
                else:
                    reading.years(low, None, said)
            else:
                reading.years(low, high, m.group(0).strip())
            spans.append((start, m.end()))
        for m in _BOUND.finditer(lower):
            if not free(*m.span()):
                continue
            op, year = m.group("op"), int(m.group(2))
            onward = m.group("on") is not None
            if op in ("before", "pre", "earlier than", "older than"):
                reading.years(None, year - 1, m.group(0))
            elif op in ("until", "up to", "through"):
                reading.years(None, year, m.group(0))
            elif op in ("after", "post", "later than", "newer than"):
                reading.years(year + 1, None, m.group(0))
            elif op == "since" or onward:
                reading.years(year, None, m.group(0))
            else:
                reading.years(year, year, m.group(0))
            spans.append(m.span())
        for pattern, recent in ((_RELATIVE_NEW, True), (_RELATIVE_OLD, False)):
            for m in pattern.finditer(lower):
                if not free(*m.span()):
                    continue
                if recent and self.recent_from is not None:
                    reading.years(self.recent_from, None, m.group(0))
                elif not recent and self.classic_until is not None:
                    reading.years(None, self.classic_until, m.group(0))
                spans.append(m.span())

    def _words(
        self, lower: str, spans: list[tuple[int, int]], reading: _Reading
    ) -> tuple[list[str], list[str]]:
        """Categories and exclusions from the words outside ``spans``; (soft words, ignored)."""
        tokens: list[str] = []
        last = 0
        for start, end in sorted(spans):
            tokens += _WORD.findall(lower[last:start].replace("-", " ")) + [","]
            last = max(last, end)
        tokens += _WORD.findall(lower[last:].replace("-", " "))
        tokens = [t.replace("’", "'") for t in tokens]
        kept: list[str] = []
        ignored: list[str] = []
        i = 0
        while i < len(tokens):
            negation = self._match(tokens, i, NEGATIONS)
            if negation:
                j = i + negation
                found = []
                while j < len(tokens):
                    n = self._phrase_at(tokens, j)
                    if n:
                        phrase = " ".join(tokens[j : j + n])
                        found.append(phrase)
                        for group in self.phrases[phrase][0]:
                            reading.exclude.extend(group)
                        j += n
                    elif tokens[j] in _SCOPE_SKIP:
                        j += 1
                    else:
                        break
                if found:
                    said = " ".join(tokens[i:j])
                    excluded = [c for p in found for g in self.phrases[p][0] for c in g]
                    names = " or ".join(dict.fromkeys(excluded))
                    reading.notes.append(f'"{said}" -> not {names}')
                    i = j
                    continue
            n = self._phrase_at(tokens, i)
            if n:
                phrase = " ".join(tokens[i : i + n])
                groups, excluded = self.phrases[phrase]
                reading.groups.extend(groups)
                reading.exclude.extend(excluded)
                said = " and ".join(" or ".join(g) for g in groups)
                if excluded:
                    said += ", not " + " or ".join(excluded)
                reading.notes.append(f'"{phrase}" -> {said}')
                kept.extend(tokens[i : i + n])
                i += n
                continue
            token = tokens[i]
            if re.match(r"[a-z0-9]", token):
                (ignored if token in FILLER else kept).append(token)
            i += 1
        return kept, ignored

    def _phrase_at(self, tokens: Sequence[str], i: int) -> int:
        """The number of tokens of the longest vocabulary phrase starting at ``i`` (0: none)."""
        for n in range(min(self._longest, len(tokens) - i), 0, -1):
            if " ".join(tokens[i : i + n]) in self.phrases:
                return n
        return 0

    @staticmethod
    def _match(tokens: Sequence[str], i: int, phrases: Sequence[str]) -> int:
        for phrase in phrases:
            words = phrase.split()
            if list(tokens[i : i + len(words)]) == words:
                return len(words)
        return 0


def _decade(m: re.Match[str]) -> tuple[int, int]:
    """The years of a matched decade, narrowed by "early"/"mid"/"late"."""
    if m.group("word"):
        start = 1900 + _DECADE_WORDS[m.group("word")]
    elif m.group("century"):
        start = int(m.group("century")) * 100 + int(m.group("d1")) * 10
    else:
        d = int(m.group("d2"))
        start = (1900 if d >= 2 else 2000) + d * 10
    part = (m.group("part") or "").strip(" -")
    if part == "early":
        return start, start + 3
    if part == "mid":
        return start + 3, start + 6
    if part == "late":
        return start + 6, start + 9
    return start, start + 9


def titles_of(catalog: Catalog, item_ids: Iterable[str]) -> list[str]:
    """Catalogue titles with their year, for saying what a wish referred to."""
    out = []
    for item_id in item_ids:
        item = catalog.item(item_id)
        out.append(f"{item.title} ({item.year})" if item.year else item.title)
    return out


__all__ = [
    "CATEGORY_WORDS",
    "FILLER",
    "NEGATIONS",
    "SYNONYMS",
    "Wish",
    "WishParser",
    "category_key",
]
