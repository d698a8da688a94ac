"""The HTTP app: the routers of :mod:`llmrec.serving.routers` over a :class:`RecService`.

Routes: ``POST /v1/chat/completions`` (OpenAI-compatible, streaming), ``POST /v1/recommend``,
``GET /v1/models``, ``GET /v1/tools``, ``GET /health``, ``GET /ready``, ``GET /`` (web chat page)
and FastAPI's ``/openapi.json`` and ``/docs``. Errors use OpenAI's envelope
``{"error": {"message", "type", "param", "code"}}`` with the matching status code.

Robustness (:mod:`llmrec.serving.http_shared`): optional bearer keys; a body-size limit; at most
``max_concurrency`` requests in flight (more get 429 at once); a per-request deadline (504 when it
passes); the model queue is bounded (429 when full); on shutdown uvicorn stops accepting and
in-flight requests finish before the model worker stops.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.base import BaseHTTPMiddleware

from llmrec.serving.http_shared import RequestLimits, install_error_handlers
from llmrec.serving.routers import ROUTERS
from llmrec.serving.service import RecService

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the model worker; on shutdown drain its queue, then stop it."""
    service: RecService = app.state.service
    service.batcher.start()
    logger.info("serving %s", ", ".join(service.model_names))
    yield
    # uvicorn has already let in-flight requests finish; drain the model queue, then stop
    service.batcher.stop()


def create_app(service: RecService) -> FastAPI:
    """The app over a built service (see :func:`build_service`); the worker starts with it."""
    app = FastAPI(
        title="llmrec",
        version="0.1.0",
        description=(
            "LLM-based recommendation: an OpenAI-compatible chat endpoint, a `recommend` "
            "endpoint and tool, explanations grounded in the catalogue."
        ),
        lifespan=lifespan,
    )
    request_limits = RequestLimits(service.config.limits)
    app.state.service = service
    app.state.api_keys = service.config.keys()
    app.state.in_flight = request_limits.in_flight
    install_error_handlers(app)
    app.add_middleware(BaseHTTPMiddleware, dispatch=request_limits)
    for router in ROUTERS:
        app.include_router(router)
    return app


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
