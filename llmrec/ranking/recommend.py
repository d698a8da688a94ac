"""The one path from a request to a ranked answer: retrieve, filter, rank, fuse, explain.

:func:`load_pipeline` puts together a saved retriever (``llmrec retrieve build``), a model backend
(transformers or vLLM, :mod:`llmrec.ranking.backends`) with the base LLM and optionally a saved
adapter (``llmrec finetune``), ranked with the prompt settings the adapter was trained with.
:meth:`RecPipeline.recommend` returns :class:`Recommendation` records: catalogue items only, each
with its final, LLM and retrieval scores, the retrieval views that proposed it, and a reason that
passed the grounding check (a generated one, else the template reason built from facts).

``llmrec recommend``, ``llmrec evaluate`` (through :attr:`RecPipeline.ranker`) and the service
(:class:`llmrec.serving.service.RecService`, which hands in each request's model routed through
its batcher) all call this module; none of them ranks on its own.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.records import Item, UserSequence
from llmrec.prompts.builder import PromptConfig, stable_seed
from llmrec.ranking.backends import BackendConfig, RankModel, item_scores
from llmrec.ranking.fuse import fuse, retrieval_order_scores, standardise
from llmrec.ranking.pipeline import LLMRanker, RankerConfig, candidates_from_scores
from llmrec.ranking.reasons import Grounder, ReasonFacts, ReasonMode
from llmrec.ranking.wish import Wish, WishParser

logger = logging.getLogger(__name__)

REASON_MODES = tuple(ReasonMode.values())


@dataclass(frozen=True)
class Rejection:
    """A generated reason that was not shown, and why: the false or unverifiable claims
    (``title``, ``category``, ``year``, ``rating``, ``history``, ``unverifiable``), ``empty``,
    ``incomplete`` (cut off mid-sentence) or ``no citation`` (true, but pointing at nothing of
    this user's)."""

    text: str
    problems: tuple[str, ...]
    kinds: tuple[str, ...]


@dataclass
class Reason:
    text: str
    #: "llm" (generated, grounded and every claim checked) or "template" (built from facts)
    source: str
    rejected: list[Rejection] = field(default_factory=list)


@dataclass
class Recommendation:
    item_id: str
    title: str
    year: int | None
    score: float
    #: NaN for an item beyond the LLM's list (``k`` > the number of candidates it ranks)
    llm_score: float
    retrieval_score: float
    views: dict[str, dict[str, float]]
    categories: tuple[str, ...] = ()
    reason: Reason | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "item_id": self.item_id,
            "title": self.title,
            "year": self.year,
            "score": round(self.score, 6),
            "llm_score": _rounded(self.llm_score),
            "retrieval_score": _rounded(self.retrieval_score),
            "views": self.views,
        }
        if self.reason is not None:
            out["reason"] = self.reason.text
            out["reason_source"] = self.reason.source
        return out


def _rounded(value: float) -> float | None:
    return round(float(value), 6) if np.isfinite(value) else None


@dataclass(frozen=True)
class ItemFilter:
    """Hard constraints on recommended items: categories (any of), a year range, exclusions.

    ``require``: further groups of categories, an item needs one of each (a wish's "romantic
    comedy" is two groups); ``exclude_categories``: an item with any of these is rejected.
    """

    categories: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None
    #: Item ids never to recommend (beside the user's history, which is always excluded).
    exclude: frozenset[str] = frozenset()
    exclude_categories: tuple[str, ...] = ()
    require: tuple[tuple[str, ...], ...] = ()

    @property
    def narrows(self) -> bool:
        """Whether the filter can reject items beyond the excluded ones (then the whole
        catalogue is searched, not just the top of the retriever's list)."""
        return (
            bool(self.categories or self.exclude_categories or self.require)
            or self.year_min is not None
            or self.year_max is not None
        )

    def passes(self, item: Item) -> bool:
        if item.item_id in self.exclude:
            return False
        have = {c.lower() for c in item.categories}
        for group in (self.categories, *self.require):
            if group and not have & {c.lower() for c in group}:
                return False
        if have & {c.lower() for c in self.exclude_categories}:
            return False
        if self.year_min is not None and (item.year is None or item.year < self.year_min):
            return False
        if self.year_max is not None and (item.year is None or item.year > self.year_max):
            return False
        return True

    def with_wish(self, wish: Wish | None) -> ItemFilter:
        """This filter narrowed by a wish's hard constraints (both must hold)."""
        if wish is None or not wish.constrains:
            return self
        lows = [y for y in (self.year_min, wish.year_min) if y is not None]
        highs = [y for y in (self.year_max, wish.year_max) if y is not None]
        return replace(
            self,
            year_min=max(lows) if lows else None,
            year_max=min(highs) if highs else None,
            exclude_categories=tuple(
                dict.fromkeys((*self.exclude_categories, *wish.exclude_categories))
            ),
            require=(*self.require, *wish.categories),
        )


@dataclass(frozen=True)
class Answer:
    """A recommendation list with what was understood of the wish.

    ``wish``: the wish as read (``None`` without a query); ``applied``: its constraints that
    filtered the items (the wish minus the ``relaxed`` ones, dropped because no item satisfied
    them all, each said as the wish said it).
    """

    items: list[Recommendation]
    wish: Wish | None = None
    applied: Wish | None = None
    relaxed: tuple[str, ...] = ()
    #: the history the items were ranked for (with the wish's "like X" items added)
    history: UserSequence | None = None


def relaxations(wish: Wish) -> list[tuple[str, Wish]]:
    """The wish made looser step by step, each step with the constraint it drops: years first,
    then the category groups (the last said first), then the exclusions."""
    steps = []
    low, high = wish.year_min, wish.year_max
    if low is not None or high is not None:
        if low is not None and high is not None:
            said = f"years {low}-{high}"
        else:
            said = f"years from {low}" if low is not None else f"years up to {high}"
        wish = replace(wish, year_min=None, year_max=None)
        steps.append((said, wish))
    while wish.categories:
        group = wish.categories[-1]
        wish = replace(wish, categories=wish.categories[:-1])
        steps.append((" or ".join(group), wish))
    if wish.exclude_categories:
        said = "not " + " or ".join(wish.exclude_categories)
        wish = replace(wish, exclude_categories=())
        steps.append((said, wish))
    return steps


def with_items(history: UserSequence, item_ids: Sequence[str]) -> UserSequence:
    """``history`` followed by ``item_ids`` it lacks (a wish's "like X"). Ratings, behaviours
    and context are not invented for the added items: the longer history carries none, as a
    service history extended by titles does."""
    new = [i for i in dict.fromkeys(item_ids) if i not in set(history.item_ids)]
    if not new:
        return history
    ids = (*history.item_ids, *new)
    start = history.timestamps[-1] + 1.0 if history.timestamps else 0.0
    times = (*history.timestamps, *(start + n for n in range(len(new))))
    return UserSequence(history.user_id, ids, times)


class ReasonGenerator:
    """Generate a reason per recommended item; show it only if it passes the grounder.

    A generated sentence is shown when it names only the item and the user's history items,
    every factual claim in it holds (categories, years, ratings, the history items it cites:
    :class:`llmrec.ranking.reasons.ClaimChecker`) and it cites something of this user's. A
    rejected reason is regenerated once with sampling; if that fails too, the template reason
    (built from facts, true by construction) is shown instead.
    """

    def __init__(
        self,
        scorer: RankModel,
        facts: ReasonFacts,
        grounder: Grounder,
        max_new_tokens: int = 40,
        attempts: int = 2,
    ) -> None:
        self.scorer = scorer
        self.facts = facts
        self.grounder = grounder
        self.max_new_tokens = max_new_tokens
        self.attempts = attempts

    def template(self, history: UserSequence, item_ids: Sequence[str]) -> list[Reason]:
        return [Reason(self.facts.silver(history, i), "template") for i in item_ids]

    def generate(self, history: UserSequence, item_ids: Sequence[str]) -> list[Reason]:
        builder = self.scorer.builder
        prompts = []
        for item_id in item_ids:
            facts = [f.text for f in self.facts.facts(history, item_id)]
            prompts.append(builder.reason(history, item_id, facts).text)
        out: list[Reason | None] = [None] * len(item_ids)
        rejected: list[list[str]] = [[] for _ in item_ids]
        todo = list(range(len(item_ids)))
        for attempt in range(self.attempts):
            if not todo:
                break
            batch = [prompts[i] for i in todo]
            seed = stable_seed("reason", *batch) % 2**31 if attempt else None
            texts = self.scorer.generate(batch, self.max_new_tokens, sample_seed=seed)
            still = []
            for i, text in zip(todo, texts, strict=True):
                text = first_sentence(text)
                why = self.review(text, history, item_ids[i])
                if why is None:
                    out[i] = Reason(text, "llm", rejected[i])
                else:
                    rejected[i].append(why)
                    still.append(i)
            todo = still
        for i in todo:
            out[i] = Reason(self.facts.silver(history, item_ids[i]), "template", rejected[i])
        return [r for r in out if r is not None]

    def review(self, text: str, history: UserSequence, item_id: str) -> Rejection | None:
        """None when ``text`` may be shown, else why not."""
        if not text:
            return Rejection(text, ("empty",), ("empty",))
        if not _SENTENCE_END.search(text):  # the generation ran out of tokens mid-sentence
            return Rejection(text, ("the sentence does not end",), ("incomplete",))
        findings = self.grounder.findings(text, history, item_id)
        if findings:
            kinds = tuple(dict.fromkeys(str(c.kind) for c in findings))
            return Rejection(text, tuple(str(c) for c in findings), kinds)
        # a reason must point at something true of this user: a history item or a genre the
        # item shares with the history
        if not self.grounder.cites(text, history, item_id):
            return Rejection(text, ("cites no history item or shared genre",), ("no citation",))
        return None


_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")


def first_sentence(text: str, max_chars: int = 300) -> str:
    """The first sentence of a generation (without a leading bullet or quote), cut at
    ``max_chars``."""
    text = " ".join(text.split()).lstrip("-*•>\"' ")
    for end in (". ", "! ", "? "):
        cut = text.find(end)
        if 0 < cut:
            text = text[: cut + 1]
            break
    return text[:max_chars].strip()


class RecPipeline:
    """Retriever + LLM ranker + reasons, for one catalogue.

    ``ranker.scorer`` is the pipeline's own model; :meth:`recommend` and :meth:`rank` also take
    another ``model`` per call (the service passes the requested model routed through its
    batcher). A model's fusion weight is its ``info.fusion_weight``; the pipeline's own model
    ranks at ``ranker.config.fusion_weight`` (which evaluation tunes).
    """

    def __init__(
        self,
        retriever: Any,
        ranker: LLMRanker,
        catalog: Catalog,
        facts: ReasonFacts | None = None,
        grounder: Grounder | None = None,
        adapter: str | None = None,
    ) -> None:
        self.retriever = retriever
        self.ranker = ranker
        self.catalog = catalog
        self.facts = facts or ReasonFacts.from_retriever(catalog, retriever)
        self.grounder = grounder or Grounder(catalog)
        self.adapter = adapter
        self._wishes: WishParser | None = None

    @property
    def model(self) -> RankModel:
        return self.ranker.scorer

    @property
    def num_candidates(self) -> int:
        return self.ranker.config.num_candidates

    @property
    def reasons(self) -> ReasonGenerator:
        """Reasons written by the pipeline's own model."""
        return ReasonGenerator(self.model, self.facts, self.grounder)

    @property
    def has_query_view(self) -> bool:
        """Whether a free-text query reaches the retriever (it has a text view)."""
        views = getattr(self.retriever, "views", {})
        return any(hasattr(v, "score_with_query") for v in views.values())

    # ------------------------------------------------------------------ stages
    def retrieve(self, history: UserSequence, depth: int, query: str | None = None) -> list[Any]:
        """The retriever's top ``depth`` candidates (history excluded), best first."""
        depth = min(depth, len(self.catalog))
        if hasattr(self.retriever, "retrieve"):
            asked = query if self.has_query_view else None
            return self.retriever.retrieve([history], k=depth, queries=[asked])[0]
        from llmrec.retrieval.candidates import Candidate

        top, scores = candidates_from_scores(
            self.retriever.score([history]), [history], self.catalog, depth
        )
        return [
            Candidate(self.catalog.ids[int(i)], float(s))
            for i, s in zip(top[0], scores[0], strict=True)
            if np.isfinite(s)
        ]

    def candidates(
        self,
        history: UserSequence,
        k: int,
        query: str | None = None,
        filters: ItemFilter | None = None,
    ) -> list[Any]:
        """Candidates for a top-``k`` answer: the retriever's best items that pass ``filters``
        (the history never does), at least :attr:`num_candidates` of them when there are."""
        filters = filters or ItemFilter()
        wanted = max(k, self.num_candidates)
        # a narrowing filter may reject most of the list: search the whole catalogue then
        depth = len(self.catalog) if filters.narrows else wanted + len(filters.exclude)
        seen = set(history.item_ids)
        out = []
        for cand in self.retrieve(history, depth, query):
            if cand.item_id in seen or not filters.passes(self.catalog.item(cand.item_id)):
                continue
            out.append(cand)
            if len(out) == wanted:
                break
        return out

    def rank(
        self,
        history: UserSequence,
        cands: Sequence[Any],
        k: int,
        model: RankModel | None = None,
    ) -> list[Recommendation]:
        """The top ``k`` of ``cands`` (best first, as retrieved): the first
        :attr:`num_candidates` ranked by the LLM in one prompt and fused with their retrieval
        rank (:func:`llmrec.ranking.fuse.fuse`); any beyond follow in the retriever's order."""
        if not cands:
            return []
        weight = self.ranker.config.fusion_weight if model is None else model.info.fusion_weight
        model = model or self.model
        head, tail = list(cands[: self.num_candidates]), list(cands[self.num_candidates :])
        (llm,) = item_scores(model, [history], [[c.item_id for c in head]])
        ret = retrieval_order_scores(len(head))
        final = fuse(llm[None, :], ret, weight)[0]
        ret_z = standardise(ret)[0]
        order = np.argsort(-final, kind="stable")
        out = [self._recommendation(head[j], final[j], llm[j], ret_z[j]) for j in order]
        floor = float(final.min())
        for n, cand in enumerate(tail, start=1):
            out.append(self._recommendation(cand, floor - n, float("nan"), float("nan")))
        return out[:k]

    def explain(
        self,
        history: UserSequence,
        recs: Sequence[Recommendation],
        mode: str = "generate",
        model: RankModel | None = None,
    ) -> None:
        """Give each recommendation its reason: generated and grounded (template fallback), or
        the template reason built from facts."""
        if mode not in REASON_MODES:
            raise ValueError(f"reasons must be one of {REASON_MODES}, got {mode!r}")
        if mode == "none" or not recs:
            return
        writer = ReasonGenerator(model or self.model, self.facts, self.grounder)
        ids = [r.item_id for r in recs]
        texts = (
            writer.generate(history, ids) if mode == "generate" else writer.template(history, ids)
        )
        for rec, reason in zip(recs, texts, strict=True):
            rec.reason = reason

    def recommend(
        self,
        history: UserSequence,
        k: int = 5,
        query: str | None = None,
        reasons: str = "generate",
        model: RankModel | None = None,
        filters: ItemFilter | None = None,
    ) -> list[Recommendation]:
        """The top ``k`` items (:meth:`answer` without what was understood)."""
        return self.answer(history, k, query, reasons, model, filters).items

    def answer(
        self,
        history: UserSequence,
        k: int = 5,
        query: str | None = None,
        reasons: str = "generate",
        model: RankModel | None = None,
        filters: ItemFilter | None = None,
    ) -> Answer:
        """The top ``k`` items for ``history`` and the wish in ``query``.

        A wish leads: its hard constraints (:class:`~llmrec.ranking.wish.Wish`) join
        ``filters``, so candidates come from the whole catalogue filtered by them, ordered by the
        retriever with the wish's soft query, then by the LLM; items it names ("like X") join
        the history. If no item satisfies them all, the wish's constraints are dropped one at a
        time (years, categories, exclusions) until one does, and the answer says which were
        (``filters`` themselves are never relaxed). Without a query this is exactly the ranking
        of history and ``filters`` alone."""
        if reasons not in REASON_MODES:
            raise ValueError(f"reasons must be one of {REASON_MODES}, got {reasons!r}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        filters = filters or ItemFilter()
        read = self.understand(history, query, filters)
        wish, applied, relaxed = read.wish, read.applied, read.relaxed
        history = read.history or history
        if wish is not None:
            if wish.changed_query:
                query = wish.query
            if relaxed:
                logger.info("wish %r: no item satisfies it; dropped %s", wish.text, relaxed)
        cands = self.candidates(history, k, query, filters.with_wish(applied))
        recs = self.rank(history, cands, k, model)
        self.explain(history, recs, reasons, model)
        return Answer(recs, wish, applied, relaxed, history)

    def understand(
        self, history: UserSequence, query: str | None, filters: ItemFilter | None = None
    ) -> Answer:
        """What :meth:`answer` reads of ``query`` before it ranks anything: the wish, its
        constraints that apply with ``filters`` (loosened until some item outside the history
        passes), the ones dropped, and ``history`` with the wish's "like X" items; no items.
        Without a query the wish is ``None``."""
        wish = self.wishes.parse(query) if query and query.strip() else None
        if wish is None:
            return Answer([], None, None, (), history)
        history = with_items(history, wish.like)
        applied, relaxed = self._satisfiable(history, filters or ItemFilter(), wish)
        return Answer([], wish, applied, relaxed, history)

    @property
    def wishes(self) -> WishParser:
        """The wish reader for this catalogue (built on first use)."""
        if self._wishes is None:
            self._wishes = WishParser(self.catalog)
        return self._wishes

    def _satisfiable(
        self, history: UserSequence, filters: ItemFilter, wish: Wish
    ) -> tuple[Wish, tuple[str, ...]]:
        """``wish`` loosened until some item outside the history passes it with ``filters``:
        (the wish applied, the constraints dropped)."""
        seen = set(history.item_ids)

        def any_passes(w: Wish) -> bool:
            f = filters.with_wish(w)
            return any(i.item_id not in seen and f.passes(i) for i in self.catalog)

        if any_passes(wish):
            return wish, ()
        dropped: list[str] = []
        for said, looser in relaxations(wish):
            dropped.append(said)
            if any_passes(looser):
                return looser, tuple(dropped)
        return looser if dropped else wish, tuple(dropped)

    def _recommendation(self, cand: Any, score: float, llm: float, ret: float) -> Recommendation:
        item = self.catalog.item(cand.item_id)
        return Recommendation(
            item_id=cand.item_id,
            title=item.title,
            year=item.year,
            score=float(score),
            llm_score=float(llm),
            retrieval_score=float(ret),
            views={
                name: {"rank": ev.rank + 1, "score": round(float(ev.score), 6)}
                for name, ev in getattr(cand, "views", {}).items()
            },
            categories=tuple(item.categories),
        )


def recommend(
    pipeline: RecPipeline,
    history: UserSequence | Sequence[str],
    k: int = 5,
    *,
    query: str | None = None,
    reasons: str = "generate",
) -> list[Recommendation]:
    """The top ``k`` items for ``history``: a user's sequence (``dataset.sequence(user_id)``) or
    catalogue item ids, oldest first (``llmrec.recommend``, for notebooks; the same as
    :meth:`RecPipeline.recommend`)."""
    if isinstance(history, str):
        raise TypeError("history is a UserSequence or a list of item ids, not one string")
    if not isinstance(history, UserSequence):
        ids = [str(i) for i in history]
        unknown = [i for i in ids if i not in pipeline.catalog]
        if not ids or unknown:
            raise ValueError(
                f"history has items not in the catalogue: {unknown[:5]}"
                if unknown
                else "history is empty"
            )
        history = UserSequence("adhoc", tuple(ids), tuple(float(n) for n in range(len(ids))))
    return pipeline.recommend(history, k, query, reasons)


def load_pipeline(
    retriever_dir: str | os.PathLike[str],
    dataset: Any,
    adapter_dir: str | os.PathLike[str] | None = None,
    base_model: str | None = None,
    fusion_weight: float | None = None,
    num_candidates: int = 20,
    prompt: PromptConfig | None = None,
    device: str = "auto",
    batch_size: int = 8,
    backend: str = "transformers",
    dtype: str = "auto",
    vllm: dict[str, Any] | None = None,
) -> RecPipeline:
    """Assemble the pipeline from saved parts on a model backend (``transformers`` or ``vllm``).

    Without an adapter the base model ranks zero-shot, with ``prompt`` settings (default
    :class:`PromptConfig`); an adapter ranks with the prompt settings it was trained with and,
    unless ``fusion_weight`` is given, at the weight saved in its folder."""
    from llmrec.ranking.adapter_folder import open_adapter_folder
    from llmrec.ranking.backends import DEFAULT_BASE_MODEL, make_backend
    from llmrec.ranking.backends.nextitem import is_nextitem_folder
    from llmrec.retrieval.saved import load_retriever

    if adapter_dir is not None and prompt is not None:
        raise ValueError("an adapter ranks with the prompt settings it was trained with")
    catalog = dataset.catalog
    retriever = load_retriever(retriever_dir, catalog)
    adapters = {} if adapter_dir is None else {ADAPTER_NAME: str(adapter_dir)}
    given = base_model is not None
    if adapter_dir is not None and is_nextitem_folder(adapter_dir):
        if prompt is not None:
            raise ValueError("a next-item model reads no prompt: prompt settings do not apply")
    elif adapter_dir is not None and not given:  # the base its record names (one vLLM engine)
        base_model = open_adapter_folder(adapter_dir, catalog).base_model
    config = BackendConfig(
        backend=backend,
        base_model=base_model or DEFAULT_BASE_MODEL,
        # a base model given here wins over the one an adapter's record names
        adapters_on_base_model=given,
        base_name=BASE_NAME,
        load_base=adapter_dir is None,
        adapters=adapters,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        vllm=vllm or {},
        base_prompt=prompt or PromptConfig(),
    )
    model = make_backend(config, dataset).models()[ADAPTER_NAME if adapters else BASE_NAME]
    weight = model.info.fusion_weight if fusion_weight is None else fusion_weight
    ranker = LLMRanker(retriever, model, RankerConfig(num_candidates, float(weight)))
    return RecPipeline(
        retriever, ranker, catalog, adapter=str(adapter_dir) if adapter_dir else None
    )


#: The names a pipeline gives its model inside the backend.
ADAPTER_NAME = "adapter"
BASE_NAME = "base"
