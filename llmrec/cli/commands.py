"""Implementations of the CLI subcommands (imported only when a subcommand runs)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
import typing
from pathlib import Path
from typing import Any

import yaml

from llmrec.data import (
    BUILTIN_DATASETS,
    ColumnMapping,
    LoadOptions,
    RecDataset,
    SequenceOptions,
    apply_options,
    load_builtin,
    load_files,
    make_split,
)
from llmrec.evaluation import EvalConfig, EvalResult, format_table
from llmrec.evaluation import evaluate as run_evaluation

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


def open_dataset(spec: str) -> RecDataset:
    """A prepared dataset folder, or a built-in dataset by name (fetched and cached)."""
    path = Path(spec)
    if (path / "manifest.json").is_file():
        return RecDataset.load(path)
    if spec in BUILTIN_DATASETS:
        return load_builtin(spec)
    raise FileNotFoundError(
        f"{spec!r} is neither a prepared dataset folder nor a built-in dataset "
        f"({', '.join(BUILTIN_DATASETS)}); run `llmrec data prepare` first"
    )


# --------------------------------------------------------------------------- evaluate
def evaluate(args: argparse.Namespace) -> int:
    from llmrec import baselines

    dataset = open_dataset(args.data)
    split = make_split(dataset, args.split)
    config = _model_config(args.model, args.set)
    if args.load:
        model = baselines.load(args.model, args.load, dataset.catalog)
    else:
        model = baselines.create(args.model, **config)
        start = time.perf_counter()
        model.fit(split.train_for(args.part), dataset.catalog, split.valid)
        logger.info("fitted %s in %.1f s", args.model, time.perf_counter() - start)
    if args.save:
        model.save(args.save)
        print(f"model saved to {args.save}")
    eval_config = EvalConfig(
        protocol=args.protocol, seed=args.seed, depth=args.depth, n_negatives=args.negatives
    )
    result = run_evaluation(model, dataset, split.cases(args.part), eval_config, part=args.part)
    result.notes[:0] = split.report
    result.write(args.metrics_out, args.rankings_out)
    _print_result(result)
    for label, path in (("metrics", args.metrics_out), ("rankings", args.rankings_out)):
        if path:
            print(f"{label} written to {path}")
    return 0


def _model_config(name: str, pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> typed keyword arguments, checked against the config dataclass."""
    from llmrec import baselines

    if not pairs:
        return {}
    cls = baselines.config_class(name)
    hints = typing.get_type_hints(cls)
    valid = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in valid:
            raise ValueError(
                f"--set {pair!r}: expected KEY=VALUE with KEY one of {sorted(valid)} for {name}"
            )
        value = yaml.safe_load(raw)
        hint = hints.get(key)
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[key] = value
    return out


def _print_result(result: EvalResult) -> None:
    print(format_table([result]))
    for note in result.notes:
        print(f"note: {note}")


# --------------------------------------------------------------------------- quickstart
def quickstart(args: argparse.Namespace) -> int:
    """Prepare ML-100K and print the baselines' table under both protocols."""
    from llmrec import baselines

    out = Path(args.out)
    print("== preparing MovieLens-100K (cached after the first run)")
    dataset = load_builtin("ml-100k")
    dataset.save(out / "data")
    _print_stats(dataset)
    split = make_split(dataset, "loo")
    results: list[EvalResult] = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        print(f"\n== {name}: fitting on the training split")
        start = time.perf_counter()
        model = baselines.create(name).fit(split.train, dataset.catalog, split.valid)
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
