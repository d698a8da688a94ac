"""The official ``openai`` client against a real server on loopback: chat, streaming, tools."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

from llmrec.serving.app import create_app  # noqa: E402

from .fakes import make_service  # noqa: E402  (the parts fixture is in conftest.py)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url(parts):  # noqa: ANN001, ANN201, F811
    service = make_service(parts, api_keys=("sk-test",))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(10)


def test_openai_client_chat_stream_and_tools(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
    assert {m.id for m in client.models.list()} == {"base", "tiny-lora"}

    reply = client.chat.completions.create(
        model="tiny-lora",
        messages=[{"role": "user", "content": "I loved Toy Story and Fargo"}],
        extra_body={"llmrec": {"k": 3}},
    )
    text = reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert '"Toy Story" -> Toy Story' in text and text.count("\n1. ") + text.startswith("1. ") == 1

    stream = client.chat.completions.create(
        model="base",
        messages=[{"role": "user", "content": "I liked Vertigo and Psycho"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    streamed = "".join(pieces)
    assert finish == "stop" and usage is not None and usage.total_tokens > 0
    assert "Vertigo" in streamed and "Here are 5 recommendations:" in streamed

    tool = {"type": "function", "function": _tool_definition(base_url)}
    messages = [{"role": "user", "content": "Something like Casablanca please"}]
    first = client.chat.completions.create(model="tiny-lora", messages=messages, tools=[tool])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "recommend"
    args = json.loads(call.function.arguments)
    assert args["history"] == ["Casablanca (1942)"]
    import httpx

    result = httpx.post(
        f"{base_url}/recommend",
        json={**args, "k": 2, "explain": False},
        headers={"Authorization": "Bearer sk-test"},
    ).json()
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)},
    ]
    final = client.chat.completions.create(model="tiny-lora", messages=messages, tools=[tool])
    answer = final.choices[0].message.content
    assert all(item["title"] in answer for item in result["items"])

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "model_not_found"


def _tool_definition(base_url: str) -> dict:
    import httpx

    data = httpx.get(f"{base_url}/tools", headers={"Authorization": "Bearer sk-test"}).json()
    return data["data"][0]["function"]


def test_graceful_shutdown_finishes_in_flight_requests(parts) -> None:  # noqa: ANN001, F811
    import httpx

    service = make_service(parts)
    served = service.batcher.models["tiny-lora"]
    original = served.score
    started = threading.Event()

    def slow(prompts):  # noqa: ANN001, ANN202
        started.set()
        time.sleep(1.5)
        return original(prompts)

    served.score = slow
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(service), host="127.0.0.1", port=port, log_level="warning",
            timeout_graceful_shutdown=10,
        )
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    answers: list[httpx.Response] = []
    request = threading.Thread(
        target=lambda: answers.append(
            httpx.post(
                f"http://127.0.0.1:{port}/v1/recommend",
                json={"history": ["i0"], "explain": False},
                timeout=30,
            )
        )
    )
    request.start()
    assert started.wait(10)
    server.should_exit = True  # what SIGTERM does
    request.join(20)
    thread.join(20)
    assert answers and answers[0].status_code == 200 and answers[0].json()["items"]
    assert not thread.is_alive() and not service.batcher.running
