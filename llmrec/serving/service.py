"""The serving logic, apart from HTTP: recommend, chat and the ``recommend`` tool.

:class:`RecService` turns requests into calls of the ranking pipeline
(:class:`~llmrec.ranking.recommend.RecPipeline`, the same one ``llmrec recommend`` and
``llmrec evaluate`` run) with the requested model routed through the
:class:`~llmrec.serving.batching.Batcher`, and keeps what is the service's own: resolving titles
and conversations, limits, the tool protocol and the response shapes. Its methods are synchronous
and run in the web server's worker threads; every model call goes through the batcher with the
request's deadline.

Whatever text arrives (titles, wishes, a whole conversation, a tool result) is only looked up in
the catalogue or embedded as a retrieval query: it never becomes an instruction, and every item
named in a reply is a catalogue item chosen by the ranking (its title is the catalogue's).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmrec.data.dataset import RecDataset
from llmrec.data.records import UserSequence
from llmrec.ranking.pipeline import LLMRanker, RankerConfig
from llmrec.ranking.recommend import Answer, ItemFilter, Recommendation, RecPipeline
from llmrec.ranking.wish import titles_of
from llmrec.serving.batching import Batcher, RoutedModel
from llmrec.serving.chat import (
    MentionFinder,
    Refinement,
    listed_items,
    read_refinement,
    wish_clauses,
    without_mentions,
)
from llmrec.serving.config import ServeConfig
from llmrec.serving.protocol import (
    ChatMessage,
    ChatRequest,
    Filters,
    FunctionDef,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    ResolvedItem,
    ToolCall,
    ToolDef,
    Understood,
    ViewEvidenceOut,
)

logger = logging.getLogger(__name__)

TOOL_NAME = "recommend"


class ServiceError(Exception):
    """A request the service refuses: carries the HTTP status and OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code


def recommend_tool() -> ToolDef:
    """The ``recommend`` function as an OpenAI tool definition."""
    return ToolDef(
        function=FunctionDef(
            name=TOOL_NAME,
            description=(
                "Recommend catalogue items (movies) for a customer from what they liked and what "
                "they ask for. Returns ranked items with scores and short reasons."
            ),
            parameters={
                "type": "object",
                "properties": {
                    "user_id": {"type": "string", "description": "Known customer id, if any."},
                    "history": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Titles or item ids the customer liked, oldest first.",
                    },
                    "query": {
                        "type": "string",
                        "description": "What the customer asks for, in their words.",
                    },
                    "k": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
                    "categories": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Only items in one of these categories (genres).",
                    },
                    "exclude_categories": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Leave out items in any of these categories.",
                    },
                    "year_min": {"type": "integer"},
                    "year_max": {"type": "integer"},
                    "exclude_items": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Item ids not to recommend (e.g. already shown).",
                    },
                },
                "additionalProperties": False,
            },
        )
    )


def tool_arguments_to_request(arguments: str, model: str | None) -> RecommendRequest:
    """A tool call's JSON arguments as a :class:`RecommendRequest` (validated)."""
    try:
        raw = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        raise ServiceError(400, f"tool arguments are not JSON: {exc}", param="arguments") from None
    if not isinstance(raw, dict):
        raise ServiceError(400, "tool arguments must be a JSON object", param="arguments")
    # the tool's flat filters are read by RecommendRequest itself (a bot may post them as is)
    return RecommendRequest.model_validate({**raw, "model": model})


@dataclass
class ChatResult:
    content: str | None
    model: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    recommendation: RecommendResponse | None = None

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"


class RecService:
    def __init__(
        self,
        config: ServeConfig,
        dataset: RecDataset,
        retriever: Any,
        batcher: Batcher,
    ) -> None:
        self.config = config
        self.dataset = dataset
        self.catalog = dataset.catalog
        self.retriever = retriever
        self.batcher = batcher
        self.users = {s.user_id: s for s in dataset.sequences()}
        self.mentions = MentionFinder(self.catalog)
        default = batcher.models[self.model_name(None)]
        ranker = LLMRanker(
            retriever, default, RankerConfig(config.num_candidates, default.info.fusion_weight)
        )
        self.pipeline = RecPipeline(retriever, ranker, self.catalog)
        self.grounder = self.pipeline.grounder
        self.created = int(time.time())
        self.has_query_view = self.pipeline.has_query_view

    # ------------------------------------------------------------------ models
    @property
    def model_names(self) -> list[str]:
        return list(self.batcher.models)

    def model_name(self, requested: str | None) -> str:
        name = requested or self.config.default
        if name not in self.batcher.models:
            raise ServiceError(
                404,
                f"model {name!r} is not served; GET /v1/models lists {self.model_names}",
                param="model",
                code="model_not_found",
            )
        return name

    # ------------------------------------------------------------------ recommend
    def resolve_history(
        self, user_id: str | None, entries: Sequence[str | int] | None
    ) -> tuple[UserSequence, list[ResolvedItem], list[str]]:
        resolved: list[ResolvedItem] = []
        unresolved: list[str] = []
        ids: list[str] = []
        base = None
        if user_id is not None:
            base = self.users.get(user_id)
            if base is None:
                raise ServiceError(
                    404, f"user {user_id!r} is not in the served data", "invalid_request_error",
                    param="user_id", code="user_not_found",
                )  # fmt: skip
        for entry in entries or []:
            text = str(entry).strip()
            if text in self.catalog:
                ids.append(text)
                item = self.catalog.item(text)
                resolved.append(
                    ResolvedItem(input=text, item_id=text, title=item.title, match_score=1.0)
                )
                continue
            match = self.mentions.titles.match(text)
            if match is None:
                unresolved.append(text[:300])
                continue
            ids.append(match.item_id)
            resolved.append(
                ResolvedItem(
                    input=text, item_id=match.item_id, title=match.title, match_score=match.score
                )
            )
        limit = self.config.limits.max_history
        if base is not None and not ids:
            # a known user as the data holds them (ratings and all), as `llmrec recommend --user`
            # and evaluation see them: max_history limits what a request adds, not the data
            history = base
        elif base is not None:
            item_ids = (*base.item_ids, *ids)[-limit:]
            history = UserSequence(
                base.user_id, item_ids, tuple(float(i) for i in range(len(item_ids)))
            )
        else:
            ids = list(dict.fromkeys(ids))[-limit:]
            history = UserSequence("adhoc", tuple(ids), tuple(float(i) for i in range(len(ids))))
        return history, resolved, unresolved

    def recommend(
        self, request: RecommendRequest, deadline: float | None = None
    ) -> RecommendResponse:
        limits = self.config.limits
        if request.k > limits.max_k:
            raise ServiceError(400, f"k must be at most {limits.max_k}, got {request.k}", param="k")
        model = self.model_name(request.model)
        history, resolved, unresolved = self.resolve_history(request.user_id, request.history)
        query = (request.query or "").strip() or None
        routed = RoutedModel(self.batcher, model, deadline)
        answer = self.pipeline.answer(
            history,
            k=request.k,
            query=query,
            reasons=self.config.reasons if request.explain else "none",
            model=routed,
            filters=item_filter(request.filters),
        )
        notes = []
        soft = answer.wish.query if answer.wish and answer.wish.changed_query else query
        if soft and not self.has_query_view:
            kind = "query" if answer.wish is None or not answer.wish.changed_query else "free text"
            notes.append(f"{kind} ignored: the served retriever has no text view")
        items = [recommended_item(r) for r in answer.items]
        return RecommendResponse(
            model=model,
            user_id=request.user_id,
            query=query,
            resolved=resolved,
            unresolved=unresolved,
            items=items,
            notes=notes,
            understood=self.understood(answer),
        )

    def understood(self, answer: Answer) -> Understood | None:
        """What the pipeline read from the query, in the response's shape."""
        wish, applied = answer.wish, answer.applied
        if wish is None or applied is None:
            return None
        return Understood(
            categories=[list(g) for g in applied.categories],
            exclude_categories=list(applied.exclude_categories),
            year_min=applied.year_min,
            year_max=applied.year_max,
            like=titles_of(self.catalog, wish.like),
            query=wish.query if wish.changed_query else wish.text,
            phrases=list(wish.understood),
            ignored=list(wish.ignored),
            relaxed=list(answer.relaxed),
        )

    # ------------------------------------------------------------------ chat
    def chat(self, request: ChatRequest, deadline: float | None = None) -> ChatResult:
        limits = self.config.limits
        if len(request.messages) > limits.max_messages:
            raise ServiceError(
                400, f"at most {limits.max_messages} messages, got {len(request.messages)}",
                param="messages",
            )  # fmt: skip
        for i, message in enumerate(request.messages):
            if len(message.text()) > limits.max_message_chars:
                raise ServiceError(
                    400, f"message {i} is over {limits.max_message_chars} characters",
                    param=f"messages.{i}.content",
                )  # fmt: skip
        model = self.model_name(request.model)
        offered = any(t.function.name == TOOL_NAME for t in request.tools or [])
        choice = request.tool_choice
        if choice is not None and not isinstance(choice, str):
            if choice.function.name != TOOL_NAME:
                raise ServiceError(
                    400, f"tool_choice names {choice.function.name!r}; only {TOOL_NAME!r} exists",
                    param="tool_choice",
                )  # fmt: skip
            if not offered:
                raise ServiceError(
                    400, f"tool_choice names {TOOL_NAME!r} but tools does not offer it",
                    param="tool_choice",
                )  # fmt: skip
        if choice == "required" and not offered:
            raise ServiceError(
                400, f"tool_choice is required but tools does not offer {TOOL_NAME!r}",
                param="tool_choice",
            )  # fmt: skip
        last = request.messages[-1]
        if last.role == "tool":
            return self._answer_tool_result(request, model, deadline)
        args, mentions, unmatched, refined = self._read_conversation(request)
        use_tool = offered and choice != "none"
        forced = choice == "required" or (choice is not None and not isinstance(choice, str))
        if use_tool and (forced or args["history"] or args.get("query") or refined):
            call = ToolCall(
                id=f"call_{uuid.uuid4().hex[:24]}",
                function={"name": TOOL_NAME, "arguments": json.dumps(args)},  # type: ignore[arg-type]
            )
            return ChatResult(content=None, model=model, tool_calls=[call])
        options = request.llmrec
        filters = options.filters
        if refined is not None:
            filters = refined_filters(filters, refined, self._categories(refined.like))
        liked = refined.like if refined is not None else []
        rec_request = RecommendRequest(
            user_id=options.user_id,
            history=[*[m.item_id for m in mentions], *liked],
            query=args.get("query"),
            k=options.k or 5,
            explain=options.explain,
            filters=filters,
            model=model,
        )
        result = self.recommend(rec_request, deadline)
        # show what the user wrote, not the ids the request was made of
        result.resolved = [
            ResolvedItem(input=m.text, item_id=m.item_id, title=m.title, match_score=m.score)
            for m in mentions
        ]
        result.unresolved = list(unmatched)
        if refined is not None and refined.said:
            result.understood = result.understood or Understood()
            result.understood.refined = list(refined.said)
        return ChatResult(content=render_reply(result), model=model, recommendation=result)

    def _read_conversation(
        self, request: ChatRequest
    ) -> tuple[dict[str, Any], list[Any], list[str], Refinement | None]:
        """Tool-call arguments from the conversation, the mentions themselves, quoted texts that
        matched nothing and how the last message refines the previous answer (``None`` when it
        does not).

        Every title the user mentioned counts (oldest first); the wish is the last user
        message's, carried on from earlier messages while each refines the answer before it
        ("something else", "not that one", "older", "more like the second", "without horror").
        Of the other roles, only the numbered items of assistant replies are read (looked up
        as catalogue titles, for "the second" to mean something): a system or assistant
        message cannot add items or change the query."""
        mentions: list[Any] = []
        unmatched: list[str] = []
        query: str | None = None
        refined: Refinement | None = None
        shown: list[str] = []
        for message in request.messages:
            if message.role == "assistant":
                shown = listed_items(message.text(), self.mentions.titles) or shown
                continue
            if message.role != "user":
                continue
            text = message.text()
            found, missing = self.mentions.find(text)
            mentions.extend(found)
            unmatched.extend(missing)
            rest = without_mentions(text, found)
            step = read_refinement(rest, shown, self._years(shown)) if shown else None
            if step is not None and (step.refines or self._only_excludes(step.text, found)):
                # "older"/"newer" become years of the wish, which the pipeline can relax
                wish = ", ".join(w for w in (wish_clauses(step.text), years_phrase(step)) if w)
                query = ", ".join(q for q in (query, wish) if q) or None
                if refined is not None:
                    step.exclude = list(dict.fromkeys([*refined.exclude, *step.exclude]))
                    step.like = list(dict.fromkeys([*refined.like, *step.like]))
                    step.said = [*refined.said, *step.said]
                refined = step
            else:
                query, refined = wish_clauses(rest), None
        unique = list({m.item_id: m for m in mentions}.values())
        history = [self._display(m.item_id) for m in unique]
        if refined is not None:
            history += [self._display(i) for i in refined.like if i not in history]
        args: dict[str, Any] = {"history": history}
        parsed = self.pipeline.wishes.parse(query) if query else None
        if parsed is not None and (parsed.changed_query or self.has_query_view):
            args["query"] = query
            # the constraints as an answer applies them: loosened when nothing fits them all
            # (the call's own filters are never loosened; its query's are, visibly)
            ids = [m.item_id for m in unique] + (refined.like if refined is not None else [])
            seen = UserSequence("adhoc", tuple(ids), tuple(float(i) for i in range(len(ids))))
            skip = frozenset(refined.exclude) if refined is not None else frozenset()
            read = self.pipeline.understand(seen, query, ItemFilter(exclude=skip))
            args.update(tool_constraints(read.applied or parsed))
        if refined is not None:
            if refined.exclude:
                args["exclude_items"] = list(refined.exclude)
            if refined.like and "categories" not in args:
                args["categories"] = self._categories(refined.like)
        if request.llmrec.k:
            args["k"] = request.llmrec.k
        return args, unique, unmatched, refined

    def _categories(self, item_ids: Sequence[str]) -> list[str]:
        """The categories of ``item_ids`` ("more like the second": one of its genres)."""
        return list(dict.fromkeys(c for i in item_ids for c in self.catalog.item(i).categories))

    def _years(self, item_ids: Sequence[str]) -> list[int]:
        return [y for i in item_ids if (y := self.catalog.item(i).year) is not None]

    def _only_excludes(self, text: str, found: Sequence[Any]) -> bool:
        """Whether a message only takes something away ("without horror"): it then refines
        the previous answer instead of starting a new wish."""
        if found or not text.strip():
            return False
        wish = self.pipeline.wishes.parse(text)
        return bool(wish.exclude_categories) and not wish.categories and not wish.like

    def _display(self, item_id: str) -> str:
        item = self.catalog.item(item_id)
        return f"{item.title} ({item.year})" if item.year else item.title

    def _answer_tool_result(
        self, request: ChatRequest, model: str, deadline: float | None
    ) -> ChatResult:
        """The final answer after the client ran the tool: the items of the tool result that are
        in the catalogue, with catalogue titles; anything else in the result is ignored."""
        last = request.messages[-1]
        call = _find_call(request.messages, last.tool_call_id)
        try:
            payload = json.loads(last.text() or "{}")
        except json.JSONDecodeError:
            payload = None
        items = payload.get("items") if isinstance(payload, dict) else payload
        if not isinstance(items, list):
            raise ServiceError(
                400, "the tool message must hold the recommend result (JSON with 'items')",
                param=f"messages.{len(request.messages) - 1}.content",
            )  # fmt: skip
        history = UserSequence("adhoc", (), ())
        resolved: list[ResolvedItem] = []
        user_id = query = None
        understood: Understood | None = None
        req: RecommendRequest | None = None
        if call is not None:
            try:
                req = tool_arguments_to_request(call.function.arguments, model)
                history, resolved, _ = self.resolve_history(req.user_id, req.history)
                user_id, query = req.user_id, req.query
            except (ServiceError, ValueError):
                req = None
            if req is not None:
                # what /v1/recommend read of the call's arguments, said as a direct answer says it
                read = self.pipeline.understand(history, query, item_filter(req.filters))
                understood = self.understood(read)
                history = read.history or history
                refined = self._read_conversation(request)[3]
                # how the conversation refined the previous answer, when the call did so
                if refined is not None and refined.said:
                    if set(refined.exclude) <= set(req.filters.exclude_items):
                        understood = understood or Understood()
                        understood.refined = list(refined.said)
        shown: list[RecommendedItem] = []
        for entry in items[: self.config.limits.max_k]:
            item_id = str(entry.get("item_id", "")) if isinstance(entry, dict) else str(entry)
            if item_id not in self.catalog:
                continue
            item = self.catalog.item(item_id)
            reason = entry.get("reason") if isinstance(entry, dict) else None
            ok = isinstance(reason, str) and self.grounder.check(reason, history, item_id)
            shown.append(
                RecommendedItem(
                    item_id=item_id, title=item.title, year=item.year,
                    categories=list(item.categories),
                    score=_number(entry.get("score") if isinstance(entry, dict) else None),
                    llm_score=None, retrieval_score=None, views={},
                    reason=reason[:300] if ok else None,
                    reason_source="llm" if ok else None,
                )
            )  # fmt: skip
        # what the call asked for, as the tool call's arguments said it
        result = RecommendResponse(
            model=model, user_id=user_id, query=query, resolved=resolved, unresolved=[],
            items=shown, understood=understood,
        )  # fmt: skip
        return ChatResult(content=render_reply(result), model=model, recommendation=result)


def tool_constraints(wish: Any) -> dict[str, Any]:
    """A wish's hard constraints as ``recommend`` tool arguments, so that a bot calling the tool
    asks for what was understood. Several category groups ("romantic comedy") are not one
    ``categories`` list (any of); the ``query`` the call also carries is read again then."""
    out: dict[str, Any] = {}
    if len(wish.categories) == 1:
        out["categories"] = list(wish.categories[0])
    if wish.exclude_categories:
        out["exclude_categories"] = list(wish.exclude_categories)
    if wish.year_min is not None:
        out["year_min"] = wish.year_min
    if wish.year_max is not None:
        out["year_max"] = wish.year_max
    return out


def years_phrase(refined: Refinement) -> str | None:
    """A refinement's years as words the wish reader understands ("older" -> "before 1994")."""
    if refined.year_max is not None:
        return f"before {refined.year_max + 1}"
    if refined.year_min is not None:
        return f"after {refined.year_min - 1}"
    return None


def refined_filters(filters: Filters, refined: Refinement, categories: list[str]) -> Filters:
    """The request's filters with a refinement's: its items left out and, for "more like the
    second", one of that item's ``categories`` (unless the request names categories)."""
    exclude = list(dict.fromkeys([*filters.exclude_items, *refined.exclude]))
    update: dict[str, Any] = {"exclude_items": exclude}
    if refined.like and not filters.categories:
        update["categories"] = categories
    return filters.model_copy(update=update)


def item_filter(filters: Filters) -> ItemFilter:
    """The request's filters as the pipeline's :class:`ItemFilter`."""
    return ItemFilter(
        categories=tuple(filters.categories or ()),
        exclude_categories=tuple(filters.exclude_categories or ()),
        year_min=filters.year_min,
        year_max=filters.year_max,
        exclude=frozenset(filters.exclude_items),
    )


def recommended_item(rec: Recommendation) -> RecommendedItem:
    """A pipeline recommendation in the response's shape."""
    return RecommendedItem(
        item_id=rec.item_id,
        title=rec.title,
        year=rec.year,
        categories=list(rec.categories),
        score=round(float(rec.score), 6),
        llm_score=round(float(rec.llm_score), 6) if np.isfinite(rec.llm_score) else None,
        retrieval_score=(
            round(float(rec.retrieval_score), 6) if np.isfinite(rec.retrieval_score) else None
        ),
        views={
            name: ViewEvidenceOut(rank=int(ev["rank"]), score=float(ev["score"]))
            for name, ev in rec.views.items()
        },
        reason=rec.reason.text if rec.reason is not None else None,
        reason_source=rec.reason.source if rec.reason is not None else None,  # type: ignore[arg-type]
    )


def _number(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return 0.0
    return out if np.isfinite(out) else 0.0


def _find_call(messages: Sequence[ChatMessage], call_id: str | None) -> ToolCall | None:
    for message in reversed(messages):
        for call in message.tool_calls or []:
            if call.id == call_id or call_id is None:
                return call
    return None


def render_reply(result: RecommendResponse) -> str:
    """The chat reply: what was understood, then the items (catalogue titles) with reasons."""
    lines = []
    if result.resolved:
        shown = []
        for r in result.resolved:
            note = "" if r.match_score >= 1.0 else f", similarity {r.match_score:.2f}"
            shown.append(f'"{_quote(r.input)}" -> {r.title}{note}')
        lines.append("You mentioned: " + "; ".join(shown) + ".")
    for text in result.unresolved:
        lines.append(f'I could not find "{_quote(text)}" in the catalogue.')
    understood = result.understood
    if understood is not None:
        said = understood_line(understood)
        if said:
            lines.append(f"Understood: {said}.")
        if understood.relaxed:
            lines.append(
                "Nothing in the catalogue fits all of that, so I dropped: "
                + "; ".join(understood.relaxed)
                + "."
            )
        if understood.refined:
            lines.append("Refining the last answer: " + "; ".join(understood.refined) + ".")
        if understood.query:
            lines.append(f'Looking for: "{_quote(understood.query)}".')
    elif result.query:
        lines.append(f'Looking for: "{_quote(result.query)}".')
    if not result.items:
        lines.append("I found nothing in the catalogue that fits; try fewer filters.")
        return "\n".join(lines)
    if not result.resolved and result.user_id is None:
        lines.append("Tell me a few titles you liked for more personal picks. For now:")
    lines.append(f"Here are {len(result.items)} recommendations:")
    for n, item in enumerate(result.items, start=1):
        year = f" ({item.year})" if item.year else ""
        genres = f" [{', '.join(item.categories[:3])}]" if item.categories else ""
        lines.append(f"{n}. {item.title}{year}{genres}")
        if item.reason:
            lines.append(f"   Why: {item.reason}")
    return "\n".join(lines)


def understood_line(understood: Understood) -> str:
    """The constraints applied, in a few words ("Horror or Thriller; years 1990-1999")."""
    parts = [" or ".join(group) for group in understood.categories]
    if understood.exclude_categories:
        parts.append("not " + " or ".join(understood.exclude_categories))
    low, high = understood.year_min, understood.year_max
    if low is not None and high is not None:
        parts.append(f"years {low}-{high}" if low != high else f"year {low}")
    elif low is not None:
        parts.append(f"from {low}")
    elif high is not None:
        parts.append(f"up to {high}")
    if understood.like:
        parts.append("like " + ", ".join(understood.like))
    return "; ".join(parts)


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split()).replace('"', "'")
    return text if len(text) <= limit else text[: limit - 3] + "..."
