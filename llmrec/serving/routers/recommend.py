"""``POST /v1/recommend`` and ``GET /v1/tools`` (the same function as an OpenAI tool)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from llmrec.serving.http_shared import ERRORS, Service, authorised, deadline
from llmrec.serving.protocol import RecommendRequest, RecommendResponse, ToolList
from llmrec.serving.service import recommend_tool

router = APIRouter(dependencies=[Depends(authorised)])


@router.get("/v1/tools", response_model=ToolList, tags=["tools"], responses=ERRORS)
def tools() -> ToolList:
    """The ``recommend`` function as an OpenAI tool definition, for assistants to offer."""
    return ToolList(data=[recommend_tool()])


@router.post(
    "/v1/recommend", response_model=RecommendResponse, tags=["recommend"], responses=ERRORS
)
def recommend(body: RecommendRequest, service: Service) -> RecommendResponse:
    """Ranked catalogue items for a user id or an ad-hoc history, with reasons and the
    retrieval views that proposed each item."""
    return service.recommend(body, deadline(service.config))
