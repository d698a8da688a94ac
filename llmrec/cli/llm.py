"""``llmrec finetune`` and ``llmrec recommend``: the LLM stage from the command line."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrec.cli._shared import DeprecatedAlias, EnumChoices, add_set_option, print_result

if TYPE_CHECKING:
    from llmrec.finetune.summary import TrainingSummary


def add_backend_arguments(parser: Any) -> None:
    """``--backend`` and ``--dtype``: the model backend the ranking pipeline runs on (the same
    choice as a serve config's ``backend``)."""
    parser.add_argument(
        "--backend",
        choices=["transformers", "vllm"],
        default="transformers",
        help="model backend: transformers (CPU/GPU, every adapter method) or vllm (CUDA GPUs, "
        "LoRA adapters; pip install 'llmrec[vllm]')",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        help="model dtype: auto (bf16 where fast, else fp32), float32, ...",
    )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ft = sub.add_parser(
        "finetune",
        help="fine-tune a PEFT adapter (LoRA, AdaLoRA, prefix, QLoRA) for ranking and reasons",
        description="Build ranking examples from the training split with the serving prompt "
        "builder, train an adapter with validation NDCG@10 and early stopping, and save it in "
        "peft's format with llmrec's record. Shipped recipes (finetune/*.yaml, inside the "
        "package too): lora, adalora, prefix, qlora; `llmrec configs` lists them.",
    )
    ft.add_argument(
        "--recipe",
        default="lora",
        help="a shipped recipe name (lora, adalora, prefix, qlora) or a recipe YAML file "
        "(default: lora)",
    )
    ft.add_argument("--data", default="ml-100k", help="prepared dataset folder or built-in name")
    ft.add_argument("--out", default="runs/adapter-lora", help="output folder")
    ft.add_argument(
        "--retriever",
        help="retriever folder from `llmrec retrieve build` (default: fit the recipe's views)",
    )
    ft.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    add_set_option(
        ft,
        "the recipe (sections model, dtype, adapter, prompt, examples, training, retrieval)",
        "training.max_steps=100",
    )
    ft.set_defaults(func=cmd_finetune)
    ens = sub.add_parser(
        "ensemble",
        help="join trained next-item models (e.g. seeds of one recipe) into one model folder",
        description="Average the log-softmax of several trained next-item models (a product of "
        "experts): one folder holding a copy of each, evaluated, served and used as a view like "
        "a single model. One recipe trains seeded runs and joins them itself with "
        "`training.members` (nextitem-lora trains 2); this joins runs trained apart, e.g. "
        "`llmrec finetune --recipe nextitem-qlora --set training.seed=N --out ...` or the "
        "members (OUT/members/<i>/model) of several such runs.",
    )
    ens.add_argument("models", nargs="+", help="trained next-item model folders (OUT/model)")
    ens.add_argument("--out", required=True, help="the ensemble folder to write")
    ens.add_argument("--data", default="ml-100k", help="prepared dataset folder or built-in name")
    ens.set_defaults(func=cmd_ensemble)
    add_recommend_parser(sub)


def default_recipe() -> Path:
    """``finetune/lora.yaml`` (shipped inside the package as ``llmrec/finetune/_recipes``)."""
    from llmrec.shipped import RECIPES

    return RECIPES.path("lora")


def cmd_ensemble(args: argparse.Namespace) -> int:
    from llmrec.data import open_dataset
    from llmrec.nextitem.ensemble import (
        ENSEMBLE_NAME,
        NEXTITEM_MODELS,
        NextItemEnsemble,
        nextitem_kind,
    )

    for folder in args.models:
        kind = nextitem_kind(folder)
        if kind is None:
            raise ValueError(
                f"{folder} holds no trained next-item model ({' or '.join(NEXTITEM_MODELS)} "
                "in model.json); give the model folders `llmrec finetune` wrote (OUT/model)"
            )
        if kind == ENSEMBLE_NAME:
            members = Path(folder) / "members"
            raise ValueError(
                f"{folder} is an ensemble already; give its members' folders "
                f"({members}/<i>, or OUT/members/<i>/model of a training.members run)"
            )
    dataset = open_dataset(args.data)
    ensemble = NextItemEnsemble.from_folders(args.models, dataset.catalog)
    ensemble.save(args.out)
    print(f"ensemble of {len(args.models)} next-item models written to {args.out}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from llmrec.data import open_dataset
    from llmrec.finetune import processes
    from llmrec.finetune.recipe import load_recipe
    from llmrec.finetune.trainer import finetune
    from llmrec.shipped import RECIPES

    recipe_path = RECIPES.resolve(args.recipe) if args.recipe else default_recipe()
    recipe = load_recipe(recipe_path, args.set)
    # under `accelerate launch` one process per GPU runs this: a built-in dataset is fetched
    # and prepared by the main one first, and only the main one prints
    processes.init()
    main = processes.is_main()
    if not main:  # the main process reports; the others only warn
        logging.getLogger("llmrec").setLevel(max(logging.WARNING, logging.root.level))
    with processes.main_first():
        dataset = open_dataset(args.data)
    retriever = None
    if args.retriever:
        from llmrec.retrieval.saved import load_retriever

        retriever = load_retriever(args.retriever, dataset.catalog)
    what = "next-item LLM" if recipe.family == "nextitem" else "adapter"
    if main:
        where = f", {processes.world_size()} processes" if processes.distributed() else ""
        print(
            f"fine-tuning a {recipe.adapter.method} {what} on {recipe.model} ({recipe_path}{where})"
        )
    summary = finetune(recipe, dataset, args.out, retriever=retriever, resume=args.resume)
    if not main:
        return 0
    if recipe.family == "nextitem":
        print_nextitem_summary(summary, args.out)
    else:
        print_training_summary(summary, args.out)
    return 0


def print_nextitem_summary(summary: Any, out: str | Path) -> None:
    """What ``llmrec finetune`` prints after a next-item run."""
    from llmrec.finetune.summary import SUMMARY_FILE

    final = (summary.validation_final or {}).get("NDCG@10", float("nan"))
    sasrec = (summary.validation_sasrec or {}).get("NDCG@10")
    # only a run whose ID vectors started from a SASRec has one to compare with
    started = "" if sasrec is None else f" (the SASRec it started from: {sasrec:.4f})"
    members = getattr(summary, "members", 1)  # summaries written before training.members
    if members > 1:  # training.members: the runs one by one, then what they make together
        for i, run in enumerate(summary.member_validation or []):
            print(f"run {i} (seed +{i}): validation NDCG@10 {(run or {}).get('NDCG@10', 0):.4f}")
        started += f" (ensemble of {members} runs)"
    print(
        f"done: {summary.steps} steps in {summary.train_seconds:.0f} s "
        f"({summary.seconds_per_step:.2f} s/step); validation NDCG@10 {final:.4f}{started}"
    )
    print(f"model written to {summary.model}; summary in {Path(out) / SUMMARY_FILE}")
    print(
        json.dumps(
            {
                "trainable_parameters": summary.trainable_parameters,
                "peak_memory_mb": summary.peak_memory_mb,
            }
        )
    )


def print_training_summary(summary: TrainingSummary, out: str | Path) -> None:
    """What ``llmrec finetune`` prints when it is done."""
    from llmrec.finetune.summary import SUMMARY_FILE

    def ndcg(metrics: Mapping[str, float] | None) -> float:
        return float((metrics or {}).get("NDCG@10", float("nan")))

    print(
        f"done: {summary.steps} steps in {summary.train_seconds:.0f} s; validation NDCG@10 "
        f"{ndcg(summary.validation_final):.4f} "
        f"(zero-shot {ndcg(summary.validation_zero_shot):.4f}, "
        f"retriever alone {ndcg(summary.validation_retriever):.4f})"
    )
    print(f"adapter written to {summary.adapter}; summary in {Path(out) / SUMMARY_FILE}")
    print(
        json.dumps(
            {
                "trainable_parameters": summary.trainable_parameters,
                "peak_memory_mb": summary.peak_memory_mb,
            }
        )
    )


# --------------------------------------------------------------------------- recommend
def add_recommend_parser(sub: argparse._SubParsersAction) -> None:
    rec = sub.add_parser(
        "recommend",
        help="top-k recommendations with scores and reasons for a user or an ad-hoc history",
        description="Retrieve candidates, rank them with the LLM (one forward pass) fused with "
        "the retrieval scores, and explain the top items with grounded reasons.",
    )
    rec.add_argument("--retriever", default="runs/retriever", help="folder from retrieve build")
    rec.add_argument("--adapter", help="adapter folder from finetune (default: zero-shot base)")
    rec.add_argument("--llm", help="base model (default: the adapter's, else the default LLM)")
    rec.add_argument("--model", dest="llm", action=DeprecatedAlias, new="--llm")
    rec.add_argument("--data", help="dataset (default: the one the retriever was built on)")
    who = rec.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user id of the dataset: their whole history is used")
    who.add_argument("--history", help='titles or item ids, oldest first, ";"-separated')
    who.add_argument(
        "--all-users",
        action="store_true",
        help="every user of the dataset (their whole histories), written to --out with a "
        "progress bar",
    )
    rec.add_argument(
        "--out",
        metavar="FILE",
        help="with --all-users: write one row per user and rank here, as JSON lines, or as "
        "Parquet when FILE ends .parquet (written atomically)",
    )
    rec.add_argument("--query", help='free-text wish, e.g. "something darker"')
    rec.add_argument(
        "-k",
        type=int,
        default=5,
        help="how many items (default 5; beyond the 20 the LLM ranks, the retriever's order)",
    )
    rec.add_argument(
        "--reasons",
        choices=EnumChoices("llmrec.ranking.reasons", "ReasonMode"),
        default="generate",
        metavar="MODE",  # a metavar keeps argparse from reading the choices while building
        help="%(choices)s (default %(default)s): generated by the LLM and grounded (template "
        "fallback), template only, or none",
    )
    rec.add_argument("--fusion-weight", type=float, help="retrieval weight next to the LLM")
    rec.add_argument("--json", action="store_true", help="print JSON lines")
    add_backend_arguments(rec)
    rec.set_defaults(func=cmd_recommend)


def parse_history(text: str, dataset: Any) -> tuple[Any, list[str]]:
    """A UserSequence from ``"title; title"`` or item ids, and notes on how each was matched."""
    from llmrec.data import UserSequence
    from llmrec.data.titles import TitleIndex

    catalog = dataset.catalog
    index = TitleIndex(catalog)
    ids, notes = [], []
    for piece in [p.strip() for p in text.replace("\n", ";").split(";") if p.strip()]:
        if piece in catalog:
            ids.append(piece)
            continue
        match = index.match(piece)
        if match is None:
            raise ValueError(f"no catalogue item matches {piece!r}")
        ids.append(match.item_id)
        if match.score < 1.0:
            notes.append(f"{piece!r} matched {match.title!r} (similarity {match.score:.2f})")
    if not ids:
        raise ValueError("--history is empty")
    return UserSequence("adhoc", tuple(ids), tuple(float(i) for i in range(len(ids)))), notes


def cmd_recommend(args: argparse.Namespace) -> int:
    from llmrec.data import open_dataset
    from llmrec.ranking.recommend import load_pipeline
    from llmrec.retrieval.saved import read_manifest

    if args.k < 1:
        raise ValueError(f"-k must be at least 1, got {args.k}")
    if args.all_users != bool(args.out):
        raise ValueError("--all-users writes to --out FILE, and --out goes with --all-users")
    dataset = open_dataset(args.data or read_manifest(args.retriever)["data"])
    history, notes = None, []
    if args.user is not None:
        history = next((s for s in dataset.sequences() if s.user_id == args.user), None)
        if history is None:
            raise ValueError(f"user {args.user!r} is not in dataset {dataset.name!r}")
    elif args.history is not None:
        history, notes = parse_history(args.history, dataset)
    for note in notes:
        print(f"note: {note}")
    pipeline = load_pipeline(
        args.retriever,
        dataset,
        args.adapter,
        args.llm,
        fusion_weight=args.fusion_weight,
        backend=args.backend,
        dtype=args.dtype,
    )
    if args.all_users:
        return export_all_users(pipeline, dataset, args)
    answer = pipeline.answer(history, k=args.k, query=args.query, reasons=args.reasons)
    if answer.wish is not None and not args.json:
        print_understood(answer)
    for rank, rec in enumerate(answer.items, start=1):
        if args.json:
            print(json.dumps({"rank": rank, **rec.to_dict()}, ensure_ascii=False))
            continue
        year = f" ({rec.year})" if rec.year else ""
        views = ", ".join(f"{v}#{e['rank']}" for v, e in rec.views.items()) or "-"
        print(f"{rank}. [{rec.item_id}] {rec.title}{year}  score {rec.score:.3f}  views: {views}")
        if rec.reason is not None:
            print(f"   why: {rec.reason.text}  ({rec.reason.source})")
    return 0


#: The rows ``llmrec recommend --all-users --out FILE`` writes: one per user and rank, with the
#: types a Parquet file stores them as (``views``: {view: {rank, score}}, JSON text in Parquet).
EXPORT_COLUMNS = {
    "user_id": "string",
    "rank": "int64",
    "item_id": "string",
    "title": "string",
    "year": "int64",
    "score": "float64",
    "llm_score": "float64",
    "retrieval_score": "float64",
    "views": "json",
    "reason": "string",
    "reason_source": "string",
}


def export_all_users(pipeline: Any, dataset: Any, args: argparse.Namespace) -> int:
    """``--all-users --out FILE``: the top ``-k`` for every user of ``dataset``, one row per user
    and rank, written atomically (a stopped run leaves no partial file)."""
    import time

    from tqdm.auto import tqdm

    from llmrec.io import write_rows

    sequences = dataset.sequences()
    started = time.perf_counter()

    def rows() -> Any:
        for history in tqdm(sequences, desc="recommend", unit="user"):
            answer = pipeline.answer(history, k=args.k, query=args.query, reasons=args.reasons)
            for rank, rec in enumerate(answer.items, start=1):
                row = {**rec.to_dict(), "user_id": history.user_id, "rank": rank}
                yield {name: row.get(name) for name in EXPORT_COLUMNS}

    count = write_rows(args.out, rows(), EXPORT_COLUMNS)
    seconds = time.perf_counter() - started
    print(
        f"wrote {count} recommendations for {len(sequences)} users to {args.out} in {seconds:.0f} s"
    )
    return 0


def print_understood(answer: Any) -> None:
    """What was read from --query: each phrase, dropped constraints, the soft rest."""
    wish = answer.wish
    for phrase in wish.understood:
        print(f"understood: {phrase}")
    for dropped in answer.relaxed:
        print(f"relaxed: no item satisfies every constraint; dropped {dropped}")
    if wish.changed_query:
        print(f"searching for: {wish.query!r}" if wish.query else "searching for: (nothing more)")
    if wish.ignored:
        print("ignored: " + " ".join(wish.ignored))


# --------------------------------------------------------------------------- evaluate --model llm
def evaluate_llm(args: argparse.Namespace) -> int:
    """``llmrec evaluate --model llm``: the whole pipeline (retrieve -> LLM rank), reported twice:
    the pure LLM ranking and the fusion with retrieval scores (weight tuned on validation)."""
    import numpy as np

    from llmrec.data import make_split, open_dataset
    from llmrec.evaluation import EvalConfig, format_table
    from llmrec.evaluation import evaluate as run_evaluation
    from llmrec.evaluation.harness import Protocol
    from llmrec.ranking.recommend import load_pipeline
    from llmrec.ranking.settings import RankerSettings, write_ranker_settings
    from llmrec.ranking.tuning import fusion_grid, tuning_cases

    if not args.retriever:
        raise ValueError("--model llm needs --retriever (a folder from `llmrec retrieve build`)")
    if args.set or args.load or args.save or args.views:
        raise ValueError(
            "--set/--load/--save/--views configure a recommender fitted here; --model llm is "
            "assembled from --retriever, --adapter, --llm and --fusion-weight"
        )
    dataset = open_dataset(args.data)
    split = make_split(dataset, args.split)
    pipeline = load_pipeline(
        args.retriever,
        dataset,
        args.adapter,
        args.llm,
        fusion_weight=0.0,
        backend=args.backend,
        dtype=args.dtype,
    )
    ranker = pipeline.ranker
    ranker.progress = True
    cases = split.cases(args.part)
    if args.users and args.users < len(cases):
        rng = np.random.default_rng(0)
        cases = [cases[i] for i in np.sort(rng.choice(len(cases), args.users, replace=False))]
    eval_config = EvalConfig(
        protocol=args.protocol, seed=args.seed, depth=args.depth, n_negatives=args.negatives
    )
    if args.fusion_weight is not None:
        weight = float(args.fusion_weight)
    else:
        valid = tuning_cases(split.valid, args.adapter)
        if args.tune_users and args.tune_users < len(valid):
            rng = np.random.default_rng(1)
            pick = np.sort(rng.choice(len(valid), args.tune_users, replace=False))
            valid = [valid[i] for i in pick]
        # tuned under the protocol it is evaluated with: the sampled lists (target + random
        # negatives) want another weight than the retriever's own top-k
        quality = ranker.tune(
            valid, fusion_grid(args.adapter), dataset=dataset, protocol=eval_config
        )
        weight = ranker.config.fusion_weight
        print(
            f"fusion weight {weight:g} tuned on {len(valid)} validation users "
            f"({eval_config.protocol.value} protocol): {quality}"
        )
        # serving reranks the retriever's top-k, as full ranking does: only that weight can be
        # kept, and only when asked (evaluation does not write into an adapter folder by itself)
        if args.save_weight:
            if not args.adapter or eval_config.protocol is not Protocol.FULL:
                raise ValueError("--save-weight needs --adapter and --protocol full")
            settings = RankerSettings(weight, "validation", len(valid), quality)
            print(f"fusion weight saved to {write_ranker_settings(args.adapter, settings)}")
    results = []
    for label, w in (("llm", 0.0), ("llm+retrieval", weight)):
        ranker.config.fusion_weight = w
        ranker.name = label
        result = run_evaluation(ranker, dataset, cases, eval_config, part=args.part)
        result.model = label
        result.notes[:0] = split.report
        result.notes.append(f"adapter {args.adapter or 'none (zero-shot)'}; fusion weight {w:g}")
        results.append(result)
    fused = results[-1]
    fused.write(args.metrics_out, args.rankings_out)
    if args.metrics_out:
        pure_path = Path(args.metrics_out).with_suffix(".llm-only.json")
        results[0].write(str(pure_path))
    for result in results:
        print_result(result)
    print(format_table(results))
    return 0
