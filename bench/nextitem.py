"""The next-item LLM on MovieLens-100K: alone, fused with the retriever, as the reranker; against
the retriever and SASRec; speed; the ablation of what was tried.

    python bench/nextitem.py --retriever runs/retriever                  # all parts
    python bench/nextitem.py --retriever runs/retriever --train lora     # train missing first
    python bench/nextitem.py --retriever runs/retriever --parts ablation \\
        --ablation runs/ni-a,runs/ni-b

Models are read from ``runs/nextitem-<method>/model`` (train with ``llmrec finetune --recipe
finetune/nextitem-<method>.yaml --retriever runs/retriever --out runs/nextitem-<method>``; the
SASRec view of the retriever gives the item-ID start, so SASRec is fitted once). Writes
docs/nextitem.md.

1. rank: 943 test users (leave-one-out, history excluded), full ranking and the sampled protocol
   (target + 19 negatives): the retriever (fused views), its SASRec view, and for each method the
   model alone, the model as a sixth view of the retriever (fusion weights tuned on validation),
   and the model reranking the retriever's top 20 (fusion weight tuned on validation, pure and
   fused). Paired bootstrap intervals of per-user NDCG@10 (full) and HR@1 (sampled) against the
   retriever and SASRec. Training cost from each run's training.json.
2. slots: test NDCG@10 with the retriever's cold slots and without (``cold_slots=0``), for the
   retriever alone and with each method as a sixth view (weights tuned for NDCG@10 over 0-64).
3. cold: 10 % of the items (seed 0) held out of training, as in docs/retrieval.md; a next-item
   model trained on what is left (``runs/nextitem-cold``, the nextitem-lora recipe) scores the
   held-out items from their text alone; Recall@20/50/100 on the test users whose target is one
   of them, against the text view.
4. speed: scoring one user against the whole catalogue (p50/p95 latency, one at a time) and
   users/s in batches of 64.
5. ablation: one row per run folder given with ``--ablation`` (its recipe's differences from
   the shipped nextitem-lora recipe, validation and test NDCG@10, paired against SASRec).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from llmrec.data import leave_one_out, load_builtin
from llmrec.evaluation import EvalConfig, evaluate
from llmrec.nextitem.ensemble import ENSEMBLE_NAME, NextItemEnsemble, load_nextitem, nextitem_kind
from llmrec.nextitem.recommender import NextItemRecommender
from llmrec.nextitem.view import NextItemView
from llmrec.ranking.recommend import load_pipeline
from llmrec.ranking.tuning import fusion_grid
from llmrec.retrieval.fusion import FusedRetriever
from llmrec.retrieval.saved import load_retriever

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _figures import copy_figure, mean_interval, metric_bars  # noqa: E402
from _sections import repo_path, write_doc, write_section  # noqa: E402
from llm import _fmt, _git_commit, _paired, _per_user, _sample  # noqa: E402

PARTS = ("rank", "slots", "cold", "speed", "ablation")
METHODS = ("lora", "adalora", "prefix", "qlora")
FULL = EvalConfig(ks=(1, 5, 10, 20))
SAMPLED = EvalConfig(protocol="sampled", ks=(1, 5, 10))
RETRIEVER = "retriever (fused views)"
#: (label, test NDCG@10, low, high) of every row ranked in this run, for the figure
BARS: list[tuple[str, float, float, float]] = []
FIGURES = ROOT / "docs" / "figures"
SASREC = "SASRec (retriever view)"
LISTWISE = "listwise LoRA reranking the top 20, fused"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retriever", default=str(ROOT / "runs" / "retriever"))
    parser.add_argument("--methods", default="lora", help="comma-separated; reads "
                        "runs/nextitem-METHOD/model")  # fmt: skip
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--train", default="", help="methods to train first when missing")
    parser.add_argument("--users", type=int, default=0, help="test users (0: all 943)")
    parser.add_argument("--tune-users", type=int, default=300)
    parser.add_argument("--ablation", default="", help="comma-separated run folders")
    parser.add_argument(
        "--ensembles",
        default="",
        help="ablation rows of averaged runs: comma-separated groups of run folders joined "
        "by '+', e.g. runs/nextitem-lora+runs/nextitem-qlora",
    )
    parser.add_argument(
        "--tie-passes",
        default="",
        help="ablation: also score runs with these nextitem.tie_passes (comma-separated, "
        "e.g. 1,4): one row each, validation NDCG@10 measured at that setting",
    )
    parser.add_argument(
        "--tie-runs",
        default="",
        help="the --ablation folders --tie-passes applies to (comma-separated; default: all)",
    )
    parser.add_argument(
        "--view-tuning",
        default="",
        help="rank: extra rows of the retriever + next-item view with the fusion weights tuned "
        "otherwise, comma-separated METRIC:MAX_WEIGHT, e.g. NDCG@10:16, or "
        "METRIC:MAX_WEIGHT:nextitem to tune the new view's weight alone and keep the "
        "retriever's (default: only the retriever's own tuning, HR@20 over 0-4)",
    )
    parser.add_argument("--speed-users", type=int, default=200)
    parser.add_argument(
        "--cold-set",
        action="append",
        default=[],
        help="--set overrides of the first --cold-runs folder, trained when missing",
    )
    parser.add_argument(
        "--cold-runs",
        default="runs/nextitem-cold",
        help="comma-separated cold-start run folders, one row each; the first is trained "
        "(with --cold-set) when it has no model",
    )
    parser.add_argument(
        "--listwise",
        default=str(ROOT / "runs" / "bench-llm" / "rank-methods" / "lora.json"),
        help="the listwise LoRA row as bench/llm.py cached it (its fused rankings' per-user "
        "metrics), shown beside the next-item rows; skipped with a note when missing",
    )
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-nextitem"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "nextitem.md"))
    args = parser.parse_args()
    out = Path(args.out)
    (out / "sections").mkdir(parents=True, exist_ok=True)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = set(parts) - set(PARTS)
    if bad:
        raise SystemExit(f"unknown parts {sorted(bad)}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for variant in [v.strip() for v in args.view_tuning.split(",") if v.strip()]:
        metric, *rest = variant.split(":")
        if "@" not in metric or len(rest) not in (1, 2) or rest[1:] not in ([], ["nextitem"]):
            raise SystemExit(f"--view-tuning {variant!r}: expected METRIC:MAX[:nextitem]")
    for method in [m.strip() for m in args.train.split(",") if m.strip()]:
        if not (_run_dir(method) / "model" / "model.json").is_file():
            _train(method, args.retriever)
    data = load_builtin("ml-100k")
    split = leave_one_out(data)
    for part in PARTS:
        if part not in parts:
            continue
        started = time.perf_counter()
        if part == "rank":
            lines = _rank(data, split, methods, args, out)
        elif part == "speed":
            lines = _speed(data, split, methods, args)
        elif part == "cold":
            lines = _cold(data, split, args)
        elif part == "slots":
            lines = _slots(data, split, methods, args)
        else:
            lines = _ablation(data, split, args)
        write_section(out, part, lines, started, "bench/nextitem.py")
        _write_doc(out, Path(args.doc))
    print(Path(args.doc).read_text())
    return 0


def _write_doc(out: Path, doc: Path) -> None:
    header = [
        "# The next-item LLM (MovieLens-100K)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"Python {platform.python_version()}. Rerun with `python bench/nextitem.py` "
        "(`--parts rank,speed,ablation` remeasures only those sections).",
        "",
        "The history enters SmolLM2-135M-Instruct as item tokens: one input position per event, "
        "its vector the sum of a learned ID embedding (started from a rank-64 factorisation of "
        "the items' co-occurrence within 5 events; `id_init: sasrec` starts it from a SASRec's "
        "item embeddings instead) and embeddings of the time gap, rating and time of the event; "
        "with `text: true` also a projection of the item's text vector (the base LLM's mean "
        "hidden state over the item's rendered text, computed once), which lets the model score "
        "items never seen in training from their text alone. The LLM's first layers (adapted "
        "with PEFT) turn the sequence into hidden states, and the state at every position scores "
        "the whole catalogue against output item vectors (ID, plus text with `text: true`) with "
        "a per-item bias; cross-entropy at every position, as SASRec, over the items the window "
        "has not yet read (evaluation excludes the history too), for each of the next 5 items "
        "weighted 1/distance. The run keeps the weights its cosine schedule ends on. Half of "
        "ML-100K's consecutive training ratings share their second (`python bench/ties.py`), "
        "listed in file order, so "
        "two settings address that order noise: `nextitem.shuffle_ties` (training: each batch "
        "puts every run of events less than 2.6 s apart in a fresh random order) and "
        "`nextitem.tie_passes` (scoring: the mean log-probability over P orders of such runs, "
        "P forward passes); the ablation below measures both, neither shipped. The shipped "
        "LoRA recipe (`finetune/nextitem-lora.yaml`) keeps the LLM's first 3 layers and "
        "trains two runs of 16 epochs, seeds 0 and 1, saved as one model that averages their "
        "log-probabilities (`training.members: 2`; each run stays in `OUT/members/<i>`); the "
        "AdaLoRA, prefix and QLoRA recipes train one run of 8 epochs with otherwise the same "
        "settings. None reads the item text: the ablation below found the text part cost warm "
        "accuracy wherever it went (`--set nextitem.text=true` trains the cold-start variant). "
        "`llmrec ensemble` joins any runs trained apart into one such model: `mix` below "
        "joins the shipped LoRA pair with the QLoRA and prefix runs (55 minutes of training "
        "in all), the best on validation NDCG@10 of the joins of these runs that fit the "
        "60-minute budget (0.1481; the LoRA pair 0.1434, with AdaLoRA 0.1480, with QLoRA "
        "0.1461, with AdaLoRA and prefix 0.1473; `llmrec evaluate --data ml-100k --model "
        "nextitem --load FOLDER --part valid`). See "
        "docs/architecture.md and `llmrec/nextitem/`.",
        "",
        "## Use it",
        "",
        "```",
        "llmrec retrieve build --data ml-100k --out runs/retriever \\",
        "    --views text,sasrec,cooc,recent-pop,pop",
        "# two 3-layer runs of 16 epochs (~37 min on 2 cores), saved as one model",
        "llmrec finetune --recipe nextitem-lora --out runs/nextitem-lora",
        "# one run in half the time",
        "llmrec finetune --recipe nextitem-lora --set training.members=1 --out runs/nextitem-one",
        "# the mix (~55 min in all): those two runs, one QLoRA run and one prefix run",
        "llmrec finetune --recipe nextitem-qlora --out runs/nextitem-qlora",
        "llmrec finetune --recipe nextitem-prefix --out runs/nextitem-prefix",
        "llmrec ensemble --out runs/nextitem-mix/model runs/nextitem-lora/members/*/model \\",
        "    runs/nextitem-qlora/model runs/nextitem-prefix/model",
        "llmrec evaluate --data ml-100k --model nextitem --load runs/nextitem-lora/model",
        "llmrec evaluate --data ml-100k --model llm --retriever runs/retriever \\",
        "    --adapter runs/nextitem-lora/model --save-weight      # as the reranker",
        "llmrec recommend --retriever runs/retriever --adapter runs/nextitem-lora/model --user 1",
        "```",
        "",
        "In a serve config, list the model folder under `adapters:` like a listwise adapter "
        '(`next: runs/nextitem-lora/model`); requests pick it with `"model": "next"`. Its '
        "reasons are written by the base model (grounded and claim-checked as every reason). "
        "Recipes for each PEFT method: `finetune/nextitem-{lora,adalora,prefix,qlora}.yaml`; "
        "`--resume` continues an interrupted run from its last checkpoint; curves go to "
        "`OUT/tensorboard`.",
        "",
        "**vLLM.** The next-item model runs on transformers (CPU or GPU) whichever backend is "
        "configured: vLLM serves token prompts with LoRA adapters, while this model reads "
        "computed item vectors (`inputs_embeds`, a projection of text, ID and event embeddings "
        "made outside the LLM), keeps only the LLM's first layers and ends in its own item "
        "head. With `backend: vllm` the listwise adapters and the reason writer run on vLLM "
        "and the next-item model beside them on transformers. Serving it through vLLM's "
        "pooling runner (prompt embeddings in, hidden state out) would need the cut model "
        "saved as its own checkpoint and the item head applied outside; not built, and with no "
        "GPU here it could not be verified.",
        "",
    ]
    write_doc(out, doc, header, PARTS)


def _run_dir(method: str) -> Path:
    return ROOT / "runs" / f"nextitem-{method}"


def _train(method: str, retriever: str) -> None:
    cmd = [
        sys.executable, "-m", "llmrec.cli.main", "finetune",
        "--recipe", str(ROOT / "finetune" / f"nextitem-{method}.yaml"),
        "--retriever", retriever, "--out", str(_run_dir(method)),
    ]  # fmt: skip
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _row(name: str, full, sampled, baselines, cost: str = "-") -> tuple[list[str], dict]:  # noqa: ANN001
    """A table row and the paired differences of one model's two evaluations."""
    mine = (_per_user(full, "NDCG@10"), _per_user(sampled, "HR@1"))
    BARS.append((name, *mean_interval(mine[0])))
    paired = {}
    cells = [name, _fmt(full.metrics["NDCG@10"]), _fmt(full.metrics["HR@10"])]
    for base in (RETRIEVER, SASREC):
        if base in baselines and base != name:
            theirs = baselines[base]
            paired[base] = [_paired(mine[0], theirs[0]), _paired(mine[1], theirs[1])]
    cells += [paired.get(RETRIEVER, ["-"])[0], paired.get(SASREC, ["-"])[0]]
    cells += [_fmt(sampled.metrics["HR@1"]), paired.get(SASREC, ["-", "-"])[1], cost]
    return cells, {"full": full.metrics, "sampled": sampled.metrics, "paired": paired}


def _listwise(path: Path, users: int, baselines) -> tuple[list[str], dict] | str:  # noqa: ANN001
    """The listwise LoRA reranker's fused row from bench/llm.py's cache (same test users in the
    same order), paired against this run's baselines; a note when there is none to read."""
    rerun = "`python bench/llm.py --methods lora --train`"
    if not path.is_file():
        return f"The listwise LoRA row is missing: no `{repo_path(path, ROOT)}` (run {rerun})."
    record = json.loads(path.read_text())
    per_user = {k: np.asarray(v, dtype=float) for k, v in record.get("per_user", {}).items()}
    if any(len(per_user.get(p, ())) != users for p in ("full", "sampled")):
        return (
            f"The listwise LoRA row in `{repo_path(path, ROOT)}` was measured on other test "
            f"users than these {users} (rerun {rerun})."
        )
    full, sampled = record["metrics"]["full_fused"], record["metrics"]["sampled_fused"]
    name = f"{LISTWISE} (bench/llm.py row of {record['measured']})"
    BARS.append((LISTWISE, *mean_interval(per_user["full"])))
    paired = {
        base: [_paired(per_user["full"], theirs[0]), _paired(per_user["sampled"], theirs[1])]
        for base, theirs in baselines.items()
    }
    training = record.get("training") or {}
    cost = "-"
    if training:
        cost = (
            f"{training['trainable_parameters'] / 1e6:.2f} M trainable, "
            f"{training['train_seconds'] / 60:.0f} min ({training['steps']} steps)"
        )
    cells = [name, _fmt(full["NDCG@10"]), _fmt(full["HR@10"]), paired[RETRIEVER][0]]
    cells += [paired[SASREC][0], _fmt(sampled["HR@1"]), paired[SASREC][1], cost]
    return cells, {"full": full, "sampled": sampled, "paired": paired}


def _cost(folder: Path) -> str:
    """Trainable parameters, training time, steps and peak memory of a run; for an ensemble
    (``llmrec ensemble``) the sums over its members' runs (peak: the largest)."""
    if nextitem_kind(folder / "model") == ENSEMBLE_NAME:
        meta = json.loads((folder / "model" / "model.json").read_text())
        runs = meta["config"].get("member_runs", [])
        if not runs or any("train_seconds" not in r for r in runs):
            return "-"
    else:
        path = folder / "training.json"
        if not path.is_file():
            return "-"
        runs = [json.loads(path.read_text())]
    total = sum(r["train_seconds"] + r.get("sasrec_seconds", 0) + r.get("text_seconds", 0)
                for r in runs)  # fmt: skip
    first = runs[0]
    members = f"{len(runs)} runs, " if len(runs) > 1 else ""
    return (
        f"{sum(r['trainable_parameters'] for r in runs) / 1e6:.2f} M trainable, {members}"
        f"{total / 60:.0f} min ({sum(r['steps'] for r in runs)} steps, "
        f"{first['seconds_per_step']:.2f} s/step), "
        f"{max(r['peak_memory_mb'] for r in runs) / 1024:.1f} GiB peak"
    )


def _rank(data, split, methods, args, out: Path) -> list[str]:  # noqa: ANN001
    commit = _git_commit()
    test = _sample(split.test, args.users, 0)
    valid = _sample(split.valid, args.tune_users, 1)
    retriever = load_retriever(args.retriever, data.catalog)
    baselines: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rows, results = [], {}
    for name, model in ((RETRIEVER, retriever), (SASREC, retriever.views["sasrec"])):
        full, sampled = evaluate(model, data, test, FULL), evaluate(model, data, test, SAMPLED)
        baselines[name] = (_per_user(full, "NDCG@10"), _per_user(sampled, "HR@1"))
        cells, results[name] = _row(name, full, sampled, baselines)
        rows.append(cells)
    listwise = _listwise(Path(args.listwise), len(test), baselines)
    if isinstance(listwise, str):
        notes = [listwise, ""]
    else:
        notes = []
        rows.append(listwise[0])
        results[LISTWISE] = listwise[1]
    for method in methods:
        folder = _run_dir(method)
        model_dir = folder / "model"
        if not (model_dir / "model.json").is_file():
            print(f"skipping {method}: no model in {model_dir}", flush=True)
            continue
        cost = _cost(folder)
        alone = load_nextitem(model_dir, data.catalog)
        label = f"next-item LLM ({method}) alone"
        full, sampled = evaluate(alone, data, test, FULL), evaluate(alone, data, test, SAMPLED)
        stem = str(out / f"{method}-alone")
        full.write(f"{stem}.metrics.json", f"{stem}.rankings.jsonl")
        cells, results[label] = _row(label, full, sampled, baselines, cost)
        rows.append(cells)
        # a sixth view of the retriever, fusion weights tuned on validation as retrieve build does
        fused = _with_view(retriever, alone, model_dir, data)
        tuned = fused.tune_weights(split.valid)  # all of them, as retrieve build tunes
        weight = tuned["weights"].get("nextitem", 0)  # absent: the view is left out
        label = f"retriever + next-item view ({method}, tuned weight {weight:g})"
        full, sampled = evaluate(fused, data, test, FULL), evaluate(fused, data, test, SAMPLED)
        cells, results[label] = _row(label, full, sampled, baselines)
        results[label]["weights"] = tuned
        rows.append(cells)
        # the same six views tuned otherwise (--view-tuning METRIC:MAX): e.g. for the target's
        # own metric over a grid that lets the new view outweigh the others
        # (METRIC:MAX:nextitem tunes the new view's weight alone, the retriever's kept)
        for variant in [v.strip() for v in args.view_tuning.split(",") if v.strip()]:
            metric, top, *only = variant.split(":")
            grid = tuple(g for g in (0, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64) if g <= float(top))
            fused.config = replace(retriever.config, tune_metric=metric, tune_views=only)
            fused.weights = {**(getattr(retriever, "weights", {}) or {}), "nextitem": 0.0}
            tuned = fused.tune_weights(split.valid, grid=grid)
            weight = tuned["weights"].get("nextitem", 0)
            which = "its weight alone tuned" if only else "weights tuned"
            label = (
                f"retriever + next-item view ({method}, {which} for validation {metric} "
                f"over 0-{float(top):g}, weight {weight:g})"
            )
            full = evaluate(fused, data, test, FULL)
            sampled = evaluate(fused, data, test, SAMPLED)
            cells, results[label] = _row(label, full, sampled, baselines)
            results[label]["weights"] = tuned
            rows.append(cells)
        # the reranker of the retriever's top 20: pure, and fused at a weight tuned on validation
        pipe = load_pipeline(args.retriever, data, model_dir, fusion_weight=0.0)
        ranker = pipe.ranker
        for mode in ("pure", "fused"):
            if mode == "fused":
                ranker.tune(valid, fusion_grid(model_dir), dataset=data, protocol=FULL)
            label = f"next-item LLM ({method}) reranking the top 20, {mode}"
            if mode == "fused":
                label += f" (weight {ranker.config.fusion_weight:g})"
            full = evaluate(ranker, data, test, FULL)
            ranker_sampled = evaluate(ranker, data, test, SAMPLED)
            cells, results[label] = _row(label, full, ranker_sampled, baselines)
            rows.append(cells)
    (out / "rank.json").write_text(json.dumps(results, indent=2) + "\n")
    targets = _targets(results, methods)
    # the figure: the baselines, each model alone and as the serve path ranks (reranking the
    # retriever's top 20, fused); every other way is in the table
    shown = [
        bar
        for bar in BARS
        if bar[0] in (RETRIEVER, SASREC, LISTWISE)
        or bar[0].endswith(" alone")
        or "reranking the top 20, fused" in bar[0]
    ]
    figure = metric_bars(
        FIGURES / "nextitem-ndcg.png",
        shown,
        "test NDCG@10 (full ranking, 95 % bootstrap interval)",
        f"Next-item LLM on MovieLens-100K ({len(test)} test users)",
    )
    curves, drawn = [], set()
    for method in methods:
        folder = _run_dir(method)
        # a run of training.members draws one curve per member run
        sources = [("", folder)] + [
            (f" run {m.name}", m) for m in sorted((folder / "members").glob("*")) if m.is_dir()
        ]
        for suffix, source in sources:
            if source.resolve() in drawn:  # e.g. a member run benched on its own too
                continue
            drawn.add(source.resolve())
            copied = copy_figure(
                source / "training-curve.png",
                FIGURES / f"nextitem-{method}{suffix.replace(' ', '-')}-curve.png",
            )
            if copied is not None:
                curves.append(f"![training curve, {method}{suffix}](figures/{copied.name})")
    header = (
        "| model | NDCG@10 | HR@10 | NDCG@10 vs retriever | NDCG@10 vs SASRec | sampled HR@1 | "
        "HR@1 vs SASRec | training |"
    )
    return [
        "## Ranking (test users, both protocols)",
        "",
        f"{len(test)} test users; full ranking over all 1,682 items with the history excluded; "
        "the sampled protocol ranks the target among 19 seeded random negatives. Differences "
        "are paired over the same users: mean [95% bootstrap interval]. Fusion weights tuned "
        f"on {len(valid)} validation users. Code at commit {commit}; retriever "
        f"`{repo_path(args.retriever, ROOT)}`.",
        "",
        header,
        "|" + "---|" * 8,
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
        *notes,
        *targets,
        f"![test NDCG@10 of the baselines and each model alone and reranking the retriever's "
        f"top 20](figures/{figure.name})",
        "",
        *[f"{c}\n" for c in curves],
    ]


def _with_view(retriever, alone, model_dir: Path, data) -> FusedRetriever:  # noqa: ANN001
    """The retriever with ``alone`` (a loaded next-item model) as a sixth view, weighted 0 until
    tuned; the five views keep their tuned weights."""
    views = dict(retriever.views)
    view = NextItemView(path=str(model_dir))
    view.model, view.catalog, view._source = alone, data.catalog, model_dir
    views["nextitem"] = view
    fused = FusedRetriever(views, retriever.config)
    fused.catalog = data.catalog
    fused.weights = {**(getattr(retriever, "weights", {}) or {}), "nextitem": 0.0}
    return fused


def _slots(data, split, methods, args) -> list[str]:  # noqa: ANN001
    """Test NDCG@10 with the retriever's cold slots (its ``cold_slots`` share of every list kept
    for items no ID view saw in training) and without, for the retriever alone and with each
    method as a sixth view (weights tuned for validation NDCG@10 over 0-64, slots on)."""
    test = _sample(split.test, args.users, 0)
    retriever = load_retriever(args.retriever, data.catalog)
    shipped = retriever.config.cold_slots
    cold = retriever.cold_items()
    cold = np.zeros(len(data.catalog), dtype=bool) if cold is None else cold
    n_cold = int(cold.sum())
    n_targets = int(cold[data.catalog.indices(c.target for c in test)].sum())
    rows = []

    def row(model, label: str) -> None:  # noqa: ANN001
        config = model.config
        on = evaluate(model, data, test, FULL)
        model.config = replace(config, cold_slots=0.0)
        off = evaluate(model, data, test, FULL)
        model.config = config
        a, b = _per_user(on, "NDCG@10"), _per_user(off, "NDCG@10")
        rows.append(f"| {label} | {a.mean():.4f} | {b.mean():.4f} | {_paired(b, a)} |")

    row(retriever, RETRIEVER)
    for method in methods:
        model_dir = _run_dir(method) / "model"
        if not (model_dir / "model.json").is_file():
            continue
        fused = _with_view(retriever, load_nextitem(model_dir, data.catalog), model_dir, data)
        fused.config = replace(retriever.config, tune_metric="NDCG@10")
        tuned = fused.tune_weights(split.valid, grid=(0, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64))
        weight = tuned["weights"]["nextitem"]
        row(fused, f"retriever + next-item view ({method}, weights tuned for validation "
                   f"NDCG@10 over 0-64, weight {weight:g})")  # fmt: skip
    return [
        "## Cold slots on warm users",
        "",
        f"The retriever keeps every {round(1 / shipped)}th place of a list (`cold_slots: "
        f"{shipped:g}`) for an item no ID view saw in training that the fused score rates above "
        f"average, so new items can be found. Here {n_cold} of the {len(data.catalog)} items are "
        f"such items, the target of {n_targets} of these test users. Test NDCG@10 of "
        f"{len(test)} users with the slots and without "
        "(`--set cold_slots=0`), same weights; paired difference without minus with.",
        "",
        "| model | NDCG@10 with cold slots | without | difference |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


def _targets(results: dict, methods: list[str]) -> list[str]:
    """Where the issue's accuracy targets stand, read off this run's rows."""
    lines = ["Where the targets stand (this run):", ""]
    for method in methods:
        alone = results.get(f"next-item LLM ({method}) alone")
        # fused each way (as a view of the retriever; reranking its top 20 at the tuned
        # weight, as `llmrec recommend` and the server rank): every row, none picked on test
        prefixes = (f"retriever + next-item view ({method},", f"next-item LLM ({method}) reranking")
        fused = [(k, v) for k, v in results.items() if k.startswith(prefixes) and "pure" not in k]
        if alone is None:
            continue
        vs_sasrec = alone["paired"][SASREC][0]
        low = float(vs_sasrec.split("[")[1].split(",")[0])
        met = "met" if low > 0 else "not met"
        lines.append(
            f"- {method}, first milestone (alone above SASRec, paired interval above zero): "
            f"{met}, {vs_sasrec}."
        )
        lines.append(
            f"- {method} alone: full NDCG@10 {alone['full']['NDCG@10']:.4f} (target 0.130), "
            f"sampled HR@1 {alone['sampled']['HR@1']:.4f} (target 0.60)."
        )
        for label, row in fused:
            lines.append(
                f"- {label}: NDCG@10 {row['full']['NDCG@10']:.4f} (target 0.145, with the "
                f"interval vs the retriever above zero: {row['paired'][RETRIEVER][0]})."
            )
    return [*lines, ""]


def _speed(data, split, methods, args) -> list[str]:  # noqa: ANN001
    lines = ["## Speed (scoring the whole catalogue)", ""]
    lines += ["| model | p50 ms/user | p95 ms/user | users/s (batches of 64) |", "|" + "---|" * 4]
    histories = [c.history for c in split.test[: args.speed_users]]
    for method in methods:
        model_dir = _run_dir(method) / "model"
        if not (model_dir / "model.json").is_file():
            continue
        model = load_nextitem(model_dir, data.catalog)
        model.score(histories[:4])  # warm up
        times = []
        for history in histories:
            start = time.perf_counter()
            model.score([history])
            times.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        model.score(histories)
        rate = len(histories) / (time.perf_counter() - start)
        p50, p95 = np.percentile(times, [50, 95])
        lines.append(f"| next-item LLM ({method}) | {p50:.0f} | {p95:.0f} | {rate:.0f} |")
    lines += [
        "",
        f"{len(histories)} test users, one at a time (latency) and all together (throughput), "
        f"{torch.get_num_threads()} torch threads. The listwise reranker took 725 ms per user "
        "for its 20 candidates (docs/llm.md).",
        "",
    ]
    return lines


def _cold(data, split, args) -> list[str]:  # noqa: ANN001
    from llmrec.data.splits import hold_out_items
    from llmrec.finetune.nextitem import train_nextitem
    from llmrec.finetune.recipe import load_recipe
    from llmrec.retrieval import registry

    cold_split, cold = hold_out_items(split, data.catalog.ids, fraction=0.1, seed=0)
    cases = [c for c in cold_split.test if c.target in cold]
    runs = [ROOT / p.strip() for p in args.cold_runs.split(",") if p.strip()]
    if not runs:
        raise SystemExit("--cold-runs names no run folder")
    shipped = load_recipe(ROOT / "finetune" / "nextitem-lora.yaml")
    if not (runs[0] / "model" / "model.json").is_file():
        recipe = load_recipe(ROOT / "finetune" / "nextitem-lora.yaml", args.cold_set)
        train_nextitem(recipe, data, runs[0], split=cold_split)
    cfg = EvalConfig(ks=(20, 50, 100))
    text = registry.create("text").fit(cold_split.train, data.catalog, cold_split.valid)
    m = evaluate(text, data, cases, cfg).metrics
    rows = [
        f"| text view (pretrained encoder) | - | - | "
        f"{m['HR@20']:.4f} | {m['HR@50']:.4f} | {m['HR@100']:.4f} |"
    ]
    for run in runs:
        model = NextItemRecommender.load(run / "model", data.catalog)
        assert not model.net.known[data.catalog.indices(sorted(cold))].any()
        m = evaluate(model, data, cases, cfg).metrics
        summary = json.loads((run / "training.json").read_text())
        recipe = load_recipe(run / "recipe.yaml").to_dict()
        sets = ", ".join(_differences(recipe, shipped.to_dict())) or "as shipped"
        rows.append(
            f"| next-item LLM ({summary['method']}), `{repo_path(run, ROOT)}` | {sets} | "
            f"{summary['steps']} steps, {summary['train_seconds'] / 60:.0f} min | "
            f"{m['HR@20']:.4f} | {m['HR@50']:.4f} | {m['HR@100']:.4f} |"
        )
    return [
        "## Cold items",
        "",
        f"{len(cold)} of {len(data.catalog)} items (10 %, seed 0) held out of training; "
        f"{len(cases)} test users have one as their target. Each next-item model was trained on "
        "the rest; it has no ID vector for a held-out item and scores it from its text vector "
        "with the mean item bias. Full ranking over all items, history excluded; settings are "
        "those that differ from `finetune/nextitem-lora.yaml`.",
        "",
        "| model | settings | training | Recall@20 | Recall@50 | Recall@100 |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def _differences(recipe: dict, shipped: dict, prefix: str = "") -> list[str]:
    """``key=value`` for every setting of ``recipe`` that differs from ``shipped``."""
    out = []
    for key, value in recipe.items():
        base = shipped.get(key) if isinstance(shipped, dict) else None
        if isinstance(value, dict):
            out += _differences(value, base or {}, f"{prefix}{key}.")
        elif value != base:
            out.append(f"{prefix}{key}={value}")
    return out


def _ablation(data, split, args) -> list[str]:  # noqa: ANN001
    from llmrec.finetune.recipe import load_recipe

    shipped = load_recipe(ROOT / "finetune" / "nextitem-lora.yaml").to_dict()
    folders = [Path(p.strip()) for p in args.ablation.split(",") if p.strip()]
    test = split.test
    sasrec = load_retriever(args.retriever, data.catalog).views["sasrec"]
    base = _per_user(evaluate(sasrec, data, test, FULL), "NDCG@10")
    lines = [
        "## Ablation (what was tried)",
        "",
        "Each row is one training run; settings are those that differ from "
        "`finetune/nextitem-lora.yaml`. Test NDCG@10 is of the model alone (full ranking, 943 "
        f"users), paired against the retriever's SASRec view (test NDCG@10 {base.mean():.4f}); "
        "validation NDCG@10 is of the weights the run kept (all 943 validation users). A run "
        "that kept its best validation check (`training.keep=best`) has a second row: what "
        'the weights it ended on score. A row "scored with tie_passes=P" scores the same '
        "weights over P orders of each history's same-second runs (validation measured so "
        "too) and pairs its test NDCG@10 against the run as trained.",
        "",
        "| run | settings | steps | train min | valid NDCG@10 | test NDCG@10 | vs SASRec |",
        "|---|---|---|---|---|---|---|",
    ]
    passes = [int(p) for p in args.tie_passes.split(",") if p.strip()]
    tie_runs = {Path(p.strip()).resolve() for p in args.tie_runs.split(",") if p.strip()}
    for folder in folders:
        summary = json.loads((folder / "training.json").read_text())
        # read as a recipe, so settings added since the run show their defaults
        recipe = load_recipe(folder / "recipe.yaml").to_dict()
        model = NextItemRecommender.load(folder / "model", data.catalog)
        own = model.config.tie_passes
        diff = ", ".join(_differences(recipe, shipped)) or "as shipped"
        as_trained = None
        tried = {own}  # as trained, then the --tie-passes asked for
        if not tie_runs or folder.resolve() in tie_runs:
            tried |= set(passes)
        for p in sorted(tried, key=lambda p: (p != own, p)):
            model.config = replace(model.config, tie_passes=p)
            result = evaluate(model, data, test, FULL)
            mine = _per_user(result, "NDCG@10")
            if p == own:  # as trained: the run's own validation score
                valid, label = (summary.get("validation_final") or {}).get("NDCG@10"), diff
                as_trained = mine
            else:
                valid = evaluate(model, data, split.valid, FULL).metrics["NDCG@10"]
                label = f"{diff}; scored with tie_passes={p}"
                if as_trained is not None:
                    label += f" (test vs tie_passes={own}: {_paired(mine, as_trained)})"
            lines.append(
                f"| `{repo_path(folder, ROOT)}` | {label} | {summary['steps']} | "
                f"{summary['train_seconds'] / 60:.0f} | {_fmt(valid)} | "
                f"{_fmt(result.metrics['NDCG@10'])} | {_paired(mine, base)} |"
            )
        model.config = replace(model.config, tie_passes=own)
        last = _last_weights(folder, model)
        if last is not None:  # the run kept its best check: what its last weights score
            step, last_valid = last
            result = evaluate(model, data, test, FULL)
            mine = _per_user(result, "NDCG@10")
            lines.append(
                f"| `{repo_path(folder, ROOT)}`, its last weights | {diff} | {step} | "
                f"{summary['train_seconds'] / 60:.0f} | {_fmt(last_valid)} | "
                f"{_fmt(result.metrics['NDCG@10'])} | {_paired(mine, base)} |"
            )
    for group in [g.strip() for g in args.ensembles.split(",") if g.strip()]:
        members = [Path(p.strip()) for p in group.split("+") if p.strip()]
        ensemble = NextItemEnsemble.from_folders([f / "model" for f in members], data.catalog)
        summaries = [json.loads((f / "training.json").read_text()) for f in members]
        names = " + ".join(f"`{repo_path(f, ROOT)}`" for f in members)
        owns = [m.config.tie_passes for m in ensemble.members]
        as_trained = None
        # as trained (None), then every member scored with each --tie-passes asked for
        tried: list[int | None] = [None]
        if not tie_runs or any(f.resolve() in tie_runs for f in members):
            tried += [p for p in sorted(set(passes)) if any(own != p for own in owns)]
        for p in tried:
            for member in ensemble.members if p is not None else ():
                member.config = replace(member.config, tie_passes=p)
            result = evaluate(ensemble, data, test, FULL)
            mine = _per_user(result, "NDCG@10")
            valid = evaluate(ensemble, data, split.valid, FULL).metrics["NDCG@10"]
            label = f"ensemble of {len(members)} runs"
            if p is None:
                as_trained = mine
            else:
                label += f"; scored with tie_passes={p} (test vs as trained: "
                label += f"{_paired(mine, as_trained)})"
            lines.append(
                f"| mean log-probability of {names} | {label} | "
                f"{sum(s['steps'] for s in summaries)} | "
                f"{sum(s['train_seconds'] for s in summaries) / 60:.0f} | {_fmt(valid)} | "
                f"{_fmt(result.metrics['NDCG@10'])} | {_paired(mine, base)} |"
            )
    return [*lines, ""]


def _kept(folder: Path) -> str:
    """Which weights a run ended on (``training.keep`` of its recipe)."""
    from llmrec.finetune.recipe import load_recipe

    return load_recipe(folder / "recipe.yaml").training.keep


def _last_weights(folder: Path, model: NextItemRecommender) -> tuple[int, float | None] | None:
    """For a run that ended on its best validation check while a later checkpoint exists: load
    the last checkpoint's trained tensors into ``model`` and return (its step, its validation
    NDCG@10); otherwise None (``model`` untouched)."""
    from safetensors.torch import load_file

    checkpoints = sorted(
        (folder / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
    )
    if not checkpoints or not (checkpoints[-1] / "trainer_state.json").is_file():
        return None
    if _kept(folder) == "last":
        return None
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    best = state.get("best_model_checkpoint")
    if not best or Path(best).name == checkpoints[-1].name:
        return None
    step = int(checkpoints[-1].name.split("-")[-1])
    if int(json.loads((folder / "training.json").read_text())["steps"]) != step:
        return None
    own = model.net.state_dict()
    tensors = load_file(str(checkpoints[-1] / "model.safetensors"))
    missing = model.net.load_state_dict(
        {k: v.to(own[k].dtype) for k, v in tensors.items()}, strict=False
    )
    if missing.unexpected_keys:
        raise ValueError(f"{checkpoints[-1]} does not fit {folder / 'model'}")
    valid = [
        e["eval_NDCG@10"]
        for e in state["log_history"]
        if e.get("step") == step and "eval_NDCG@10" in e
    ]
    return step, (valid[-1] if valid else None)


if __name__ == "__main__":
    raise SystemExit(main())
