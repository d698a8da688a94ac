"""Implementations of the CLI subcommands (imported only when a subcommand runs)."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import yaml

from llmrec.cli._shared import print_result, split_names
from llmrec.data import (
    ColumnMapping,
    LoadOptions,
    RecDataset,
    SequenceOptions,
    apply_options,
    load_builtin,
    load_files,
    make_split,
    open_dataset,
)
from llmrec.data.splits import Split
from llmrec.evaluation import EvalConfig, EvalResult, format_table
from llmrec.evaluation import evaluate as run_evaluation
from llmrec.recommender import Recommender

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- data
def prepare(args: argparse.Namespace) -> int:
    if args.dataset:
        if args.items or args.users or args.col or args.mapping:
            raise ValueError(
                "--items/--users/--col/--mapping apply to --inter files, not --dataset"
            )
        dataset = load_builtin(args.dataset)
    else:
        dataset = load_files(
            args.inter,
            args.items,
            args.users,
            name=args.name,
            mapping=_mapping(args),
            options=LoadOptions(
                drop_unknown_items=args.drop_unknown_items,
                drop_users_without_interactions=args.drop_users_without_interactions,
            ),
            fmt=args.format,
            encoding=args.encoding,
        )
    if args.name:
        dataset.name = args.name
    options = SequenceOptions(
        min_rating=args.min_rating, k_core=args.k_core, dedup=args.dedup, max_len=args.max_len
    )
    dataset = apply_options(dataset, options)
    out = Path(args.out or Path("data") / dataset.name)
    dataset.save(out)
    _print_stats(dataset)
    print(f"\nprepared dataset written to {out}")
    return 0


def _mapping(args: argparse.Namespace) -> ColumnMapping:
    values: dict[str, Any] = {}
    if args.mapping:
        loaded = yaml.safe_load(Path(args.mapping).read_text())
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.mapping}: expected a YAML mapping of field: column")
        values.update(loaded)
    for pair in args.col:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"--col expects FIELD=COLUMN, got {pair!r}")
        values[key.strip()] = value.strip()
    if isinstance(values.get("context"), str):
        values["context"] = [c.strip() for c in values["context"].split(",") if c.strip()]
    return ColumnMapping.from_dict(values)


def stats(args: argparse.Namespace) -> int:
    dataset = open_dataset(args.data)
    if args.json:
        print(json.dumps(dataset.stats(), indent=2))
    else:
        _print_stats(dataset)
    return 0


def _print_stats(dataset: RecDataset) -> None:
    s = dataset.stats()
    lengths = s["sequence_length"]
    print(f"dataset       {s['name']}")
    print(f"users         {s['users']:,}")
    print(f"items         {s['items']:,}  ({s['items_with_interactions']:,} with interactions)")
    print(f"interactions  {s['interactions']:,}  (density {s['density']:.4f})")
    print(
        f"sequence len  min {lengths['min']}, median {lengths['median']:g}, "
        f"mean {lengths['mean']:.1f}, max {lengths['max']}"
    )
    print(f"item text     {', '.join(s['item_text_columns'])}")
    print(f"user profile  {', '.join(s['user_profile_columns']) or '-'}")
    print(f"interaction   {', '.join(s['interaction_columns'])}")
    if "ratings" in s:
        print("ratings       " + ", ".join(f"{k}: {v:,}" for k, v in s["ratings"].items()))
    if "behaviors" in s:
        print("behaviours    " + ", ".join(f"{k}: {v:,}" for k, v in s["behaviors"].items()))
    for line in dataset.report:
        print(f"report        {line}")


# --------------------------------------------------------------------------- evaluate
def evaluate(args: argparse.Namespace) -> int:
    """``llmrec evaluate --model NAME`` for every model but ``llm`` (see :mod:`llmrec.cli.llm`)."""
    dataset = open_dataset(args.data)
    split = make_split(dataset, args.split)
    model = fit_or_load(args.model, args.set, args.load, dataset, split, views=args.views)
    if args.save:
        model.save(args.save)
        print(f"model saved to {args.save}")
    eval_config = EvalConfig(
        protocol=args.protocol, seed=args.seed, depth=args.depth, n_negatives=args.negatives
    )
    result = run_evaluation(model, dataset, split.cases(args.part), eval_config, part=args.part)
    result.notes[:0] = split.report
    result.write(args.metrics_out, args.rankings_out)
    print_result(result)
    for label, path in (("metrics", args.metrics_out), ("rankings", args.rankings_out)):
        if path:
            print(f"{label} written to {path}")
    return 0


def fit_or_load(
    name: str,
    pairs: list[str],
    load: str | None,
    dataset: RecDataset,
    split: Split,
    views: str | None = None,
) -> Recommender:
    """Load a saved model, or create one with ``--set`` applied to its config (see
    :mod:`llmrec.cli.recommenders`) and fit it on the training split."""
    from llmrec.cli.recommenders import create_model
    from llmrec.retrieval import registry

    if load:
        if pairs:
            raise ValueError("--set configures a model to fit; a --load-ed model is already fit")
        return registry.view_class(name).load(load, dataset.catalog)
    view_names = split_names(views) if views else list(registry.DEFAULT_VIEWS)
    model = create_model(name, pairs, view_names)
    start = time.perf_counter()
    model.fit(split.train, dataset.catalog, split.valid)
    logger.info("fitted %s in %.1f s", name, time.perf_counter() - start)
    return model


# --------------------------------------------------------------------------- quickstart
def quickstart(args: argparse.Namespace) -> int:
    """Prepare ML-100K and print the baselines' table under both protocols."""
    from llmrec.retrieval import registry

    out = Path(args.out)
    print("== preparing MovieLens-100K (cached after the first run)")
    dataset = load_builtin("ml-100k")
    dataset.save(out / "data")
    _print_stats(dataset)
    split = make_split(dataset, "loo")
    results: list[EvalResult] = []
    for name in split_names(args.models):
        print(f"\n== {name}: fitting on the training split")
        start = time.perf_counter()
        model = registry.create(name).fit(split.train, dataset.catalog, split.valid)
        print(f"   fitted in {time.perf_counter() - start:.1f} s")
        model.save(out / "models" / name)
        for protocol in ("full", "sampled"):
            result = run_evaluation(model, dataset, split.test, EvalConfig(protocol=protocol))
            result.write(
                out / f"{name}-{protocol}.metrics.json", out / f"{name}-{protocol}.rankings.jsonl"
            )
            results.append(result)
    print("\n== test metrics, leave-one-out (full: history items excluded; sampled: 1 + 19)")
    print(format_table([r for r in results if r.protocol == "full"]))
    print()
    print(format_table([r for r in results if r.protocol == "sampled"], ks=(1, 5, 10, 20)))
    print(f"\nmetrics and rankings in {out}/")
    return 0
