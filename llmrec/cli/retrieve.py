"""``llmrec retrieve fit | build | query``: the multi-view retrieval stage from the command line."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrec.cli._shared import add_set_option, split_names

if TYPE_CHECKING:
    from llmrec.cli.recommenders import FusedSettings
    from llmrec.data import RecDataset, UserSequence


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ret = sub.add_parser("retrieve", help="multi-view candidate retrieval (fit, build, query)")
    ret_sub = ret.add_subparsers(dest="retrieve_command", required=True, metavar="COMMAND")

    fit = ret_sub.add_parser(
        "fit",
        help="fine-tune the text view's sentence-transformer on the interactions",
        description="Contrastive fine-tuning on (history text -> next item text) pairs from the "
        "training split, validated by retrieval metrics; checkpoints make it resumable.",
    )
    fit.add_argument("--data", default="ml-100k", help="prepared dataset folder or built-in name")
    fit.add_argument("--out", default="runs/text-encoder", help="output folder")
    fit.add_argument("--base", help="encoder to start from (default: packaged all-MiniLM-L6-v2)")
    fit.add_argument("--epochs", type=float, default=1.0)
    fit.add_argument(
        "--max-steps",
        type=int,
        default=90,
        help="optimizer steps (default 90: ~12 minutes on 2 CPU cores; -1: use --epochs)",
    )
    fit.add_argument("--batch-size", type=int, default=32)
    fit.add_argument("--lr", type=float, default=1e-4)
    fit.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    add_set_option(
        fit, "the fine-tuning config (TextFinetuneConfig; wins over the flags)", "warmup=0.1"
    )
    fit.set_defaults(func=cmd_fit)

    build = ret_sub.add_parser(
        "build",
        help="fit the views, tune the fusion on validation, build the faiss index, save",
    )
    build.add_argument("--data", default="ml-100k", help="prepared dataset folder or built-in name")
    build.add_argument("--out", default="runs/retriever", help="output folder")
    build.add_argument(
        "--views", default="text,sasrec,cooc,recent-pop,pop", help="comma-separated views"
    )
    build.add_argument("--text-model", help="encoder of the text view (e.g. the output of fit)")
    build.add_argument("--fusion", choices=["weighted", "rrf"], default="weighted")
    build.add_argument(
        "--index",
        choices=["auto", "flat", "hnsw", "ivf"],
        default="auto",
        help="faiss index of the text view (auto: exact below 100k items)",
    )
    add_set_option(
        build,
        "the fused retriever's config: the fusion's settings at the top, each view's config "
        "under views.NAME",
        "rrf_k=30 --set weights.text=2 --set views.sasrec.epochs=50",
    )
    build.set_defaults(func=cmd_build)

    query = ret_sub.add_parser("query", help="top-k candidates with the views behind each")
    query.add_argument("--retriever", default="runs/retriever", help="folder written by build")
    query.add_argument("--data", help="dataset (default: the one the retriever was built on)")
    who = query.add_mutually_exclusive_group()
    who.add_argument("--user", help="a user id of the dataset: their whole history is used")
    who.add_argument("--history", help="comma-separated item ids, oldest first")
    query.add_argument("--query", help='free text, e.g. "something funny from the 90s"')
    query.add_argument("-k", type=int, default=10, help="how many candidates (default 10)")
    query.add_argument("--json", action="store_true", help="print JSON lines")
    query.set_defaults(func=cmd_query)


# --------------------------------------------------------------------------- fit
def cmd_fit(args: argparse.Namespace) -> int:
    from llmrec.data import make_split, open_dataset
    from llmrec.overrides import apply_overrides
    from llmrec.retrieval.text_finetune import TextFinetuneConfig, finetune_text_encoder

    flags = TextFinetuneConfig(
        output_dir=args.out,
        base_model=args.base,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
    )
    config = apply_overrides(flags, args.set, "the text fine-tuning config")  # --set wins
    dataset = open_dataset(args.data)
    split = make_split(dataset, "loo")
    start = time.perf_counter()
    final = finetune_text_encoder(
        split.train, dataset.catalog, config, split.valid, resume=args.resume
    )
    print(f"fine-tuned encoder written to {final} ({time.perf_counter() - start:.0f} s)")
    print(f"use it: llmrec retrieve build --data {args.data} --text-model {final}")
    return 0


# --------------------------------------------------------------------------- build
def cmd_build(args: argparse.Namespace) -> int:
    from llmrec.data import open_dataset

    views = split_names(args.views)
    settings = retriever_settings(views, args.set, args.fusion, args.text_model)
    dataset = open_dataset(args.data)
    build_retriever(dataset, str(args.data), settings, args.out, args.index)
    return 0


def retriever_settings(
    views: list[str], pairs: list[str], fusion: str = "weighted", text_model: str | None = None
) -> FusedSettings:
    """The fused retriever's settings from the flags (``--fusion``, ``--text-model``), then
    ``--set`` (which wins)."""
    from llmrec.cli.recommenders import fused_settings, view_config
    from llmrec.retrieval.fusion import FusionConfig

    view_configs = {}
    if text_model:
        from llmrec.retrieval.text_finetune import view_settings_for

        if "text" not in views:
            raise ValueError("--text-model given but 'text' is not among --views")
        view_configs["text"] = view_config("text", **view_settings_for(text_model))
    return fused_settings(views, pairs, FusionConfig(method=fusion), view_configs)


def build_retriever(
    dataset: RecDataset,
    data: str,
    settings: FusedSettings,
    out: str | Path,
    index: str = "auto",
) -> Path:
    """Fit the views on the leave-one-out training split, tune the fusion on validation, and
    write a retriever folder (the fused retriever, the text view's index, the manifest naming
    ``data``) that :func:`llmrec.retrieval.saved.load_retriever` reads."""
    from llmrec.data import make_split
    from llmrec.retrieval.saved import save_retriever

    split = make_split(dataset, "loo")
    retriever = settings.build()
    start = time.perf_counter()
    retriever.fit(split.train, dataset.catalog, split.valid)
    views = list(retriever.views)
    print(f"fitted {len(views)} views and tuned the fusion in {time.perf_counter() - start:.0f} s")
    print(f"fusion: {retriever.describe()}")
    out = save_retriever(
        out, retriever, dataset.catalog, data=data, dataset=dataset.name, index=index
    )
    if "text" in views:
        print(f"text index ({index}) written to {out / 'index'}")
    print(f"retriever written to {out}")
    return out


# --------------------------------------------------------------------------- query
def cmd_query(args: argparse.Namespace) -> int:
    from llmrec.data import open_dataset
    from llmrec.retrieval.saved import load_retriever, read_manifest

    manifest = read_manifest(args.retriever)
    dataset = open_dataset(args.data or manifest["data"])
    catalog = dataset.catalog
    if args.k < 1 or args.k > 1000:
        raise ValueError(f"-k must be between 1 and 1000, got {args.k}")
    history = _history(args, dataset)
    retriever = load_retriever(args.retriever, catalog)
    query = args.query.strip() if args.query is not None else None
    if args.query is not None and not query:
        raise ValueError("--query is empty; leave it out to retrieve by history alone")
    if len(history) == 0 and query is None:
        print("note: no history and no query: candidates come from the popularity views")
    candidates = retriever.retrieve([history], k=args.k, queries=[query])[0]
    for rank, cand in enumerate(candidates, start=1):
        item = catalog.item(cand.item_id)
        if args.json:
            row = {
                "rank": rank,
                "item_id": cand.item_id,
                "title": item.title,
                "year": item.year,
                "score": round(cand.score, 6),
                "views": {
                    v: {"rank": e.rank, "score": round(e.score, 6)} for v, e in cand.views.items()
                },
            }
            print(json.dumps(row, ensure_ascii=False))
        else:
            year = f" ({item.year})" if item.year else ""
            views = ", ".join(f"{v}#{e.rank + 1}" for v, e in cand.views.items()) or "-"
            print(
                f"{rank:3d}. [{cand.item_id}] {item.title}{year}  score {cand.score:.3f}  "
                f"views: {views}"
            )
    return 0


def _history(args: argparse.Namespace, dataset: Any) -> UserSequence:
    from llmrec.data import UserSequence

    if args.user is not None:
        for seq in dataset.sequences():
            if seq.user_id == args.user:
                return seq
        raise ValueError(f"user {args.user!r} is not in dataset {dataset.name!r}")
    if args.history:
        ids = split_names(args.history)
        unknown = [i for i in ids if i not in dataset.catalog]
        if unknown:
            raise ValueError(
                f"--history has item ids not in the catalogue: {unknown[:10]}"
                + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            )
        return UserSequence("query", tuple(ids), tuple(float(t) for t in range(len(ids))))
    return UserSequence("query", (), ())
