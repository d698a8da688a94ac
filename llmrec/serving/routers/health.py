"""``GET /health`` (liveness) and ``GET /ready`` (readiness)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from llmrec.serving.http_shared import Service, error_response
from llmrec.serving.protocol import ErrorResponse

router = APIRouter(tags=["ops"])


@router.get("/health")
def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"model": ErrorResponse}})
def ready(service: Service) -> Any:
    """Readiness: the models are loaded and the model worker runs."""
    if not service.batcher.running:
        return error_response(503, "the model worker is not running", "server_error")
    return {"status": "ready", "models": service.model_names, "backend": service.config.backend}
