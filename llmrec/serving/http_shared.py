"""What every route shares: the error envelope, request limits, the API-key check, the service.

Errors use OpenAI's envelope ``{"error": {"message", "type", "param", "code"}}`` with the matching
status code: :func:`install_error_handlers` maps :class:`~llmrec.serving.service.ServiceError`,
invalid bodies (400, not FastAPI's 422), unknown paths, a full model queue (429), a passed
deadline (504) and anything unexpected (500, logged) to it. :class:`RequestLimits` refuses bodies
over ``max_body_bytes`` (413) and ``/v1/`` requests over ``max_concurrency`` in flight (429).
Routes take the service with :data:`Service` and check the bearer key with :func:`authorised`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmrec.serving.batching import DeadlineExceeded, Overloaded
from llmrec.serving.config import Limits, ServeConfig
from llmrec.serving.protocol import ErrorResponse
from llmrec.serving.service import RecService, ServiceError

logger = logging.getLogger(__name__)

#: The error responses a ``/v1/`` route documents in the OpenAPI schema.
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
    """OpenAI's error envelope; 429 and 503 also say ``Retry-After: 1``."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return JSONResponse(body, status_code=status, headers=headers)


# ---------------------------------------------------------------------- errors
async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.type, exc.param, exc.code)


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


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return error_response(exc.status_code, str(exc.detail), type_)


async def _overloaded(request: Request, exc: Overloaded) -> JSONResponse:
    return error_response(429, str(exc), "rate_limit_error", code="overloaded")


async def _timeout(request: Request, exc: DeadlineExceeded) -> JSONResponse:
    return error_response(504, str(exc), "timeout_error", code="timeout")


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s", request.url.path)
    return error_response(500, "internal error (logged on the server)", "server_error")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in OpenAI's envelope."""
    app.add_exception_handler(ServiceError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(Overloaded, _overloaded)  # type: ignore[arg-type]
    app.add_exception_handler(DeadlineExceeded, _timeout)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _crash)


# ---------------------------------------------------------------------- limits
class InFlight:
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


class RequestLimits:
    """HTTP middleware: the body-size limit on every request, the in-flight cap on ``/v1/``."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.in_flight = InFlight(limits.max_concurrency)

    async def __call__(self, request: Request, call_next: Any) -> Any:
        limits = self.limits
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return error_response(400, "bad Content-Length", "invalid_request_error")
            if int(length) > limits.max_body_bytes:
                return self._too_large()
        if request.method == "POST":
            body = await request.body()
            if len(body) > limits.max_body_bytes:
                return self._too_large()
        if not request.url.path.startswith("/v1/"):
            return await call_next(request)
        if not self.in_flight.enter():
            return error_response(
                429, f"{limits.max_concurrency} requests are already in flight; retry shortly",
                "rate_limit_error", code="too_many_requests",
            )  # fmt: skip
        try:
            return await call_next(request)
        finally:
            self.in_flight.leave()

    def _too_large(self) -> JSONResponse:
        return error_response(
            413, f"request body over {self.limits.max_body_bytes} bytes",
            "invalid_request_error", code="request_too_large",
        )  # fmt: skip


def deadline(config: ServeConfig) -> float:
    """When a request that starts now must be answered (``time.monotonic`` seconds)."""
    return time.monotonic() + config.limits.timeout_s


# ---------------------------------------------------------------------- dependencies
async def _service(request: Request) -> RecService:
    return request.app.state.service


#: The app's :class:`RecService`, as a route parameter type.
Service = Annotated[RecService, Depends(_service)]


def authorised(request: Request) -> None:
    """Refuse (401) a request without a configured bearer key; every key passes when none is."""
    keys: frozenset[str] = request.app.state.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or token.strip() not in keys:
        raise ServiceError(
            401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
            "authentication_error", code="invalid_api_key",
        )  # fmt: skip
