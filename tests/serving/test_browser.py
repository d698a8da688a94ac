"""The web chat page end to end: a real uvicorn server on a loopback port, driven by headless
Chromium through Playwright.

The served catalogue is hostile: every title except the two liked ones carries an HTML payload, so
the page must insert what the server sends as text. Skips when playwright (``pip install -e
'.[browser]'``) or Debian's ``/usr/bin/chromium`` is missing; Playwright's own browser download
is never used.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
try:
    from playwright.sync_api import Browser, expect, sync_playwright
except ImportError:
    pytest.skip(
        "playwright is not installed (pip install -e '.[browser]')", allow_module_level=True
    )
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

from llmrec.data import Catalog  # noqa: E402
from llmrec.serving.app import create_app  # noqa: E402

from .fakes import make_service  # noqa: E402  (the parts fixture is in conftest.py)

#: Headless as root on a closed network; Playwright gives each launch a fresh temporary profile.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAYLOAD = '<img src=x onerror="window.__xss=1">'
LIKED = ("Toy Story", "Fargo")
KEY = "s3cret"
SLOW = 60_000  # ms: a chat turn runs the tiny model on a busy CPU


def hostile(base):  # noqa: ANN001, ANN201
    """The ``parts`` tuple with every catalogue title but the liked ones ending in an HTML
    payload (same ids, so the adapter and the fitted retriever still fit)."""
    model_dir, adapter_dir, dataset, retriever = base
    table = dataset.catalog.table.copy()
    other = ~table["title"].isin(LIKED)
    table.loc[other, "title"] = table.loc[other, "title"] + " " + PAYLOAD
    return model_dir, adapter_dir, replace(dataset, catalog=Catalog(table)), retriever


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` under uvicorn in a background thread on a free loopback port; stopped on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the uvicorn server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        assert not thread.is_alive(), "the uvicorn server thread did not stop"


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def test_chat_page_recommends_with_reasons_and_renders_server_text_as_text(parts) -> None:  # noqa: ANN001, F811
    service = make_service(hostile(parts), api_keys=(KEY,))
    titles = {item.title for item in service.catalog}
    with serving(create_app(service)) as url, chromium() as browser:
        page = browser.new_page()
        requests: list[str] = []
        problems: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))

        # without ?key= the model list fails, and the page says why in words
        page.goto(url + "/")
        error = page.get_by_test_id("error")
        expect(error).to_contain_text("HTTP 401")
        expect(error).to_contain_text("missing or wrong API key")

        # with it: the picker lists the served models and one is chosen
        page.goto(f"{url}/?key={KEY}")
        expect(page.get_by_test_id("key-note")).to_contain_text("API key")
        expect(page.get_by_test_id("model").locator("option")).to_have_count(3)
        page.get_by_test_id("model").select_option("base")
        expect(error).to_be_empty()

        for title in LIKED:
            page.get_by_test_id("like-input").fill(title)
            page.get_by_test_id("like-add").click()
        expect(page.get_by_test_id("liked-item")).to_have_count(2)
        page.get_by_test_id("message").fill("something darker <b>bold</b>")
        page.get_by_test_id("send").click()

        reply = page.get_by_test_id("reply")
        expect(reply).to_have_count(1, timeout=SLOW)
        expect(error).to_be_empty()
        user = page.get_by_test_id("user-message")
        expect(user).to_contain_text('I liked "Toy Story", "Fargo". something darker <b>bold</b>')
        # how the liked titles were matched to the catalogue
        intro = reply.get_by_test_id("reply-intro")
        expect(intro).to_contain_text('"Toy Story" -> Toy Story')
        expect(intro).to_contain_text('"Fargo" -> Fargo')
        expect(reply.get_by_test_id("reply-model")).to_have_text("model: base")

        shown = reply.get_by_test_id("item-title").all_text_contents()
        assert shown, "the reply lists no items"
        assert set(shown) <= titles and not set(shown) & set(LIKED)
        assert all(t.endswith(PAYLOAD) for t in shown)  # the payload, literally, as text
        whys = reply.get_by_test_id("item-why").all_text_contents()
        assert len(whys) == len(shown) and all(w.startswith("Why: ") and len(w) > 6 for w in whys)

        # nothing was parsed as HTML: no element from the payloads, none ran
        log = page.get_by_test_id("log")
        assert log.locator("img").count() == 0 and log.locator("b").count() == 0
        assert page.evaluate("window.__xss") is None
        # the datalist learnt the titles the reply showed; an item can be added to the liked ones
        assert page.locator("#titles option").count() >= len(shown)
        reply.get_by_test_id("item").first.get_by_role("button").click()
        expect(page.get_by_test_id("liked-item")).to_have_count(3)

        assert problems == []
        assert all(r.startswith(url + "/") for r in requests), requests  # no external resources
        page.close()


def test_chat_page_refines_the_previous_answer_from_the_conversation(parts) -> None:  # noqa: ANN001
    """Multi-turn refinement on the page: "something scary", then "something else" (none of the
    items shown before, still the wish) and "without horror" (the wish carried on, Horror taken
    out). The server keeps no state: the page sends the whole conversation each time."""
    service = make_service(parts)
    by_title = {item.title: item for item in service.catalog}
    scary = {"Horror", "Thriller"}
    with serving(create_app(service)) as url, chromium() as browser:
        page = browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        sent: list[list[dict]] = []
        page.on(
            "request",
            lambda r: (
                sent.append(r.post_data_json["messages"])
                if r.url.endswith("/v1/chat/completions")
                else None
            ),
        )
        page.goto(url + "/")
        expect(page.get_by_test_id("model").locator("option")).to_have_count(3)
        error = page.get_by_test_id("error")
        replies = page.get_by_test_id("reply")

        def ask(text: str, turn: int) -> tuple[str, list[str]]:
            """Send ``text``; the reply's intro and its titles, each checked to be in the
            catalogue."""
            page.get_by_test_id("message").fill(text)
            page.get_by_test_id("send").click()
            expect(replies).to_have_count(turn, timeout=SLOW)
            expect(error).to_be_empty()
            reply = replies.nth(turn - 1)
            shown = reply.get_by_test_id("item-title").all_text_contents()
            assert shown and set(shown) <= set(by_title) - {"Toy Story"}, shown
            return reply.get_by_test_id("reply-intro").inner_text(), shown

        page.get_by_test_id("like-input").fill("Toy Story")
        page.get_by_test_id("like-add").click()
        intro, first = ask("something scary", 1)
        assert "Understood: Horror or Thriller." in intro
        assert all(scary & set(by_title[t].categories) for t in first)

        # "something else": new items, the same wish, and the reply says how it refined
        intro, second = ask("something else", 2)
        assert "Refining the last answer: not the 5 items shown before." in intro, intro
        assert "Understood: Horror or Thriller." in intro
        assert set(second).isdisjoint(first), (first, second)
        assert all(scary & set(by_title[t].categories) for t in second)

        # "without horror" refines too (the liked title is not named again, so the message
        # only takes something away): thrillers that are not horror, none shown the first time
        intro, third = ask("without horror", 3)
        assert "Understood: Horror or Thriller; not Horror." in intro, intro
        for title in third:
            genres = set(by_title[title].categories)
            assert "Thriller" in genres and "Horror" not in genres, (title, genres)
        assert set(third).isdisjoint(first), (first, third)

        # what went over the wire: each request the whole conversation, replies included
        assert [len(m) for m in sent] == [1, 3, 5]
        assert [m["role"] for m in sent[-1]] == ["user", "assistant", "user", "assistant", "user"]
        assert sent[-1][0]["content"] == 'I liked "Toy Story". something scary'
        assert [m["content"] for m in sent[-1][2::2]] == ["something else", "without horror"]
        assert problems == []
        page.close()
