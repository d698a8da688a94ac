"""The HTTP layer: FastAPI routes over :class:`~llmrec.serving.service.RecService`.

Routes: ``POST /v1/chat/completions`` (OpenAI-compatible, streaming), ``POST /v1/recommend``,
``GET /v1/models``, ``GET /v1/tools``, ``GET /health``, ``GET /ready``, ``GET /`` (web chat page)
and FastAPI's ``/openapi.json`` and ``/docs``. Errors use OpenAI's envelope
``{"error": {"message", "type", "param", "code"}}`` with the matching status code.

Robustness: optional bearer keys; a body-size limit; at most ``max_concurrency`` requests in
flight (more get 429 at once); a per-request deadline (504 when it passes); the model queue is
bounded (429 when full); on shutdown uvicorn stops accepting and in-flight requests finish before
the model worker stops.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmrec.serving.batching import DeadlineExceeded, Overloaded
from llmrec.serving.protocol import (
    AssistantMessage,
    ChatRequest,
    ChatResponse,
    Choice,
    ErrorResponse,
    ModelCard,
    ModelList,
    RecommendRequest,
    RecommendResponse,
    ToolList,
    Usage,
)
from llmrec.serving.service import RecService, ServiceError, recommend_tool

logger = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Invalid request",
        401: "Missing or wrong API key",
        404: "Unknown model or user",
        413: "Request body too large",
        429: "Too many requests in flight or queued",
        504: "The request timed out",
    }.items()
}


def error_response(
    status: int, message: str, type_: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return JSONResponse(body, status_code=status, headers=headers)


class _InFlight:
    """Counts requests in flight; refuses the ones over the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.count >= self.limit:
                return False
            self.count += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.count -= 1


def create_app(service: RecService) -> FastAPI:
    config = service.config
    limits = config.limits
    in_flight = _InFlight(limits.max_concurrency)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        service.batcher.start()
        logger.info("serving %s", ", ".join(service.model_names))
        yield
        # uvicorn has already let in-flight requests finish; drain the model queue, then stop
        service.batcher.stop()

    app = FastAPI(
        title="llmrec",
        version="0.1.0",
        description=(
            "LLM-based recommendation: an OpenAI-compatible chat endpoint, a `recommend` "
            "endpoint and tool, explanations grounded in the catalogue."
        ),
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.in_flight = in_flight

    # ------------------------------------------------------------------ errors
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.type, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        message = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in errors[:5]
        )
        return error_response(400, message or "invalid request", "invalid_request_error",
                              ".".join(loc) or None, "invalid_value")  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(exc.status_code, str(exc.detail), type_)

    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        return error_response(429, str(exc), "rate_limit_error", code="overloaded")

    @app.exception_handler(DeadlineExceeded)
    async def _timeout(request: Request, exc: DeadlineExceeded) -> JSONResponse:
        return error_response(504, str(exc), "timeout_error", code="timeout")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        return error_response(500, "internal error (logged on the server)", "server_error")

    # ------------------------------------------------------------------ limits and auth
    @app.middleware("http")
    async def _limits(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return error_response(400, "bad Content-Length", "invalid_request_error")
            if int(length) > limits.max_body_bytes:
                return error_response(
                    413, f"request body over {limits.max_body_bytes} bytes",
                    "invalid_request_error", code="request_too_large",
                )  # fmt: skip
        if request.method == "POST":
            body = await request.body()
            if len(body) > limits.max_body_bytes:
                return error_response(
                    413, f"request body over {limits.max_body_bytes} bytes",
                    "invalid_request_error", code="request_too_large",
                )  # fmt: skip
        if not request.url.path.startswith("/v1/"):
            return await call_next(request)
        if not in_flight.enter():
            return error_response(
                429, f"{limits.max_concurrency} requests are already in flight; retry shortly",
                "rate_limit_error", code="too_many_requests",
            )  # fmt: skip
        try:
            return await call_next(request)
        finally:
            in_flight.leave()

    keys = config.keys()

    def authorised(request: Request) -> None:
        if not keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in keys:
            raise ServiceError(
                401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                "authentication_error", code="invalid_api_key",
            )  # fmt: skip

    def deadline() -> float:
        return time.monotonic() + limits.timeout_s

    # ------------------------------------------------------------------ routes
    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"], responses={503: {"model": ErrorResponse}})
    def ready() -> Any:
        """Readiness: the models are loaded and the model worker runs."""
        if not service.batcher.running:
            return error_response(503, "the model worker is not running", "server_error")
        return {"status": "ready", "models": service.model_names, "backend": config.backend}

    @app.get("/v1/models", response_model=ModelList, tags=["openai"], responses=ERRORS)
    def models(_: None = Depends(authorised)) -> ModelList:
        """The base model and every loaded adapter; a request's ``model`` picks one."""
        cards = []
        for name, served in service.batcher.models.items():
            info = served.info
            cards.append(
                ModelCard(
                    id=name,
                    created=service.created,
                    root=info.base_model,
                    parent=None if info.method is None else config.base_name,
                    method=info.method,
                )
            )
        return ModelList(data=cards)

    @app.get("/v1/tools", response_model=ToolList, tags=["tools"], responses=ERRORS)
    def tools(_: None = Depends(authorised)) -> ToolList:
        """The ``recommend`` function as an OpenAI tool definition, for assistants to offer."""
        return ToolList(data=[recommend_tool()])

    @app.post(
        "/v1/recommend", response_model=RecommendResponse, tags=["recommend"], responses=ERRORS
    )
    def recommend(body: RecommendRequest, _: None = Depends(authorised)) -> RecommendResponse:
        """Ranked catalogue items for a user id or an ad-hoc history, with reasons and the
        retrieval views that proposed each item."""
        return service.recommend(body, deadline())

    @app.post(
        "/v1/chat/completions",
        response_model=ChatResponse,
        tags=["openai"],
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}},
    )
    def chat(body: ChatRequest, _: None = Depends(authorised)) -> Any:
        """OpenAI-compatible chat: mentions of liked titles and a wish in, recommendations with
        reasons out (or a ``recommend`` tool call when the request offers the tool)."""
        result = service.chat(body, deadline())
        model = result.model
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        # usage counts whitespace-separated words: the reply is a template, not model tokens
        asked = sum(len(m.text().split()) for m in body.messages)
        answered = len((result.content or "").split())
        usage = Usage(
            prompt_tokens=asked, completion_tokens=answered, total_tokens=asked + answered
        )
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _sse(completion_id, created, model, result, usage if include_usage else None),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        message = AssistantMessage(content=result.content, tool_calls=result.tool_calls or None)
        return ChatResponse(
            id=completion_id,
            created=created,
            model=model,
            choices=[Choice(message=message, finish_reason=result.finish_reason)],
            usage=usage,
            llmrec=result.recommendation,
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        html = resources.files("llmrec.serving").joinpath("static/index.html").read_text()
        return HTMLResponse(html)

    return app


def _sse(
    completion_id: str, created: int, model: str, result: Any, usage: Usage | None
) -> Iterator[str]:
    """The reply as OpenAI chat.completion.chunk events, ending with ``data: [DONE]``."""

    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        chunk = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    yield event({"role": "assistant", "content": ""})
    if result.tool_calls:
        for i, call in enumerate(result.tool_calls):
            yield event(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.function.name, "arguments": ""},
                        }
                    ]
                }
            )
            yield event(
                {"tool_calls": [{"index": i, "function": {"arguments": call.function.arguments}}]}
            )
    else:
        for line in (result.content or "").splitlines(keepends=True):
            yield event({"content": line})
    yield event({}, result.finish_reason)
    if usage is not None:
        chunk = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage.model_dump(),
        }
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


def build_service(config: Any) -> RecService:
    """Load the data, the retriever and the models a serve config names."""
    from llmrec.data import open_dataset
    from llmrec.ranking.backends import make_backend
    from llmrec.retrieval.saved import load_retriever
    from llmrec.serving.batching import Batcher

    dataset = open_dataset(config.data)
    retriever = load_retriever(config.retriever, dataset.catalog)
    backend = make_backend(config.backend_config(), dataset)
    batcher = Batcher(backend.models(), config.batching)
    return RecService(config, dataset, retriever, batcher)
