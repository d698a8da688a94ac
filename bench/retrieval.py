"""Retrieval on MovieLens-100K: views, fusion, cold start, latency; writes docs/retrieval.md.

    python bench/retrieval.py                         # ~45 minutes on 2 cores
    python bench/retrieval.py --text-model runs/text-encoder/final   # reuse a fine-tuned encoder
    python bench/retrieval.py --parts cold            # remeasure one section only

1. Views alone and fused (weighted z-score fusion and RRF, weights tuned on validation HR@20),
   full ranking over all items, leave-one-out test, history items excluded.
2. Cold start: 10 % of the items (seeded) are held out of training entirely; Recall@50 on the
   test users whose target is such an item, for the text view, the ID views and the fusion.
3. Latency on one core: a fused query per user on ML-100K, and a text-view ANN query on a
   synthetic catalogue of 1,000,000 items (vectors sampled around real MiniLM item embeddings),
   with the index's build time, size and recall against exact search, and a sweep of the
   search effort (efSearch for hnsw, nprobe for ivf): recall@50, p50 and p95 at each value.

Figures (docs/figures/, embedded in the sections): test Recall@20 per view and fusion and cold
Recall@50 per view, each with a 95 % bootstrap interval over the users; recall and latency
against the search effort.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from llmrec.data import leave_one_out, load_builtin
from llmrec.data.splits import hold_out_items
from llmrec.evaluation import EvalConfig, evaluate
from llmrec.retrieval import registry
from llmrec.retrieval.fusion import FusedRetriever, FusionConfig
from llmrec.retrieval.index import EmbeddingIndex, IndexParams, exact_top_k, set_threads
from llmrec.retrieval.text_finetune import view_settings_for

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _figures import Panel, Series, line_panels, mean_interval, metric_bars, per_user  # noqa: E402
from _sections import repo_path, write_doc, write_section  # noqa: E402

KS = (10, 20, 50, 100)
COLS = ["HR@20", "HR@50", "HR@100", "NDCG@10"]
#: search effort swept on the 1M index: efSearch (hnsw) or nprobe (ivf)
EFFORT = {"hnsw": (16, 32, 64, 128, 256, 512), "ivf": (1, 2, 4, 8, 16, 32, 64, 128)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-model", help="fine-tuned encoder (default: fine-tune here)")
    parser.add_argument("--finetune-steps", type=int, default=90)
    parser.add_argument(
        "--parts",
        default="views,cold,latency,1m",
        help="sections to (re)measure; the others are kept from the last run",
    )
    parser.add_argument("--n-synthetic", type=int, default=1_000_000)
    parser.add_argument("--ann", choices=["ivf", "hnsw"], default="hnsw")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-retrieval"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "retrieval.md"))
    args = parser.parse_args()
    out = Path(args.out)
    (out / "sections").mkdir(parents=True, exist_ok=True)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}; choose from {PARTS}")

    data = load_builtin("ml-100k")
    split = leave_one_out(data)
    cfg = EvalConfig(ks=KS, depth=100)
    figures = Path(args.doc).parent / "figures"
    for part in PARTS:
        if part not in parts:
            continue
        started = time.perf_counter()
        if part == "views":
            lines = _views(data, split, cfg, out, args, figures)
        elif part == "cold":
            lines = _cold_start(data, split, cfg, figures)
        elif part == "latency":
            lines = _latency_ml100k(FusedRetriever.load(out / "fused", data.catalog), split)
        else:
            text = registry.create("text").fit(split.train, data.catalog)
            lines = _latency_1m(text, split, args.n_synthetic, args.ann, figures)
        write_section(out, part, lines, started, "bench/retrieval.py")
        _write_doc(out, Path(args.doc))
    print(Path(args.doc).read_text())
    return 0


PARTS = ("views", "cold", "latency", "1m")


def _write_doc(out: Path, doc: Path) -> None:
    header = [
        "# Retrieval benchmark (MovieLens-100K)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"Python {platform.python_version()}. Rerun with `python bench/retrieval.py` "
        "(`--parts views,cold,latency,1m` remeasures only those sections).",
        "",
        "Recall@K equals HR@K here (one target per user). Leave-one-out split; views fit on the "
        "training part (SASRec early-stops on validation); 943 test users; full ranking with "
        "the user's history items excluded.",
        "",
    ]
    write_doc(out, doc, header, PARTS)


def _views(data, split, cfg: EvalConfig, out: Path, args, figures: Path) -> list[str]:  # noqa: ANN001
    lines: list[str] = []
    text_model = args.text_model or _finetune(split, data, out, args.finetune_steps, lines)
    if args.text_model:
        lines += [_provenance(text_model), ""]
    views = {
        "text (pretrained)": registry.create("text"),
        "text (fine-tuned)": registry.create("text", view_settings_for(text_model)),
        "sasrec": registry.create("sasrec"),
        "cooc": registry.create("cooc"),
        "recent-pop": registry.create("recent-pop"),
        "pop": registry.create("pop"),
    }
    results: dict[str, dict[str, float]] = {}
    bars: list[tuple[str, float, float, float]] = []  # (name, Recall@20, low, high)
    fit_s: dict[str, float] = {}
    for name, view in views.items():
        t = time.perf_counter()
        view.fit(split.train, data.catalog, split.valid)
        fit_s[name] = time.perf_counter() - t
        result = evaluate(view, data, split.test, cfg)
        results[name] = result.metrics
        bars.append((name, *mean_interval(per_user(result.rankings, "HR@20"))))
        print(f"{name}: {_fmt(results[name])} (fit {fit_s[name]:.0f} s)", flush=True)
    members = {
        "text": views["text (fine-tuned)"],
        "sasrec": views["sasrec"],
        "cooc": views["cooc"],
        "recent-pop": views["recent-pop"],
        "pop": views["pop"],
    }
    tuned = {}
    for method in ("weighted", "rrf"):
        fused = FusedRetriever(members, FusionConfig(method=method))
        fused.fit(split.train, data.catalog, split.valid, fit_views=False)
        tuned[method] = dict(fused.weights)
        result = evaluate(fused, data, split.test, cfg)
        results[f"fused ({method})"] = result.metrics
        bars.append((f"fused ({method})", *mean_interval(per_user(result.rankings, "HR@20"))))
        print(f"fused {method}: {_fmt(results[f'fused ({method})'])} {fused.weights}", flush=True)
        if method == "weighted":
            fused.save(out / "fused")
    figure = metric_bars(
        figures / "retrieval-recall20.png",
        bars,
        "test Recall@20 (full ranking, 95 % bootstrap interval over users)",
        f"Retrieval views and fusion on MovieLens-100K ({len(split.test)} test users)",
    )
    return [
        "## Views and fusion (test, full ranking, history items excluded)",
        "",
        *lines,
        "| retriever | " + " | ".join(c.replace("HR", "Recall") for c in COLS) + " | fit (s) |",
        "|" + "---|" * (len(COLS) + 2),
        *[
            f"| {name} | "
            + " | ".join(f"{m[c]:.4f}" for c in COLS)
            + f" | {fit_s.get(name, 0):.0f} |"
            for name, m in results.items()
        ],
        "",
        f"Fusion weights tuned on validation HR@20: weighted {tuned['weighted']}; "
        f"RRF {tuned['rrf']}. The fused retrievers use the fine-tuned text view "
        f"(encoder: `{repo_path(text_model, ROOT)}`).",
        "",
        f"![test Recall@20 per view and fusion](figures/{figure.name})",
        "",
    ]


def _fmt(m: dict[str, float]) -> str:
    return " ".join(f"{c}={m[c]:.4f}" for c in COLS)


def _finetune(split, data, out: Path, steps: int, lines: list[str]) -> str:  # noqa: ANN001
    from llmrec.retrieval.text_finetune import TextFinetuneConfig, finetune_text_encoder

    config = TextFinetuneConfig(output_dir=str(out / "text-encoder"), max_steps=steps)
    t = time.perf_counter()
    final = finetune_text_encoder(split.train, data.catalog, config, split.valid, resume=True)
    seconds = time.perf_counter() - t
    lines += [
        f"Text encoder fine-tuned here: {steps} steps of batch {config.batch_size}, lr "
        f"{config.learning_rate}, in {seconds:.0f} s (checkpoints resume an interrupted run).",
        "",
    ]
    return str(final)


def _provenance(model_dir: str) -> str:
    from llmrec.retrieval.text_finetune import read_training_summary

    try:
        s = read_training_summary(model_dir)
    except FileNotFoundError:
        return f"Text encoder `{model_dir}` (no llmrec training summary)."
    return (
        f"Text encoder `{model_dir}`: all-MiniLM-L6-v2 fine-tuned by llmrec for "
        f"{s['global_step']} steps ({s['epoch']:.3f} epochs of {s['train_pairs']:,} pairs, final "
        f"training loss {s['training_loss']:.2f}) in {s['seconds']:.0f} s, as "
        "`llmrec retrieve fit --data ml-100k --out runs/text-encoder` does with its defaults."
    )


def _cold_start(data, split, cfg: EvalConfig, figures: Path) -> list[str]:  # noqa: ANN001
    cold_split, cold = hold_out_items(split, data.catalog.ids, fraction=0.1, seed=0)
    cases = [c for c in cold_split.test if c.target in cold]
    views = {
        "text": registry.create("text"),  # pretrained: a fine-tuned encoder has seen cold items
        "sasrec": registry.create("sasrec"),
        "cooc": registry.create("cooc"),
        "recent-pop": registry.create("recent-pop"),
        "pop": registry.create("pop"),
    }
    rows, bars = [], []
    for name, view in views.items():
        view.fit(cold_split.train, data.catalog, cold_split.valid)
        result = evaluate(view, data, cases, cfg)
        rows.append((name, result.metrics))
        bars.append((name, *mean_interval(per_user(result.rankings, "HR@50"))))
        print(f"cold {name}: HR@50={result.metrics['HR@50']:.4f}", flush=True)
    fused = FusedRetriever(views, FusionConfig(method="weighted"))
    fused.fit(cold_split.train, data.catalog, cold_split.valid, fit_views=False)
    result = evaluate(fused, data, cases, cfg)
    rows.append(("fused (weighted, tuned on validation)", result.metrics))
    bars.append(("fused (weighted)", *mean_interval(per_user(result.rankings, "HR@50"))))
    print(f"cold fused: HR@50={result.metrics['HR@50']:.4f} {fused.weights}", flush=True)
    figure = metric_bars(
        figures / "retrieval-cold-recall50.png",
        bars,
        "Recall@50 of the held-out items (95 % bootstrap interval over users)",
        f"Cold start: {len(cases)} test users whose target was held out of training",
    )
    return [
        "## Cold start",
        "",
        f"{len(cold)} of {len(data.catalog)} items (10 %, seed 0) held out of training; "
        f"{len(cases)} test users have a held-out item as their target. The text view here is "
        "the pretrained one (a fine-tuned encoder would have seen the held-out items' text as "
        f"training positives). Fusion weights tuned on validation: {fused.weights}.",
        "",
        "| retriever | Recall@20 | Recall@50 | Recall@100 |",
        "|---|---|---|---|",
        *[f"| {n} | {m['HR@20']:.4f} | {m['HR@50']:.4f} | {m['HR@100']:.4f} |" for n, m in rows],
        "",
        f"![cold-start Recall@50 per view](figures/{figure.name})",
        "",
    ]


def _percentiles(samples: list[float]) -> str:
    ms = np.array(samples) * 1000
    return f"p50 {np.percentile(ms, 50):.2f} ms, p95 {np.percentile(ms, 95):.2f} ms"


def _latency_ml100k(fused: FusedRetriever, split) -> list[str]:  # noqa: ANN001
    torch.set_num_threads(1)
    set_threads(1)
    histories = [c.history for c in split.test[:200]]
    fused.retrieve(histories[:2], k=50)  # warm-up
    times = []
    for h in histories:
        t = time.perf_counter()
        fused.retrieve([h], k=50)
        times.append(time.perf_counter() - t)
    text = fused.views["text"]
    index = EmbeddingIndex.build(text.item_embeddings, text.catalog.ids, "flat")
    users = text.user_embeddings(histories)
    ann = []
    for row in users:
        t = time.perf_counter()
        index.search(row[None, :], 50)
        ann.append(time.perf_counter() - t)
    return [
        "## Latency on ML-100K (one core, 200 test users, k = 50)",
        "",
        f"- fused retrieval (5 views incl. SASRec forward and the fine-tuned text encoder on the "
        f"rendered history, z-score fusion, evidence): {_percentiles(times)} per user",
        f"- text-view index search alone (exact, 1,682 items): {_percentiles(ann)} per user",
        "",
    ]


def _latency_1m(text_view, split, n: int, kind: str, figures: Path) -> list[str]:  # noqa: ANN001
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    base = text_view.item_embeddings  # (1682, d) real MiniLM item embeddings
    d = base.shape[1]
    x = base[rng.integers(0, len(base), size=n)] + rng.normal(0, 0.03, size=(n, d)).astype(
        np.float32
    )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"s{i}" for i in range(n)]
    queries = text_view.user_embeddings([c.history for c in split.test[:200]])
    params = IndexParams(hnsw_m=16, ef_construction=64, ef_search=256, nprobe=32)
    rss0 = _rss_mb()
    t = time.perf_counter()
    index = EmbeddingIndex.build(x, ids, kind, params=params, threads=os.cpu_count())
    build_s = time.perf_counter() - t
    rss1 = _rss_mb()
    set_threads(1)
    index.search(queries[:2], 50)
    times = _query_seconds(index, queries)
    truth = exact_top_k(x, queries[:100], 50)
    recall = _recall(index, queries[:100], truth)
    sweep, figure = _effort_sweep(index, queries, truth, figures)
    size_mb = (index.save(Path("/tmp") / "llmrec-bench-1m-index") / "index.faiss").stat().st_size
    return [
        f"## Latency on a synthetic {n:,}-item catalogue ({kind})",
        "",
        f"{n:,} vectors of dimension {d}: real MiniLM item embeddings plus Gaussian noise "
        "(sigma 0.03 per dimension), renormalised; queries are 200 real users' text-view "
        f"embeddings. Index params: {params}.",
        "",
        f"- build: {build_s:.0f} s on {os.cpu_count()} threads; index file "
        f"{size_mb / 2**20:.0f} MiB; resident memory grew by {rss1 - rss0:.0f} MiB while "
        "building (the index's copy of the vectors plus the graph)",
        f"- query on one core, k = 50: {_percentiles(times)}",
        f"- recall@50 against exact search (100 queries): {recall:.4f}",
        "",
        *sweep,
        f"![recall@50 and p50 latency against the search effort](figures/{figure.name})",
        "",
    ]


def _query_seconds(index: EmbeddingIndex, queries: np.ndarray, k: int = 50) -> list[float]:
    """Seconds of each query searched alone (one core: ``set_threads(1)`` first)."""
    times = []
    for row in queries:
        t = time.perf_counter()
        index.search(row[None, :], k)
        times.append(time.perf_counter() - t)
    return times


def _recall(index: EmbeddingIndex, queries: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the exact top k (``truth``: row numbers, (n, k)) that the index finds."""
    k = truth.shape[1]
    found, _ = index.search(queries, k)
    ids = index.item_ids
    return float(
        np.mean([len({ids[j] for j in r} & set(f)) / k for r, f in zip(truth, found, strict=True)])
    )


def _effort_sweep(
    index: EmbeddingIndex, queries: np.ndarray, truth: np.ndarray, figures: Path
) -> tuple[list[str], Path]:
    """Recall@50 (the 100 queries of ``truth``) and one-core latency (all ``queries``) at each
    search effort of ``EFFORT``, on the same built index; a table and its figure."""
    knob = "ef_search" if index.kind == "hnsw" else "nprobe"
    efforts = EFFORT[index.kind]
    recalls, p50s, p95s = [], [], []
    for effort in efforts:
        params = dataclasses.replace(index.params, **{knob: effort})
        tuned = EmbeddingIndex(index.index, index.item_ids, index.kind, index.dim, params)
        tuned.search(queries[:2], 50)  # warm-up
        ms = np.array(_query_seconds(tuned, queries)) * 1000
        recalls.append(_recall(tuned, queries[: len(truth)], truth))
        p50s.append(float(np.percentile(ms, 50)))
        p95s.append(float(np.percentile(ms, 95)))
    # the wrappers share one faiss index: put back the effort ``index`` was built with
    EmbeddingIndex(index.index, index.item_ids, index.kind, index.dim, index.params)
    name = "efSearch" if knob == "ef_search" else "nprobe"
    figure = line_panels(
        figures / f"retrieval-1m-{index.kind}-{name.lower()}.png",
        [
            Panel(
                name,
                "recall@50 against exact search",
                [Series(index.kind, efforts, recalls)],
                logx=True,
            ),
            Panel(
                name,
                "query latency, one core (ms)",
                [Series("p50", efforts, p50s), Series("p95", efforts, p95s)],
                logx=True,
            ),
        ],
        f"{index.kind} over {len(index):,} items: search effort ({name})",
    )
    return [
        f"Search effort swept on the same index ({name}; recall@50 on {len(truth)} queries, "
        f"latency of {len(queries)} queries one at a time on one core):",
        "",
        f"| {name} | recall@50 | p50 ms | p95 ms |",
        "|---|---|---|---|",
        *[
            f"| {e} | {r:.4f} | {a:.2f} | {b:.2f} |"
            for e, r, a, b in zip(efforts, recalls, p50s, p95s, strict=True)
        ],
        "",
    ], figure


def _rss_mb() -> float:
    """Current resident memory of this process (not the peak), in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


if __name__ == "__main__":
    sys.exit(main())
