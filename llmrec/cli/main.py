"""The ``llmrec`` command. Subcommands import their dependencies lazily, so ``--help`` is instant.

    llmrec data prepare --dataset ml-100k --out data/ml-100k
    llmrec data stats data/ml-100k
    llmrec evaluate --data data/ml-100k --model sasrec --protocol full \
        --metrics-out runs/sasrec.json --rankings-out runs/sasrec.jsonl
    llmrec quickstart
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from llmrec import __version__
from llmrec.cli._shared import add_set_option


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="prepare and inspect datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    prep = data_sub.add_parser(
        "prepare",
        help="read interaction logs (or a built-in dataset) into a prepared dataset folder",
        description="Read interactions, items and users; validate them; build time-ordered "
        "behaviour sequences; write a prepared dataset folder (Parquet + manifest).",
    )
    src = prep.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a built-in dataset: ml-100k")
    src.add_argument(
        "--inter",
        help="interactions file (.inter/.csv/.tsv/.parquet/.jsonl) or "
        "a datasets save_to_disk folder",
    )
    prep.add_argument("--items", help="items file (ids and text fields)")
    prep.add_argument("--users", help="users file (ids and profile fields)")
    prep.add_argument("--name", help="dataset name (default: the file or dataset name)")
    prep.add_argument(
        "--format",
        choices=["atomic", "csv", "tsv", "parquet", "jsonl", "hf"],
        help="file format (default: from the file suffix)",
    )
    prep.add_argument("--encoding", default="utf-8", help="text encoding (default utf-8)")
    prep.add_argument(
        "--col",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="map a field to your column, e.g. --col item_id=movie --col timestamp=ts (repeatable)",
    )
    prep.add_argument("--mapping", help="YAML file with the column mapping")
    prep.add_argument("--min-rating", type=float, help="keep interactions rated >= this")
    prep.add_argument("--k-core", type=int, help="keep users and items with >= K interactions")
    prep.add_argument(
        "--dedup",
        choices=["none", "first", "last"],
        default="none",
        help="repeated (user, item) interactions: keep all, the first or the last",
    )
    prep.add_argument("--max-len", type=int, help="keep each user's most recent N interactions")
    prep.add_argument(
        "--drop-unknown-items",
        action="store_true",
        help="drop (and count) interactions whose item is not in the items file",
    )
    prep.add_argument(
        "--drop-users-without-interactions",
        action="store_true",
        help="drop (and count) users of the users file with no interactions",
    )
    prep.add_argument("--out", help="output folder (default: data/NAME)")
    prep.set_defaults(func=_cmd_prepare)

    stats = data_sub.add_parser("stats", help="print statistics of a prepared dataset")
    stats.add_argument("data", help="prepared dataset folder, or a built-in dataset name")
    stats.add_argument("--json", action="store_true", help="print JSON instead of text")
    stats.set_defaults(func=_cmd_stats)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "evaluate",
        help="evaluate a recommender under the full-ranking or sampled protocol",
        description="Fit (or load) a recommender on the training split and evaluate it. "
        "Full ranking excludes each user's history items from the ranking.",
    )
    ev.add_argument(
        "--data",
        default="ml-100k",
        help="prepared dataset folder or built-in name (default ml-100k)",
    )
    ev.add_argument(
        "--model",
        required=True,
        help="pop, markov, sasrec, text, cooc, recent-pop, fused, or llm (the whole pipeline: "
        "--retriever, optional --adapter)",
    )
    add_set_option(
        ev,
        "the model's config (for --model fused: the fusion's settings, each view's under "
        "views.NAME)",
        "epochs=50 (sasrec), --set views.sasrec.epochs=50 (fused)",
    )
    ev.add_argument(
        "--views", help="views of --model fused (default text,sasrec,cooc,recent-pop,pop)"
    )
    ev.add_argument("--load", metavar="DIR", help="load a saved model instead of fitting")
    llm = ev.add_argument_group("--model llm")
    llm.add_argument("--retriever", help="retriever folder (llmrec retrieve build)")
    llm.add_argument("--adapter", help="adapter folder (llmrec finetune); default zero-shot")
    llm.add_argument("--llm", help="base model (default: the adapter's, else the default LLM)")
    llm.add_argument(
        "--fusion-weight", type=float, help="retrieval weight (default: tuned on validation)"
    )
    llm.add_argument(
        "--tune-users", type=int, default=300, help="validation users for tuning (default 300)"
    )
    llm.add_argument("--users", type=int, help="evaluate a seeded sample of this many users")
    from llmrec.cli.llm import add_backend_arguments

    add_backend_arguments(llm)
    llm.add_argument(
        "--save-weight",
        action="store_true",
        help="write the weight tuned under --protocol full into the adapter folder "
        "(llmrec_ranker.json), where recommend and serve read it",
    )
    ev.add_argument("--save", metavar="DIR", help="save the fitted model here")
    ev.add_argument(
        "--split",
        choices=["loo", "time"],
        default="loo",
        help="leave-one-out (default) or global time split",
    )
    ev.add_argument("--part", choices=["test", "valid"], default="test")
    ev.add_argument("--protocol", choices=["full", "sampled"], default="full")
    ev.add_argument("--seed", type=int, default=0, help="seed of sampled candidates")
    ev.add_argument(
        "--negatives",
        type=int,
        default=19,
        help="negatives per user in the sampled protocol (default 19)",
    )
    ev.add_argument("--depth", type=int, default=100, help="items per user in the rankings file")
    ev.add_argument("--metrics-out", metavar="PATH", help="write metrics JSON here")
    ev.add_argument(
        "--rankings-out",
        metavar="PATH",
        help="write rankings JSON lines here (user_id, ranked, target)",
    )
    ev.set_defaults(func=_cmd_evaluate)


def _add_quickstart(sub: argparse._SubParsersAction) -> None:
    qs = sub.add_parser(
        "quickstart",
        help="the main job on the embedded defaults: prepare ML-100K, evaluate the baselines",
    )
    qs.add_argument("--out", default="runs/quickstart", help="folder for metrics and rankings")
    qs.add_argument("--models", default="pop,markov,sasrec", help="comma-separated models")
    qs.set_defaults(func=_cmd_quickstart)


def _add_retrieve(sub: argparse._SubParsersAction) -> None:
    from llmrec.cli import retrieve  # argparse only; the commands import their dependencies

    retrieve.add_parsers(sub)


def _add_llm(sub: argparse._SubParsersAction) -> None:
    from llmrec.cli import llm  # argparse only; the commands import their dependencies

    llm.add_parsers(sub)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from llmrec.cli import serve  # argparse only; FastAPI and the models load in the command

    serve.add_parsers(sub)


def _add_configs(sub: argparse._SubParsersAction) -> None:
    configs = sub.add_parser(
        "configs",
        help="list the shipped serve configs, recipes and accelerate configs, or print one's path",
        description="The YAML files that ship inside the package (the checkout's serve/ and "
        "finetune/ folders). `llmrec serve --config NAME` and `llmrec finetune --recipe NAME` "
        'take their names; `accelerate launch --config_file "$(llmrec configs '
        'finetune/accelerate/multi_gpu)"` the path of an accelerate config.',
    )
    configs.add_argument(
        "name",
        nargs="?",
        help="print the installed path of this file, e.g. serve/cpu or "
        "finetune/accelerate/multi_gpu (default: list them all)",
    )
    configs.set_defaults(func=_cmd_configs)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from llmrec.cli import demo  # argparse only; the command imports its dependencies

    demo.add_parsers(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmrec",
        description="LLM-based sequential recommendation: data, retrieval, PEFT-tuned LLM "
        "ranking with reasons, evaluation and serving.",
    )
    parser.add_argument("--version", action="version", version=f"llmrec {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(sub)
    _add_evaluate(sub)
    _add_retrieve(sub)
    _add_llm(sub)
    _add_serve(sub)
    _add_demo(sub)
    _add_quickstart(sub)
    _add_configs(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose + 1, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    from llmrec.data.errors import DataError

    try:
        return int(args.func(args) or 0)
    except (DataError, ValueError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:  # an optional dependency; the message names the extra to install
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- commands
def _cmd_prepare(args: argparse.Namespace) -> int:
    from llmrec.cli import commands

    return commands.prepare(args)


def _cmd_stats(args: argparse.Namespace) -> int:
    from llmrec.cli import commands

    return commands.stats(args)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if args.model == "llm":
        from llmrec.cli.llm import evaluate_llm

        return evaluate_llm(args)
    from llmrec.cli import commands

    return commands.evaluate(args)


def _cmd_quickstart(args: argparse.Namespace) -> int:
    from llmrec.cli import commands

    return commands.quickstart(args)


def _cmd_configs(args: argparse.Namespace) -> int:
    from llmrec import shipped

    if args.name:
        print(shipped.find(args.name))
        return 0
    rows = shipped.listing()
    width = max(len(name) for name, _ in rows)
    for name, path in rows:
        print(f"{name:<{width}}  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
