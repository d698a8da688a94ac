"""``llmrec demo``: the main job on the embedded defaults, from nothing to a running service.

1. prepare MovieLens-100K (cached after the first run);
2. build the multi-view retriever (text view with the bundled MiniLM, SASRec, co-occurrence,
   recency and popularity, fused by RRF) unless ``<out>/retriever`` exists;
3. fine-tune a small LoRA adapter on SmolLM2-135M-Instruct (``finetune/lora.yaml`` with a short
   budget) unless one exists (``--adapter`` reuses any adapter folder), and a next-item LLM
   (``finetune/nextitem-lora.yaml`` with a short budget) unless one exists; the family that
   ranks validation users better, as it would be served, becomes the default model (both are
   served);
4. print the top 5 with reasons for three users, through the same service code the API uses;
5. serve the API and the web chat page (``--no-serve`` stops after step 4).

Every step shows progress; each artefact is reused when the command runs again.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from llmrec.cli._shared import split_names
from llmrec.cli.serve import run_server


def add_parsers(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="the main job: ML-100K -> retriever -> LoRA fine-tune -> top-5 with reasons -> serve",
        description=__doc__.split("\n\n")[0],
    )
    demo.add_argument("--out", default="runs/demo", help="folder for the retriever and adapter")
    demo.add_argument("--adapter", help="reuse this adapter folder instead of fine-tuning one")
    demo.add_argument("--steps", type=int, default=60, help="fine-tuning steps (default 60)")
    demo.add_argument(
        "--nextitem-steps",
        type=int,
        default=300,
        help="next-item LLM training steps (default 300; 0 skips that family)",
    )
    demo.add_argument(
        "--compare-users", type=int, default=200, help="validation users to compare on"
    )
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
    from llmrec.data import open_dataset

    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.nextitem_steps < 0 or args.compare_users < 1:
        raise ValueError("--nextitem-steps must be >= 0 and --compare-users >= 1")
    out = Path(args.out)
    began = time.perf_counter()

    start = _step("1/5 MovieLens-100K")
    dataset = open_dataset("ml-100k")
    print(f"   {dataset.name}: {len(dataset.catalog)} items, {len(dataset.sequences())} users")
    _done(start)

    retriever_dir = out / "retriever"
    start = _step(f"2/5 multi-view retriever -> {retriever_dir}")
    _retriever(dataset, retriever_dir)
    _done(start)

    adapter_dir = Path(args.adapter) if args.adapter else out / "adapter-lora" / "adapter"
    start = _step(f"3/5 LoRA adapter -> {adapter_dir}")
    _adapter(dataset, retriever_dir, adapter_dir, args)
    _done(start)

    models = {"lora": adapter_dir}
    if args.nextitem_steps > 0:
        nextitem_dir = out / "nextitem-lora"
        start = _step(f"3b/5 next-item LLM -> {nextitem_dir}")
        models["nextitem"] = _nextitem(dataset, retriever_dir, nextitem_dir, args)
        _done(start)
    default = "lora"
    if len(models) > 1:
        start = _step(f"3c/5 which family ranks better ({args.compare_users} validation users)")
        default = _choose(dataset, retriever_dir, models, args.compare_users)
        _done(start)

    start = _step("4/5 top 5 with reasons (the service's code path)")
    from llmrec.serving.app import build_service
    from llmrec.serving.config import ServeConfig
    from llmrec.serving.protocol import RecommendRequest

    config = ServeConfig(
        retriever=str(retriever_dir),
        adapters={name: str(folder) for name, folder in models.items()},
        default_model=default,
        host=args.host,
        port=args.port,
    )
    service = build_service(config)
    service.batcher.start()
    try:
        for user in split_names(args.users):
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
    run_server(service, config, log_level="warning")
    return 0


def _retriever(dataset: Any, retriever_dir: Path) -> None:
    """Build the retriever (all five views fused by RRF) unless the folder holds one."""
    from llmrec.cli.retrieve import build_retriever, retriever_settings
    from llmrec.retrieval.saved import MANIFEST

    if (retriever_dir / MANIFEST).is_file():
        print("   reusing the retriever built before")
        return
    settings = retriever_settings(["text", "sasrec", "cooc", "recent-pop", "pop"], [], "rrf")
    build_retriever(dataset, "ml-100k", settings, retriever_dir)


def _adapter(
    dataset: Any, retriever_dir: Path, adapter_dir: Path, args: argparse.Namespace
) -> None:
    """Fine-tune a short LoRA run unless ``adapter_dir`` holds an adapter."""
    from llmrec.cli.llm import default_recipe, print_training_summary
    from llmrec.finetune.recipe import load_recipe
    from llmrec.finetune.trainer import finetune
    from llmrec.models.adapters import META_FILE
    from llmrec.retrieval.saved import load_retriever

    if (adapter_dir / META_FILE).is_file():
        print("   reusing the adapter trained before")
        return
    if args.adapter:
        raise FileNotFoundError(f"--adapter {args.adapter} holds no llmrec adapter")
    # a short run for the demo: validation targets as examples (no second retriever to fit)
    overrides = [
        f"training.max_steps={args.steps}",
        f"training.eval_steps={max(10, args.steps // 2)}",
        "training.eval_users=50",
        "examples.source=valid",
    ]
    recipe_path = default_recipe()
    recipe = load_recipe(recipe_path, overrides)
    print(f"fine-tuning a {recipe.adapter.method} adapter on {recipe.model} ({recipe_path})")
    retriever = load_retriever(retriever_dir, dataset.catalog)
    summary = finetune(recipe, dataset, adapter_dir.parent, retriever=retriever)
    print_training_summary(summary, adapter_dir.parent)


def _nextitem(dataset: Any, retriever_dir: Path, run_dir: Path, args: argparse.Namespace) -> Path:
    """Train a short next-item LLM run unless ``run_dir`` holds one; returns its model folder."""
    from llmrec.cli.llm import print_nextitem_summary
    from llmrec.finetune.recipe import load_recipe
    from llmrec.finetune.trainer import finetune
    from llmrec.retrieval.saved import load_retriever

    model_dir = run_dir / "model"
    if (model_dir / "model.json").is_file():
        print("   reusing the next-item LLM trained before")
        return model_dir
    overrides = [
        f"training.max_steps={args.nextitem_steps}",
        f"training.eval_steps={max(25, args.nextitem_steps // 4)}",
        "training.members=1",  # the demo's short budget goes to one run, not an ensemble
    ]
    recipe = load_recipe("nextitem-lora", overrides)
    print(f"training a next-item LLM on {recipe.model} ({args.nextitem_steps} steps)")
    retriever = load_retriever(retriever_dir, dataset.catalog)  # its SASRec starts the item IDs
    summary = finetune(recipe, dataset, run_dir, retriever=retriever)
    print_nextitem_summary(summary, run_dir)
    return model_dir


def _choose(dataset: Any, retriever_dir: Path, models: dict[str, Path], users: int) -> str:
    """The model whose pipeline, as it would be served (its own fusion weight), ranks a seeded
    sample of validation users best by NDCG@10 (ties: the first). Prints both and why."""
    import numpy as np

    from llmrec.data import leave_one_out
    from llmrec.evaluation import EvalConfig, evaluate
    from llmrec.ranking.recommend import load_pipeline

    valid = leave_one_out(dataset).valid
    if users < len(valid):
        rng = np.random.default_rng(0)
        valid = [valid[i] for i in np.sort(rng.choice(len(valid), users, replace=False))]
    scores = {}
    for name, folder in models.items():
        ranker = load_pipeline(retriever_dir, dataset, folder).ranker
        result = evaluate(ranker, dataset, valid, EvalConfig(ks=(10,)), part="valid")
        scores[name] = result.metrics["NDCG@10"]
        print(f"   {name}: validation NDCG@10 {scores[name]:.4f} (fusion weight "
              f"{ranker.config.fusion_weight:g})")  # fmt: skip
    best = max(scores, key=lambda n: scores[n])
    others = ", ".join(f"{n} {v:.4f}" for n, v in scores.items() if n != best)
    print(f"   default model: {best} (validation NDCG@10 {scores[best]:.4f} against {others} "
          f"on the same {len(valid)} users); both are served, pick one per request with "
          '"model"')  # fmt: skip
    return best
