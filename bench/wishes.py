"""Wishes on MovieLens-100K: the share of top-5 items that satisfy what each wish asks for.

    python bench/wishes.py --retriever runs/retriever-text --label after
    git worktree add ../wish-before d9ca35d      # the code before wishes were understood
    PYTHONPATH=../wish-before python bench/wishes.py --retriever runs/retriever-text \
        --label before

Build the retriever (it needs a text view for the soft part of a wish) with
``llmrec retrieve build --data ml-100k --out runs/retriever-text
--views text,sasrec,cooc,recent-pop,pop --fusion rrf``.

The service runs in this process as ``llmrec serve`` runs it (``build_service`` +
``create_app``), driven through FastAPI's TestClient over its public HTTP API only
(``/v1/recommend`` and ``/v1/chat/completions``), so the same script measures any version of
the code on ``PYTHONPATH``. Model: the default base model zero-shot; reasons: ``template``.

Each wish of :data:`CORPUS` says, as a person would read it, which catalogue facts (genres and
year) an answer must have; an item satisfies the wish when its catalogue record has them (an
item the wish names as its reference, "like Fargo but ...", never does). A multi-turn wish is
scored on the second answer, which must also relate to the first as the refinement asked
("something else": none of its items; "older": older than all of them; ...). Score per wish type:
satisfying items / (5 x wishes), a missing item counting as a miss. Writes
runs/bench-wishes/<label>.json and regenerates docs/wishes.md from every label measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _sections import write_doc, write_section  # noqa: E402

K = 5
PARTS = ("compare", "before", "after")
HEADER = [
    "# Wishes: does the answer do what was asked?",
    "",
    "Written by `bench/wishes.py`. Each wish (a query to `/v1/recommend`, or a chat message) says",
    "which genres and years its answer must have; the figure is the share of the top-5 items",
    "whose catalogue record satisfies them (a missing item counts as a miss). **before**: the",
    "code at `d9ca35d` (the wish only nudges the text view); **after**: the wish read into",
    "constraints (`llmrec/ranking/wish.py`) that filter the whole catalogue, the soft rest",
    "ordering it. Goal: >= 0.90 overall. An item shown after a constraint was relaxed (the",
    "reply says which) counts as a miss when it breaks that constraint.",
    "",
    "Commands (from the repository root; the retriever has a text view):",
    "",
    "```bash",
    "llmrec retrieve build --data ml-100k --out runs/retriever-text \\",
    "    --views text,sasrec,cooc,recent-pop,pop --fusion rrf",
    "git worktree add ../wish-before d9ca35d",
    "PYTHONPATH=../wish-before python bench/wishes.py --retriever runs/retriever-text "
    "--label before",
    "PYTHONPATH=$PWD python bench/wishes.py --retriever runs/retriever-text --label after",
    "```",
    "",
]


@dataclass(frozen=True)
class Need:
    """What an answer must have: one category of every group, none of ``none``, a year in
    [lo, hi]; ``not_titles``: the wish's reference items ("like X"), never a right answer."""

    groups: tuple[tuple[str, ...], ...] = ()
    none: tuple[str, ...] = ()
    lo: int | None = None
    hi: int | None = None
    not_titles: tuple[str, ...] = ()

    def met_by(self, title: str, year: int | None, categories: set[str]) -> bool:
        if title in self.not_titles:
            return False
        if any(not categories & set(g) for g in self.groups) or categories & set(self.none):
            return False
        if self.lo is not None and (year is None or year < self.lo):
            return False
        return not (self.hi is not None and (year is None or year > self.hi))


@dataclass(frozen=True)
class Case:
    kind: str
    text: str
    need: Need
    history: tuple[str, ...] = ()
    chat: bool = False  # sent as one chat message (titles in the text) instead of /v1/recommend
    #: multi-turn: the reply to ``text`` goes back into the conversation, then this message
    then: str | None = None
    #: what the second answer must have beside ``need``, relative to the first answer's items:
    #: "new" (none of them), "not_first" (not its first), "older"/"newer" (a year before the
    #: oldest / after the newest of them), "like_second" (new, sharing a genre with its second)
    relative: str = ""


def N(*groups: str | tuple[str, ...], **kw: Any) -> Need:  # noqa: N802
    return Need(tuple((g,) if isinstance(g, str) else g for g in groups), **kw)


DARK = ("Thriller", "Crime", "Film-Noir", "Horror")
KIDS = ("Children's", "Animation")
SW, TS, FA, GF = "Star Wars (1977)", "Toy Story (1995)", "Fargo (1996)", "Godfather, The (1972)"
CORPUS: list[Case] = [
    # genre: the catalogue's own genre names
    Case("genre", "a scary horror movie", N("Horror"), (SW,)),
    Case("genre", "a romantic comedy please", N("Romance", "Comedy"), (SW,)),
    Case("genre", "some science fiction", N("Sci-Fi"), (FA,)),
    Case("genre", "a good western", N("Western"), (GF,)),
    Case("genre", "a documentary", N("Documentary"), (TS,)),
    Case("genre", "I want to see a war film", N("War"), (SW,)),
    Case("genre", "a musical", N("Musical"), (FA,)),
    Case("genre", "film noir", N("Film-Noir"), (SW,)),
    Case("genre", "a mystery to solve", N("Mystery"), (TS,)),
    # mood: words the catalogue does not use
    Case("mood", "something scary for tonight", N(("Horror", "Thriller")), (TS,)),
    Case("mood", "something funny", N("Comedy"), (GF,)),
    Case("mood", "now something darker", N(DARK, none=("Comedy", "Children's")), (TS, FA)),
    Case(
        "mood",
        "a feel-good movie",
        N(("Comedy", "Musical", "Children's", "Romance", "Animation"), none=("Horror",)),
        ("Seven (Se7en) (1995)",),
    ),  # fmt: skip
    Case("mood", "something romantic", N("Romance"), ("Die Hard (1988)",)),
    Case("mood", "a tense thriller", N("Thriller"), (TS,)),
    Case("mood", "an action-packed movie", N("Action"), ("Sense and Sensibility (1995)",)),
    Case("mood", "a tearjerker", N("Drama"), (SW,)),
    # decade and other years
    Case("decade", "something funny from the 90s", N("Comedy", lo=1990, hi=1999), (SW,)),
    Case("decade", "movies from the 1950s", N(lo=1950, hi=1959), ("Casablanca (1942)",)),
    Case("decade", "a thriller from the 80s", N("Thriller", lo=1980, hi=1989), (TS,)),
    Case("decade", "something made before 1970", N(hi=1969), (SW,)),
    Case("decade", "a comedy from after 1995", N("Comedy", lo=1996), (FA,)),
    Case("decade", "a classic old movie", N(hi=1979), (TS,)),
    Case("decade", "recent releases", N(lo=1996), (SW,)),
    Case("decade", "a sci-fi film from the seventies", N("Sci-Fi", lo=1970, hi=1979), (FA,)),
    Case("decade", "something from the early 90s", N(lo=1990, hi=1993), (GF,)),
    # exclusion
    Case("exclusion", "anything but horror", N(none=("Horror",)), ("Scream (1996)",)),
    Case("exclusion", "no comedies please", N(none=("Comedy",)), ("Groundhog Day (1993)",)),
    Case(
        "exclusion",
        "nothing violent",
        N(none=("Action", "Crime", "Horror", "War")),
        ("Pulp Fiction (1994)",),
    ),  # fmt: skip
    Case("exclusion", "something not too scary", N(none=("Horror",)), ("Scream (1996)",)),
    Case(
        "exclusion",
        "a drama, but no war movies",
        N("Drama", none=("War",)),
        ("Schindler's List (1993)",),
    ),  # fmt: skip
    Case("exclusion", "a comedy without romance", N("Comedy", none=("Romance",)), (TS,)),
    Case(
        "exclusion", "I don't want anything for kids", N(none=("Children's",)), ("Aladdin (1992)",)
    ),  # fmt: skip
    Case("exclusion", "sci-fi but not action", N("Sci-Fi", none=("Action",)), (SW,)),
    # like X but Y: X is a catalogue title written in the wish, not in the history
    Case("like X but Y", "like Fargo but from the 80s", N(lo=1980, hi=1989, not_titles=("Fargo",))),
    Case(
        "like X but Y",
        "something like Star Wars but funnier",
        N("Comedy", not_titles=("Star Wars",)),
    ),  # fmt: skip
    Case(
        "like X but Y",
        "like Toy Story but scarier",
        N(("Horror", "Thriller"), not_titles=("Toy Story",)),
    ),  # fmt: skip
    Case(
        "like X but Y",
        "similar to The Godfather but a comedy",
        N("Comedy", not_titles=("Godfather, The",)),
    ),  # fmt: skip
    Case("like X but Y", "like Pulp Fiction but older", N(hi=1993, not_titles=("Pulp Fiction",))),
    Case("like X but Y", "like Alien but from the 90s", N(lo=1990, hi=1999, not_titles=("Alien",))),
    Case(
        "like X but Y",
        "like Casablanca but from the 60s",
        N(lo=1960, hi=1969, not_titles=("Casablanca",)),
    ),  # fmt: skip
    Case("like X but Y", "like Heat but a romance", N("Romance", not_titles=("Heat",))),
    # kids
    Case("kids", "something for my kids", N(KIDS), (SW,)),
    Case("kids", "a family movie for the weekend", N(KIDS), (FA,)),
    Case("kids", "an animated film", N("Animation"), (GF,)),
    Case("kids", "cartoons for my daughter", N(KIDS), (SW,)),
    Case("kids", "a funny movie the kids will like", N("Comedy", KIDS), (FA,)),
    Case("kids", "something for the kids, nothing scary", N(KIDS, none=("Horror",)), (SW,)),
    # chat: one message naming liked titles and the wish
    Case(
        "chat",
        "I loved Toy Story and Fargo, something darker?",
        N(DARK, none=("Comedy", "Children's")),
        chat=True,
    ),  # fmt: skip
    Case(
        "chat",
        "I liked Toy Story (1995). something scary for tonight",
        N(("Horror", "Thriller")),
        chat=True,
    ),  # fmt: skip
    Case(
        "chat",
        "I enjoyed Star Wars. Give me something funny from the 90s",
        N("Comedy", lo=1990, hi=1999),
        chat=True,
    ),  # fmt: skip
    Case("chat", "I liked Fargo, but no comedies please", N(none=("Comedy",)), chat=True),
    Case("chat", "My kids loved Aladdin, anything similar for them?", N(KIDS), chat=True),
    Case("chat", "I liked Psycho. Anything from before 1970?", N(hi=1969), chat=True),
    # multi-turn: the second message refines the first answer
    Case(
        "multi-turn",
        "I loved Toy Story. Something scary",
        N(("Horror", "Thriller")),
        chat=True,
        then="something else",
        relative="new",
    ),  # fmt: skip
    Case(
        "multi-turn",
        "I liked Fargo, a comedy please",
        N("Comedy"),
        chat=True,
        then="not that one",
        relative="not_first",
    ),  # fmt: skip
    Case(
        "multi-turn",
        "I liked Star Wars, something from the 90s",
        N(),
        chat=True,
        then="older",
        relative="older",
    ),  # fmt: skip
    Case(
        "multi-turn",
        "I liked Heat, something scary",
        N("Thriller", none=("Horror",)),
        chat=True,
        then="without horror",
    ),  # fmt: skip
    Case(
        "multi-turn",
        "I loved Toy Story",
        N(),
        chat=True,
        then="more like the second",
        relative="like_second",
    ),  # fmt: skip
    Case(
        "multi-turn",
        "I liked Casablanca, a romantic movie",
        N("Romance"),
        chat=True,
        then="newer ones",
        relative="newer",
    ),  # fmt: skip
]


@dataclass
class Outcome:
    case: Case
    titles: list[str] = field(default_factory=list)
    met: list[bool] = field(default_factory=list)
    error: str | None = None

    @property
    def hits(self) -> int:
        return sum(self.met)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retriever", default=str(ROOT / "runs" / "retriever-text"))
    parser.add_argument("--label", default="after", help="before | after (the code measured)")
    parser.add_argument("--base-model", help="default: the package's default base model")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-wishes"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "wishes.md"))
    args = parser.parse_args()
    started = time.perf_counter()
    import llmrec

    code = Path(llmrec.__file__).resolve().parents[1]
    print(f"code: {code}; retriever: {args.retriever}")
    outcomes = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from llmrec.ranking.backends import DEFAULT_BASE_MODEL

    model = args.base_model or DEFAULT_BASE_MODEL
    record = {
        "label": args.label,
        "code": str(code),
        "base_model": model,
        "scores": scores(outcomes),
        "wishes": [
            {
                "kind": o.case.kind,
                "text": o.case.text,
                "items": o.titles,
                "met": o.met,
                "error": o.error,
            }
            for o in outcomes
        ],  # fmt: skip
    }
    (out / f"{args.label}.json").write_text(json.dumps(record, indent=1))
    lines = detail(args.label, outcomes)
    print("\n".join(lines))
    write_section(out, args.label, lines, started, "bench/wishes.py")
    write_section(out, "compare", compare(out, model), started, "bench/wishes.py")
    write_doc(out, Path(args.doc), HEADER, PARTS)
    print(f"wrote {out / (args.label + '.json')} and {args.doc}")
    return 1 if any(o.error for o in outcomes) else 0


def run(args: argparse.Namespace) -> list[Outcome]:
    from fastapi.testclient import TestClient

    from llmrec.data import open_dataset
    from llmrec.serving.app import build_service, create_app
    from llmrec.serving.config import ServeConfig

    kw = {"base_model": args.base_model} if args.base_model else {}
    config = ServeConfig(
        data="ml-100k", retriever=args.retriever, reasons="template", api_keys_env=None, **kw
    )
    service = build_service(config)
    catalog = open_dataset("ml-100k").catalog
    facts = {i.item_id: i for i in catalog}
    outcomes = []
    with TestClient(create_app(service)) as client:
        for n, case in enumerate(CORPUS, start=1):
            outcome = ask(client, case, facts)
            outcomes.append(outcome)
            print(f"{n:2d}/{len(CORPUS)} [{case.kind}] {case.text!r}: {outcome.hits}/{K}")
    return outcomes


def ask(client: Any, case: Case, facts: dict[str, Any]) -> Outcome:
    if case.chat:
        messages = [{"role": "user", "content": case.text}]
        reply, items = chat(client, messages)
        first: list[str] = []
        if case.then is not None and items is not None:
            first = [entry["item_id"] for entry in items]
            messages += [
                {"role": "assistant", "content": reply},
                {"role": "user", "content": case.then},
            ]
            reply, items = chat(client, messages)
    else:
        body = {"history": list(case.history), "query": case.text, "k": K, "explain": False}
        response = client.post("/v1/recommend", json=body)
        items = response.json().get("items") if response.is_success else None
        reply, first = response.text, []
    if items is None:
        return Outcome(case, error=f"no answer: {str(reply)[:200]}")
    outcome = Outcome(case)
    for entry in items[:K]:
        item = facts[entry["item_id"]]  # the catalogue's record, not the response's
        outcome.titles.append(f"{item.title} ({item.year})")
        met = case.need.met_by(item.title, item.year, set(item.categories))
        outcome.met.append(met and relative_ok(case.relative, item, first, facts))
    return outcome


def chat(client: Any, messages: list[dict[str, str]]) -> tuple[str, list[dict] | None]:
    """One chat call: (the reply's text, the items behind it)."""
    body = {"messages": messages, "llmrec": {"k": K, "explain": False}}
    response = client.post("/v1/chat/completions", json=body)
    if not response.is_success:
        return response.text, None
    data = response.json()
    return data["choices"][0]["message"]["content"] or "", (data.get("llmrec") or {}).get("items")


def relative_ok(relative: str, item: Any, first: list[str], facts: dict[str, Any]) -> bool:
    """Whether ``item`` of the second answer relates to the first answer as the message asked."""
    if not relative:
        return True
    if not first:
        return False
    years = [facts[i].year for i in first if facts[i].year]
    if relative == "new":
        return item.item_id not in first
    if relative == "not_first":
        return item.item_id != first[0]
    if relative == "older":
        return item.year is not None and bool(years) and item.year < min(years)
    if relative == "newer":
        return item.year is not None and bool(years) and item.year > max(years)
    if relative == "like_second":
        second = facts[first[1]] if len(first) > 1 else None
        shared = second is not None and set(second.categories) & set(item.categories)
        return item.item_id not in first and bool(shared)
    raise ValueError(f"unknown relative check {relative!r}")


def scores(outcomes: list[Outcome]) -> dict[str, dict[str, float]]:
    by_kind: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_kind[o.case.kind].append(o)
        by_kind["all"].append(o)
    return {
        kind: {"wishes": len(os_), "share": sum(o.hits for o in os_) / (K * len(os_))}
        for kind, os_ in by_kind.items()
    }


def detail(label: str, outcomes: list[Outcome]) -> list[str]:
    lines = [
        f"## {label}: every wish",
        "",
        "Multi-turn rows show the second answer (the first message, then the refinement after",
        "the arrow).",
        "",
        "| type | wish | satisfied | top-5 (misses in italics) |",
        "|---|---|---|---|",
    ]
    for o in outcomes:
        shown = ", ".join(t if ok else f"_{t}_" for t, ok in zip(o.titles, o.met, strict=True))
        said = o.case.text + (f" -> {o.case.then}" if o.case.then else "")
        lines.append(f"| {o.case.kind} | {said} | {o.hits}/{K} | {o.error or shown or '-'} |")
    return [*lines, ""]


def compare(out: Path, model: str) -> list[str]:
    """The table of every label measured so far, per wish type."""
    import torch

    runs = {}
    for label in ("before", "after"):
        path = out / f"{label}.json"
        if path.is_file():
            runs[label] = json.loads(path.read_text())["scores"]
    kinds = list(dict.fromkeys(k for s in runs.values() for k in s if k != "all")) + ["all"]
    lines = [
        "## Share of top-5 items that satisfy the wish",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"Python {platform.python_version()}; ML-100K, base model {model} zero-shot, reasons "
        "template, retriever with views text, sasrec, cooc, recent-pop, pop (RRF).",
        "",
        "| wish type | wishes | " + " | ".join(runs) + " |",
        "|---|---|" + "---|" * len(runs),
    ]
    for kind in kinds:
        n = next((s[kind]["wishes"] for s in runs.values() if kind in s), 0)
        cells = [f"{s[kind]['share']:.2f}" if kind in s else "-" for s in runs.values()]
        name = f"**{kind}**" if kind == "all" else kind
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return [*lines, ""]


if __name__ == "__main__":
    raise SystemExit(main())
