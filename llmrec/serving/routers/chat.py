"""``POST /v1/chat/completions``: OpenAI-compatible chat, whole or streamed as server-sent events.

A streamed reply is OpenAI's ``chat.completion.chunk`` events: the role, then the content line by
line (or each tool call's name, then its arguments), the finish reason, the usage when
``stream_options.include_usage`` asks for it, and ``data: [DONE]``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from llmrec.serving.http_shared import ERRORS, Service, authorised, deadline
from llmrec.serving.protocol import AssistantMessage, ChatRequest, ChatResponse, Choice, Usage
from llmrec.serving.service import ChatResult

router = APIRouter(tags=["openai"], dependencies=[Depends(authorised)])


@router.post(
    "/v1/chat/completions",
    response_model=ChatResponse,
    responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}},
)
def chat(body: ChatRequest, service: Service) -> Any:
    """OpenAI-compatible chat: mentions of liked titles and a wish in, recommendations with
    reasons out (or a ``recommend`` tool call when the request offers the tool)."""
    result = service.chat(body, deadline(service.config))
    model = result.model
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    # usage counts whitespace-separated words: the reply is a template, not model tokens
    asked = sum(len(m.text().split()) for m in body.messages)
    answered = len((result.content or "").split())
    usage = Usage(prompt_tokens=asked, completion_tokens=answered, total_tokens=asked + answered)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            sse_events(completion_id, created, model, result, usage if include_usage else None),
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


def sse_events(
    completion_id: str, created: int, model: str, result: ChatResult, usage: Usage | None
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
