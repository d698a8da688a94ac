"""Load test of the HTTP service on loopback: N requests, C at a time, over /v1/recommend and
/v1/chat/completions; errors by status, latency percentiles, throughput and dynamic batching.

    python bench/serve_load.py                           # serve/cpu.yaml, 500 requests, 16 at once
    python bench/serve_load.py --reasons template        # reasons from facts only, no generation
    python bench/serve_load.py --requests 1000 --concurrency 32 --allow-429
    python bench/serve_load.py --tiny --requests 100 --concurrency 8   # smoke run, tiny service

Run it from the repository root (the serve config's relative paths are taken from there). The
service runs in this process as ``llmrec serve`` runs it (``build_service`` + ``create_app`` under
uvicorn, here in a thread on a free 127.0.0.1 port, whatever port the config names), so that the
batcher's statistics can be read; the client (httpx, async) shares the process and the cores with
it. Requests (seeded): 30 % recommend for a known user id, 30 % recommend for 2-4 catalogue titles
(some with their year), 20 % chat naming two titles, 20 % the same chat streamed; ``explain``
alternates true/false. Warm-up requests (one of each kind) go first and are not counted.

Any 5xx, transport error or malformed 200 fails the run (exit 1), and so do 429s unless
``--allow-429`` (they are counted apart either way). Writes ``runs/serve-bench/sections/load.md``
(``--tiny``: ``runs/serve-bench-tiny``, never the docs) and regenerates docs/serving-load.md from
``HEADER`` and the sections, as bench/llm.py does docs/llm.md (the guide is docs/serving.md).
The section embeds a histogram of the answered requests' latencies per kind, drawn from this
run's outcomes to docs/figures/serving-load-latency.png (``--tiny``: OUT/figures/).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import platform
import random
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _figures import histograms  # noqa: E402
from _sections import write_doc, write_section  # noqa: E402

PARTS = ("load",)
#: The text of docs/serving-load.md above the measured sections. The document is regenerated from it
#: and the section files (as bench/llm.py regenerates docs/llm.md), so its prose belongs here; while
#: this is empty the document is left alone and only the section file is written.
HEADER: list[str] = [
    "# Serving: load test",
    "",
    "Written by `bench/serve_load.py` (the guide to the service is [serving.md](serving.md)). The",
    "service runs in the benchmark's process under uvicorn on loopback, with the client sharing",
    "the same cores; every figure below names the machine, the date and the command.",
    "",
]

KINDS = ("recommend (user)", "recommend (titles)", "chat", "chat (stream)")
WEIGHTS = (0.3, 0.3, 0.2, 0.2)
K = 5


@dataclass(frozen=True)
class Call:
    kind: str
    path: str
    body: dict[str, Any]
    stream: bool = False


@dataclass
class Outcome:
    kind: str
    status: int | None  # None: no HTTP answer (transport error)
    seconds: float
    error: str | None = None  # set when the request failed, whatever the status


@dataclass
class Load:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="serve/cpu.yaml", help="serve config YAML")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--reasons", choices=["template", "generate"], help="override the config")
    parser.add_argument("--tiny", action="store_true", help="the tiny offline test service")
    parser.add_argument("--allow-429", action="store_true", help="429s do not fail the run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="default: runs/serve-bench (--tiny: runs/serve-bench-tiny)")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "serving-load.md"))
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1:
        raise SystemExit("--requests and --concurrency must be at least 1")
    started = time.perf_counter()
    out = Path(args.out or ROOT / "runs" / ("serve-bench-tiny" if args.tiny else "serve-bench"))
    with ExitStack() as stack:
        service = _tiny_service(stack, args.reasons) if args.tiny else _service(args)
        calls = make_calls(service, len(KINDS) + args.requests, args.seed)
        warmup, calls = calls[: len(KINDS)], calls[len(KINDS) :]
        timeout = service.config.limits.timeout_s + 10
        headers = _auth(service)
        with serving(service) as url:
            warm = asyncio.run(fire(url, warmup, 1, timeout, headers))
            if any(o.error for o in warm.outcomes):
                print("warm-up failed:", *[f"{o.kind}: {o.error}" for o in warm.outcomes])
                return 1
            service.batcher.stats = type(service.batcher.stats)()  # count the load only
            load = asyncio.run(fire(url, calls, args.concurrency, timeout, headers))
        lines = report(service, load, args)
    figures = out / "figures" if args.tiny else Path(args.doc).parent / "figures"
    lines += [latency_figure(load, args.concurrency, figures, Path(args.doc).stem), ""]
    print("\n".join(lines))
    write_section(out, "load", lines, started, "bench/serve_load.py")
    print(f"wrote {out / 'sections' / 'load.md'}")
    if not args.tiny:
        _write_doc(out, Path(args.doc))
    failed = failures(load, args.allow_429)
    if failed:
        print(f"FAILED: {len(failed)} of {len(load.outcomes)} requests (see Errors above)")
    return 1 if failed else 0


# --------------------------------------------------------------------------- the service
def _service(args: argparse.Namespace) -> Any:
    from llmrec.serving.app import build_service
    from llmrec.serving.config import load_serve_config

    overrides = {"reasons": args.reasons} if args.reasons else {}
    config = load_serve_config(args.config, overrides)
    print(f"loading {config.data}, retriever {config.retriever}, models {config.model_names} ...")
    return build_service(config)


class _TempFolders:
    """What the ``parts`` fixture asks of pytest's ``tmp_path_factory``: fresh folders."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))


def _tiny_service(stack: ExitStack, reasons: str | None) -> Any:
    """The tiny offline service of the serving tests (tiny Llama, LoRA adapter, 40 movies, 30
    users), built by their ``parts`` fixture function (tests/serving/conftest.py) outside pytest."""
    sys.path.insert(0, str(ROOT))
    from tests.serving.conftest import parts
    from tests.serving.fakes import make_service

    root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="llmrec-serve-bench-")))
    built = inspect.unwrap(parts)(_TempFolders(root))
    return make_service(built, reasons=reasons or "template", api_keys=(), api_keys_env=None)


def _auth(service: Any) -> dict[str, str]:
    keys = sorted(service.config.keys())
    return {"Authorization": f"Bearer {keys[0]}"} if keys else {}


@contextmanager
def serving(service: Any) -> Iterator[str]:
    """``create_app(service)`` under uvicorn in a thread on a free loopback port; yields its URL.
    On exit uvicorn lets in-flight requests finish and the lifespan stops the model worker."""
    import uvicorn

    from llmrec.serving.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        create_app(service),
        log_level="warning",
        timeout_graceful_shutdown=service.config.graceful_shutdown_s,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server stopped while starting (see the log above)")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(service.config.graceful_shutdown_s + 10)
        sock.close()


# --------------------------------------------------------------------------- the requests
def make_calls(service: Any, n: int, seed: int) -> list[Call]:
    """``n`` requests; the first ``len(KINDS)`` are one of each kind, the rest drawn by WEIGHTS."""
    rng = random.Random(seed)
    users = sorted(service.users)
    items = list(service.catalog)
    kinds = [*KINDS, *rng.choices(KINDS, weights=WEIGHTS, k=max(0, n - len(KINDS)))][:n]
    calls = []
    for i, kind in enumerate(kinds):
        explain = i % 2 == 0
        titles = [_title(item, rng) for item in rng.sample(items, rng.randint(2, 4))]
        if kind == "recommend (user)":
            body = {"user_id": rng.choice(users), "k": K, "explain": explain}
            calls.append(Call(kind, "/v1/recommend", body))
        elif kind == "recommend (titles)":
            body = {"history": titles, "k": K, "explain": explain}
            calls.append(Call(kind, "/v1/recommend", body))
        else:
            text = f"I loved {titles[0]} and {titles[1]}. Anything similar?"
            stream = kind == "chat (stream)"
            body = {
                "messages": [{"role": "user", "content": text}],
                "stream": stream,
                "llmrec": {"k": K, "explain": explain},
            }
            if stream:
                body["stream_options"] = {"include_usage": True}
            calls.append(Call(kind, "/v1/chat/completions", body, stream))
    return calls


def _title(item: Any, rng: random.Random) -> str:
    """A title as people write it: sometimes with the year."""
    return f"{item.title} ({item.year})" if item.year and rng.random() < 0.5 else item.title


async def fire(
    url: str, calls: Sequence[Call], concurrency: int, timeout: float, headers: dict[str, str]
) -> Load:
    """Send ``calls`` with ``concurrency`` workers, each sending its next call once the previous
    one is answered (a closed loop)."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    load = Load()
    pending = iter(calls)  # shared by the workers: one event loop, no locking needed

    async def worker(client: httpx.AsyncClient) -> None:
        for call in pending:
            load.outcomes.append(await send(client, call))

    async with httpx.AsyncClient(
        base_url=url, timeout=timeout, limits=limits, headers=headers
    ) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(min(concurrency, len(calls)))))
        load.seconds = time.perf_counter() - start
    return load


async def send(client: Any, call: Call) -> Outcome:
    import httpx

    start = time.perf_counter()
    problem = None
    try:
        if call.stream:
            async with client.stream("POST", call.path, json=call.body) as response:
                if response.status_code == 200:
                    lines = [line async for line in response.aiter_lines()]
                    problem = _stream_problem(lines)
                else:
                    await response.aread()
        else:
            response = await client.post(call.path, json=call.body)
            problem = _body_problem(call, response) if response.status_code == 200 else None
    except httpx.HTTPError as exc:
        return Outcome(call.kind, None, time.perf_counter() - start, type(exc).__name__)
    seconds = time.perf_counter() - start
    if response.status_code != 200:
        problem = f"HTTP {response.status_code}"
    return Outcome(call.kind, response.status_code, seconds, problem)


def _body_problem(call: Call, response: Any) -> str | None:
    """What is wrong with a 200 answer, if anything: the right shape and K items."""
    try:
        body = response.json()
    except ValueError:
        return "malformed 200: not JSON"
    if call.path == "/v1/recommend":
        items = body.get("items")
        ok = isinstance(items, list) and len(items) == K
        return None if ok else f"malformed 200: {len(items or [])} items, not {K}"
    choices = body.get("choices") or [{}]
    content = choices[0].get("message", {}).get("content")
    return None if isinstance(content, str) and content else "malformed 200: no reply text"


def _stream_problem(lines: Sequence[str]) -> str | None:
    events = [line[6:] for line in lines if line.startswith("data: ")]
    if not events or events[-1] != "[DONE]":
        return "malformed 200: the stream does not end with [DONE]"
    if len(events) < 3:
        return "malformed 200: the stream carries no reply"
    return None


# --------------------------------------------------------------------------- the report
def failures(load: Load, allow_429: bool) -> list[Outcome]:
    return [o for o in load.outcomes if o.error and not (allow_429 and o.status == 429)]


def _percentiles(seconds: Sequence[float]) -> list[str]:
    if not seconds:
        return ["-", "-", "-", "-"]
    ms = np.asarray(seconds) * 1000.0
    return [f"{np.percentile(ms, q):.0f}" for q in (50, 95, 99)] + [f"{ms.max():.0f}"]


def report(service: Any, load: Load, args: argparse.Namespace) -> list[str]:
    config = service.config
    source = "the tiny test service (`--tiny`)" if args.tiny else f"`{args.config}`"
    n = len(load.outcomes)
    ok_count = sum(not o.error for o in load.outcomes)
    lines = [
        f"## Load: {n} requests, {args.concurrency} at a time",
        "",
        f"Service: {source}; models {', '.join(service.model_names)} (requests use the default, "
        f"`{config.default}`); backend {config.backend}; reasons `{config.reasons}`; batching "
        f"max_batch {config.batching.max_batch}, wait {config.batching.wait_ms:g} ms; "
        f"max_concurrency {config.limits.max_concurrency}.",
        "",
        f"Machine: {_cpu_model()}, {os.cpu_count()} cores; torch {_torch_version()} with "
        f"{_torch_threads()} threads; Python {platform.python_version()}. Server (uvicorn in a "
        "thread) and client (httpx, async) share this process, over 127.0.0.1.",
        "",
        "| requests | count | OK | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in (*KINDS, "all"):
        chosen = [o for o in load.outcomes if kind in ("all", o.kind)]
        ok = [o.seconds for o in chosen if not o.error]
        name = f"**{kind}**" if kind == "all" else kind
        lines.append(
            f"| {name} | {len(chosen)} | {len(ok)} | " + " | ".join(_percentiles(ok)) + " |"
        )
    lines += [
        "",
        "Latency of the answered requests (OK), from sending to the last byte (for a stream, to "
        "`data: [DONE]`).",
        "",
        f"Throughput: {ok_count / load.seconds:.1f} answered requests/s ({ok_count} of {n} "
        f"answered in {load.seconds:.1f} s).",
        "",
        _errors_line(load, args.allow_429),
        "",
        _batching_line(service.batcher.stats),
        "",
    ]
    return lines


def latency_figure(load: Load, concurrency: int, figures: Path, stem: str = "serving-load") -> str:
    """Draw the answered requests' latencies per kind (``figures/<stem>-latency.png``, named
    after the doc it goes in); the Markdown line that embeds it."""
    groups = [
        (kind, [o.seconds * 1000.0 for o in load.outcomes if o.kind == kind and not o.error])
        for kind in KINDS
    ]
    if not any(values for _, values in groups):
        return "No request was answered: no latency figure."
    figure = histograms(
        figures / f"{stem}-latency.png",
        groups,
        "latency, sending to the last byte (ms)",
        f"Serving load: {len(load.outcomes)} requests, {concurrency} at a time",
    )
    return f"![latency of the answered requests per kind](figures/{figure.name})"


def _errors_line(load: Load, allow_429: bool) -> str:
    errors = Counter(o.error for o in load.outcomes if o.error and o.status != 429)
    too_many = sum(o.status == 429 for o in load.outcomes)
    text = "Errors: " + (", ".join(f"{e} x {c}" for e, c in errors.most_common()) or "none")
    note = "allowed" if allow_429 else "counted as failures"
    return f"{text}; 429 (too many requests): {too_many} ({note})."


def _batching_line(stats: Any) -> str:
    mean = stats.prompts / stats.batches if stats.batches else 0.0
    return (
        f"Batching: {stats.batches} scoring batches for {stats.prompts} prompts (mean "
        f"{mean:.2f}, largest {stats.largest}); {stats.generations} generation calls; "
        f"{stats.skipped} jobs skipped (their requests had given up)."
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _torch_version() -> str:
    import torch

    return torch.__version__


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _write_doc(out: Path, doc: Path) -> None:
    if not HEADER:
        print(f"HEADER in bench/serve_load.py is empty: {doc} left alone")
        return
    write_doc(out, doc, HEADER, PARTS)
    print(f"wrote {doc}")


if __name__ == "__main__":
    raise SystemExit(main())
