"""``llmrec serve``: the HTTP service (argparse here; FastAPI and the models load in the
command)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

logger = logging.getLogger(__name__)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the HTTP API (OpenAI-compatible chat, /v1/recommend, tools, web chat page)",
        description="Load the data, retriever, base model and adapters a serve config names, and "
        "serve them. Configs: serve/*.yaml.",
    )
    serve.add_argument("--config", default="serve/cpu.yaml", help="serve config YAML")
    serve.add_argument("--host", help="override the config's host")
    serve.add_argument("--port", type=int, help="override the config's port")
    serve.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a top-level config value (YAML syntax), e.g. --set reasons=template",
    )
    serve.set_defaults(func=cmd_serve)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set wants KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise ValueError(
            f"serving needs the serve extra ({exc.name} is missing): pip install 'llmrec[serve]'"
        ) from None
    from llmrec.serving.app import build_service, create_app
    from llmrec.serving.config import load_serve_config

    overrides = parse_overrides(args.set)
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    config = load_serve_config(args.config, overrides)
    print(f"loading {config.data}, retriever {config.retriever}, models {config.model_names} ...")
    service = build_service(config)
    app = create_app(service)
    print(f"llmrec is serving on http://{config.host}:{config.port}/ (web chat page there; "
          f"API docs at /docs)", flush=True)  # fmt: skip
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level="info",
        timeout_graceful_shutdown=config.graceful_shutdown_s,
    )
    return 0
