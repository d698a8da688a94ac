"""``llmrec finetune`` and ``llmrec recommend``: the LLM stage from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ft = sub.add_parser(
        "finetune",
        help="fine-tune a PEFT adapter (LoRA, AdaLoRA, prefix, QLoRA) for ranking and reasons",
        description="Build ranking examples from the training split with the serving prompt "
        "builder, train an adapter with validation NDCG@10 and early stopping, and save it in "
        "peft's format with llmrec's record. Recipes: finetune/*.yaml.",
    )
    ft.add_argument("--recipe", default=None, help="recipe YAML (default: finetune/lora.yaml)")
    ft.add_argument("--data", default="ml-100k", help="prepared dataset folder or built-in name")
    ft.add_argument("--out", default="runs/adapter-lora", help="output folder")
    ft.add_argument(
        "--retriever",
        help="retriever folder from `llmrec retrieve build` (default: fit the recipe's views)",
    )
    ft.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    ft.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a recipe value, e.g. --set training.max_steps=100 (repeatable)",
    )
    ft.set_defaults(func=cmd_finetune)


def default_recipe() -> Path | None:
    path = Path(__file__).resolve().parents[2] / "finetune" / "lora.yaml"
    return path if path.is_file() else None


def load_retriever(folder: str | Path, catalog: Any) -> Any:
    from llmrec.cli.retrieve import MANIFEST
    from llmrec.retrieval.fusion import FusedRetriever

    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(
            f"{folder} is not a retriever folder (no {MANIFEST}); build one with "
            "`llmrec retrieve build --out FOLDER`"
        )
    return FusedRetriever.load(folder / "fused", catalog)


def cmd_finetune(args: argparse.Namespace) -> int:
    from llmrec.cli.commands import open_dataset
    from llmrec.finetune.recipe import load_recipe
    from llmrec.finetune.trainer import SUMMARY_FILE, finetune

    recipe_path = args.recipe or default_recipe()
    recipe = load_recipe(recipe_path, args.set)
    dataset = open_dataset(args.data)
    retriever = load_retriever(args.retriever, dataset.catalog) if args.retriever else None
    print(f"fine-tuning a {recipe.adapter.method} adapter on {recipe.model} ({recipe_path})")
    summary = finetune(recipe, dataset, args.out, retriever=retriever, resume=args.resume)
    final = summary["validation_final"] or {}
    zero = summary["validation_zero_shot"] or {}
    print(
        f"done: {summary['steps']} steps in {summary['train_seconds']:.0f} s; validation "
        f"NDCG@10 {final.get('NDCG@10', float('nan')):.4f} (zero-shot "
        f"{zero.get('NDCG@10', float('nan')):.4f}, retriever alone "
        f"{summary['validation_retriever']['NDCG@10']:.4f})"
    )
    print(f"adapter written to {summary['adapter']}; summary in {Path(args.out) / SUMMARY_FILE}")
    print(json.dumps({k: summary[k] for k in ("trainable_parameters", "peak_memory_mb")}))
    return 0
