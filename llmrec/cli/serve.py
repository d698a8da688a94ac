"""``llmrec serve``: the HTTP service (argparse here; FastAPI and the models load in the
command)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from llmrec.cli._shared import add_set_option

if TYPE_CHECKING:
    from llmrec.serving.config import ServeConfig

logger = logging.getLogger(__name__)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the HTTP API (OpenAI-compatible chat, /v1/recommend, tools, web chat page)",
        description="Load the data, retriever, base model and adapters a serve config names, and "
        "serve them. Shipped configs (serve/*.yaml, inside the package too): cpu, vllm; "
        "`llmrec configs` lists them with their installed paths.",
    )
    serve.add_argument(
        "--config",
        default="cpu",
        help="serve config: a shipped name (cpu, vllm) or a YAML file (default: cpu)",
    )
    serve.add_argument("--host", help="override the config's host")
    serve.add_argument("--port", type=int, help="override the config's port")
    add_set_option(
        serve,
        "the serve config (wins over the file; --host/--port win over both)",
        "limits.max_k=20 --set reasons=template --set adapters.mine=runs/adapter",
    )
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from llmrec.overrides import apply_overrides
    from llmrec.serving.config import load_serve_config

    _require_serve_extra()
    config = apply_overrides(load_serve_config(args.config), args.set, "the serve config")
    flags = {"host": args.host, "port": args.port}
    config = dataclasses.replace(config, **{k: v for k, v in flags.items() if v is not None})
    from llmrec.serving.app import build_service

    print(f"loading {config.data}, retriever {config.retriever}, models {config.model_names} ...")
    service = build_service(config)
    print(f"llmrec is serving on http://{config.host}:{config.port}/ (web chat page there; "
          f"API docs at /docs)", flush=True)  # fmt: skip
    run_server(service, config, log_level="info")
    return 0


def _require_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            f"serving needs the serve extra ({exc.name} is missing): pip install 'llmrec[serve]'"
        ) from None


def run_server(service: Any, config: ServeConfig, log_level: str = "info") -> None:
    """Serve ``service`` (from :func:`llmrec.serving.app.build_service`) over HTTP on the
    config's host and port until interrupted."""
    _require_serve_extra()
    import uvicorn

    from llmrec.serving.app import create_app

    uvicorn.run(
        create_app(service),
        host=config.host,
        port=config.port,
        log_level=log_level,
        timeout_graceful_shutdown=config.graceful_shutdown_s,
    )
