"""``llmrec demo``: the main job on the embedded defaults, from nothing to a running service.

1. prepare MovieLens-100K (cached after the first run);
2. build the multi-view retriever (text view with the bundled MiniLM, SASRec, co-occurrence,
   recency and popularity, fused by RRF) unless ``<out>/retriever`` exists;
3. fine-tune a small LoRA adapter on SmolLM2-135M-Instruct (``finetune/lora.yaml`` with a short
   budget) unless one exists (``--adapter`` reuses any adapter folder);
4. print the top 5 with reasons for three users, through the same service code the API uses;
5. serve the API and the web chat page (``--no-serve`` stops after step 4).

Every step shows progress; each artefact is reused when the command runs again.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="the main job: ML-100K -> retriever -> LoRA fine-tune -> top-5 with reasons -> serve",
        description=__doc__.split("\n\n")[0],
    )
    demo.add_argument("--out", default="runs/demo", help="folder for the retriever and adapter")
    demo.add_argument("--adapter", help="reuse this adapter folder instead of fine-tuning one")
    demo.add_argument("--steps", type=int, default=60, help="fine-tuning steps (default 60)")
    demo.add_argument("--users", default="1,2,3", help="users to print recommendations for")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--no-serve", action="store_true", help="stop after printing")
    demo.set_defaults(func=cmd_demo)


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def _done(start: float) -> None:
    print(f"   done in {time.perf_counter() - start:.0f} s", flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from llmrec.cli.llm import default_recipe
    from llmrec.cli.main import build_parser
    from llmrec.data import load_builtin

    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    out = Path(args.out)
    parser = build_parser()
    began = time.perf_counter()

    start = _step("1/5 MovieLens-100K")
    dataset = load_builtin("ml-100k")
    print(f"   {dataset.name}: {len(dataset.catalog)} items, {len(dataset.sequences())} users")
    _done(start)

    retriever_dir = out / "retriever"
    start = _step(f"2/5 multi-view retriever -> {retriever_dir}")
    if (retriever_dir / "retriever.json").is_file():
        print("   reusing the retriever built before")
    else:
        build = parser.parse_args(
            ["retrieve", "build", "--data", "ml-100k", "--out", str(retriever_dir),
             "--views", "text,sasrec,cooc,recent-pop,pop", "--fusion", "rrf"]
        )  # fmt: skip
        build.func(build)
    _done(start)

    adapter_dir = Path(args.adapter) if args.adapter else out / "adapter-lora" / "adapter"
    start = _step(f"3/5 LoRA adapter -> {adapter_dir}")
    if (adapter_dir / "llmrec_adapter.json").is_file():
        print("   reusing the adapter trained before")
    elif args.adapter:
        raise FileNotFoundError(f"--adapter {args.adapter} holds no llmrec adapter")
    else:
        # a short run for the demo: validation targets as examples (no second retriever to fit)
        finetune = parser.parse_args(
            ["finetune", "--recipe", str(default_recipe()), "--retriever", str(retriever_dir),
             "--out", str(adapter_dir.parent),
             "--set", f"training.max_steps={args.steps}",
             "--set", f"training.eval_steps={max(10, args.steps // 2)}",
             "--set", "training.eval_users=50",
             "--set", "examples.source=valid"]
        )  # fmt: skip
        finetune.func(finetune)
    _done(start)

    start = _step("4/5 top 5 with reasons (the service's code path)")
    from llmrec.serving.app import build_service, create_app
    from llmrec.serving.config import ServeConfig
    from llmrec.serving.protocol import RecommendRequest

    config = ServeConfig(
        retriever=str(retriever_dir),
        adapters={"lora": str(adapter_dir)},
        host=args.host,
        port=args.port,
    )
    service = build_service(config)
    service.batcher.start()
    try:
        for user in [u.strip() for u in args.users.split(",") if u.strip()]:
            result = service.recommend(RecommendRequest(user_id=user, k=5))
            recent = [service.catalog.item(i).title for i in service.users[user].item_ids[-3:]]
            print(f"\n   user {user} (recently: {'; '.join(recent)})")
            for n, item in enumerate(result.items, start=1):
                year = f" ({item.year})" if item.year else ""
                print(f"   {n}. {item.title}{year}  score {item.score:.2f}")
                if item.reason:
                    print(f"      why: {item.reason}  [{item.reason_source}]")
    finally:
        service.batcher.stop()
    _done(start)
    print(f"\n   everything so far took {time.perf_counter() - began:.0f} s")

    if args.no_serve:
        return 0
    _step(f"5/5 serving on http://{args.host}:{args.port}/  (web chat page; API docs at /docs)")
    print("   stop with Ctrl-C", flush=True)
    import uvicorn

    uvicorn.run(
        create_app(service),
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=config.graceful_shutdown_s,
    )
    return 0
