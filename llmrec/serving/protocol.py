"""Request and response schemas of the HTTP API (pydantic), shaped like OpenAI's where they
mirror it.

``/v1/recommend`` is strict (unknown fields are errors); the OpenAI-compatible chat request accepts
and ignores fields llmrec does not use (clients send many), but validates the ones it reads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,64}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- errors
class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error envelope."""

    error: ErrorBody


# --------------------------------------------------------------------------- recommend
class Filters(Strict):
    exclude_seen: Literal[True] = Field(
        True,
        description="Items in the user's history are always left out: the retrieval views never "
        "propose them (false is refused).",
    )
    categories: list[str] | None = Field(
        None, max_length=32, description="Keep only items in at least one of these categories."
    )
    exclude_categories: list[str] | None = Field(
        None, max_length=32, description="Leave out items in any of these categories."
    )
    year_min: int | None = Field(None, ge=0, le=3000)
    year_max: int | None = Field(None, ge=0, le=3000)
    exclude_items: list[str] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _years(self) -> Filters:
        if (
            self.year_min is not None
            and self.year_max is not None
            and self.year_min > self.year_max
        ):
            raise ValueError("year_min must not exceed year_max")
        return self


#: The ``recommend`` tool's arguments that are filters (flat in the tool, ``filters`` here).
TOOL_FILTERS = ("categories", "exclude_categories", "year_min", "year_max", "exclude_items")


class RecommendRequest(Strict):
    """Who to recommend for (a known user id, or an ad-hoc history of item ids or titles), what
    they ask for, and how many."""

    user_id: str | None = Field(None, pattern=ID_PATTERN)
    history: list[str | int] | None = Field(
        None,
        max_length=1000,
        description="Item ids or titles, oldest first; titles are matched to the catalogue.",
    )
    query: str | None = Field(None, max_length=1000, description="A free-text wish.")
    k: int = Field(5, ge=1, description="How many items (at most the server's max_k).")
    explain: bool = Field(True, description="Add a grounded reason to each item.")
    filters: Filters = Field(default_factory=Filters)
    model: str | None = Field(None, max_length=128, description="Served model (adapter) name.")

    @model_validator(mode="before")
    @classmethod
    def _tool_arguments(cls, data: Any) -> Any:
        """The ``recommend`` tool's arguments are a valid body: its filters (``categories``,
        ``exclude_categories``, ``year_min``, ``year_max``) may sit at the top level."""
        if not isinstance(data, dict) or not set(TOOL_FILTERS) & set(data):
            return data
        data = dict(data)
        filters = data.get("filters") or {}
        if not isinstance(filters, dict):
            return data
        filters = dict(filters)
        for key in TOOL_FILTERS:
            if key in data:
                if key in filters:
                    raise ValueError(f"{key} is given twice: at the top level and in filters")
                filters[key] = data.pop(key)
        data["filters"] = filters
        return data

    @field_validator("history")
    @classmethod
    def _entries(cls, value: list[str | int] | None) -> list[str | int] | None:
        for entry in value or []:
            if isinstance(entry, str) and not 0 < len(entry) <= 300:
                raise ValueError("history entries are 1-300 characters")
        return value


class ResolvedItem(BaseModel):
    input: str
    item_id: str
    title: str
    match_score: float = Field(description="1.0: exact id or title; below: fuzzy title match.")


class ViewEvidenceOut(BaseModel):
    rank: int
    score: float


class RecommendedItem(BaseModel):
    item_id: str
    title: str
    year: int | None
    categories: list[str]
    score: float
    llm_score: float | None = Field(
        description="The LLM's log-probability; null past the LLM's candidate list (k > "
        "num_candidates), where the retriever's order continues."
    )
    retrieval_score: float | None
    views: dict[str, ViewEvidenceOut] = Field(
        description="The retrieval views that proposed the item, with their 1-based rank."
    )
    reason: str | None = None
    reason_source: Literal["llm", "template"] | None = None


class Understood(BaseModel):
    """What the service read from the query: the constraints it applied to the items, the soft
    rest it searched with, and what it ignored or had to drop."""

    categories: list[list[str]] = Field(
        default_factory=list,
        description="Each inner list: every item has at least one of these categories.",
    )
    exclude_categories: list[str] = Field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None
    like: list[str] = Field(
        default_factory=list, description="Catalogue titles the query named ('like X'): they "
        "joined the history.",
    )  # fmt: skip
    query: str | None = Field(None, description="The soft rest, searched by the text view.")
    phrases: list[str] = Field(
        default_factory=list, description="How each part of the query was read."
    )
    ignored: list[str] = Field(default_factory=list, description="Words that carried no wish.")
    relaxed: list[str] = Field(
        default_factory=list,
        description="Constraints dropped because no catalogue item satisfied them all.",
    )
    refined: list[str] = Field(
        default_factory=list,
        description="How the last chat message refined the previous answer ('something else', "
        "'older', 'more like the second').",
    )


class RecommendResponse(BaseModel):
    object: Literal["recommendation"] = "recommendation"
    model: str
    user_id: str | None
    query: str | None
    resolved: list[ResolvedItem]
    unresolved: list[str]
    notes: list[str] = Field(default_factory=list, description="What the service did not do.")
    understood: Understood | None = Field(
        None, description="What was read from the query (null without a query)."
    )
    items: list[RecommendedItem]


# --------------------------------------------------------------------------- models, tools
class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llmrec"
    root: str
    parent: str | None = None
    method: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class FunctionDef(BaseModel):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDef


class ToolList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ToolDef]


# --------------------------------------------------------------------------- chat
class FunctionCall(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if p.type == "text" and p.text)


class ToolChoiceFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"] = "function"
    function: ToolChoiceFunction


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class LLMRecOptions(Strict):
    """llmrec's extension of the chat request (``extra_body={"llmrec": {...}}``)."""

    k: int | None = Field(None, ge=1)
    user_id: str | None = Field(None, pattern=ID_PATTERN)
    explain: bool = True
    filters: Filters = Field(default_factory=Filters)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = Field(None, max_length=128)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    n: int = Field(1, ge=1, le=1, description="Only one choice is produced.")
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    user: str | None = None
    llmrec: LLMRecOptions = Field(default_factory=LLMRecOptions)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    llmrec: RecommendResponse | None = Field(
        None, description="The structured recommendation behind the reply, when there is one."
    )
