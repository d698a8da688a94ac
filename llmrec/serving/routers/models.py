"""``GET /v1/models``: the base model and its adapters, as OpenAI model cards."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from llmrec.serving.http_shared import ERRORS, Service, authorised
from llmrec.serving.protocol import ModelCard, ModelList

router = APIRouter(tags=["openai"], dependencies=[Depends(authorised)])


@router.get("/v1/models", response_model=ModelList, responses=ERRORS)
def models(service: Service) -> ModelList:
    """The base model and every loaded adapter; a request's ``model`` picks one."""
    cards = []
    for name, served in service.batcher.models.items():
        info = served.info
        cards.append(
            ModelCard(
                id=name,
                created=service.created,
                root=info.base_model,
                parent=None if info.method is None else service.config.base_name,
                method=info.method,
            )
        )
    return ModelList(data=cards)
