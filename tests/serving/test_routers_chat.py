"""``routers/chat.py``: the streamed reply as OpenAI ``chat.completion.chunk`` events (no model)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")

from llmrec.serving.protocol import FunctionCall, ToolCall, Usage  # noqa: E402
from llmrec.serving.routers.chat import sse_events  # noqa: E402
from llmrec.serving.service import ChatResult  # noqa: E402


def chunks(events: list[str]) -> list[dict]:
    assert all(e.startswith("data: ") and e.endswith("\n\n") for e in events)
    assert events[-1] == "data: [DONE]\n\n"
    return [json.loads(e[len("data: ") :]) for e in events[:-1]]


def test_content_streams_line_by_line_then_usage() -> None:
    result = ChatResult(content="Here are 2:\n1. Fargo\n2. Heat", model="base")
    usage = Usage(prompt_tokens=3, completion_tokens=6, total_tokens=9)
    out = chunks(list(sse_events("chatcmpl-1", 7, "base", result, usage)))

    assert {c["id"] for c in out} == {"chatcmpl-1"} and {c["created"] for c in out} == {7}
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    lines = [c["choices"][0]["delta"]["content"] for c in out[1:4]]
    assert lines == ["Here are 2:\n", "1. Fargo\n", "2. Heat"]
    assert out[4]["choices"][0] == {
        "index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None
    }  # fmt: skip
    assert out[5]["choices"] == [] and out[5]["usage"] == usage.model_dump()
    assert len(out) == 6


def test_tool_call_streams_name_then_arguments() -> None:
    call = ToolCall(
        id="call_1", function=FunctionCall(name="recommend", arguments='{"history": ["Heat"]}')
    )
    result = ChatResult(content=None, model="tiny-lora", tool_calls=[call])
    out = chunks(list(sse_events("chatcmpl-2", 7, "tiny-lora", result, None)))

    deltas = [c["choices"][0]["delta"] for c in out]
    assert deltas[1] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "recommend", "arguments": ""},
            }
        ]
    }
    assert deltas[2] == {
        "tool_calls": [{"index": 0, "function": {"arguments": '{"history": ["Heat"]}'}}]
    }
    assert out[3]["choices"][0]["finish_reason"] == "tool_calls"
    assert len(out) == 4  # no usage chunk unless asked for
