"""The benchmark figures (bench/_figures.py and the figure code of the bench scripts) write valid
PNGs from small synthetic numbers; the per-user metrics they draw equal hand-computed ones."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

BENCH = Path(__file__).resolve().parents[2] / "bench"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def figures():  # noqa: ANN201
    sys.path.insert(0, str(BENCH))
    return importlib.import_module("_figures")


def _png(path: Path) -> tuple[int, int]:
    """(height, width) of a PNG that matplotlib reads back."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG
    assert not list(path.parent.glob(".*.tmp*"))  # the atomic write left no temporary file
    image = imread(path)
    return image.shape[0], image.shape[1]


def test_per_user_metrics_are_the_hand_computed_ones(figures) -> None:  # noqa: ANN001
    rankings = [
        {"ranked": ["a", "b", "c"], "target": "b"},  # rank 1
        {"ranked": ["a", "b", "c"], "target": "a"},  # rank 0
        {"ranked": ["a", "b", "c"], "target": "z"},  # missed
    ]
    ndcg = figures.per_user(rankings, "NDCG@10")
    assert np.allclose(ndcg, [1 / math.log2(3), 1.0, 0.0])
    assert figures.per_user(rankings, "HR@1").tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="expected HR@K, NDCG@K or MRR@K"):
        figures.per_user(rankings, "recall@10")


def test_bars_panels_and_histograms_write_pngs(figures, tmp_path: Path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    bars = [(name, *figures.mean_interval(rng.random(50))) for name in ("a", "b", "c")]
    _png(figures.metric_bars(tmp_path / "bars.png", bars, "NDCG@10", "three models"))
    series = figures.Series("hnsw", [16, 32, 64], [0.8, 0.9, 0.95])
    panels = [figures.Panel("efSearch", "recall@50", [series], logx=True)] * 2
    height, width = _png(figures.line_panels(tmp_path / "lines.png", panels, "sweep"))
    assert width > height  # two panels side by side
    groups = [("chat", rng.normal(100, 10, 40)), ("empty", []), ("user", rng.normal(80, 5, 30))]
    _png(figures.histograms(tmp_path / "hist.png", groups, "latency (ms)", "load"))
    with pytest.raises(ValueError, match="every group is empty"):
        figures.histograms(tmp_path / "none.png", [("chat", [])], "latency (ms)", "load")
    with pytest.raises(ValueError, match="give one y per x"):
        figures.Series("bad", [1, 2], [1.0])


def _run_folder(root: Path, losses: list[float]) -> Path:
    """A fine-tuning run folder: two checkpoints (the later one's history is longer) and a
    training.json with the zero-shot validation."""
    for step in (2, 4):
        history = [{"step": s, "loss": loss} for s, loss in zip((1, 2, 3, 4), losses, strict=True)][
            :step
        ]
        history += [{"step": s, "eval_NDCG@10": 0.1 + s / 100} for s in (2, 4) if s <= step]
        folder = root / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    summary = {"steps": 4, "validation_zero_shot": {"NDCG@10": 0.09}, "validation_final": None}
    (root / "training.json").write_text(json.dumps(summary))
    return root


def test_run_curves_read_the_latest_checkpoint(figures, tmp_path: Path) -> None:  # noqa: ANN001
    curves = figures.run_curves(_run_folder(tmp_path / "run", [3.0, 2.5, 2.2, 2.0]))
    assert curves.loss == [(1, 3.0), (2, 2.5), (3, 2.2), (4, 2.0)]
    assert curves.valid == [(2, pytest.approx(0.12)), (4, pytest.approx(0.14))]
    assert curves.zero_shot == 0.09 and curves.last_step == 4
    assert figures.run_curves(tmp_path / "no-run") is None
    _png(figures.training_curves(tmp_path / "curves.png", [("lora", curves)], "adapters"))


def test_llm_figures_are_drawn_from_kept_rows(figures, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    llm = importlib.import_module("llm")
    drawn = {}

    def bars(path, bars, xlabel, title):  # noqa: ANN001, ANN202
        drawn[path.name] = bars
        return figures.metric_bars(path, bars, xlabel, title)

    monkeypatch.setattr(llm, "metric_bars", bars)
    out = tmp_path / "bench-llm"
    (out / "rank-methods").mkdir(parents=True)
    users = 40
    rng = np.random.default_rng(1)
    row = {
        "measured": "2026-12-01 00:00 UTC",
        "per_user": {"full": rng.random(users).tolist(), "sampled": [1.0, 0.0] * (users // 2)},
    }
    (out / "rank-methods" / "lora.json").write_text(json.dumps(row))
    kept = {name: {"full": rng.random(users).tolist(), "sampled": [0.0, 1.0] * (users // 2)}
            for name in (llm.RETRIEVER, llm.SASREC)}  # fmt: skip
    (out / llm.BASELINES_FILE).write_text(json.dumps(kept))
    adapters = {"lora": _run_folder(tmp_path / "adapter-lora", [3.0, 2.5, 2.2, 2.0])}
    adapters["prefix"] = tmp_path / "adapter-prefix"  # never trained: no curve, no error
    lines = llm.draw_figures(out, ["zero-shot", "lora"], adapters, tmp_path / "figures")
    text = "\n".join(lines)
    for name in ("llm-full-ndcg10.png", "llm-sampled-hr1.png", "llm-training-curves.png"):
        assert f"](figures/{name})" in text
        _png(tmp_path / "figures" / name)
    assert "lora: measured 2026-12-01 00:00 UTC" in text
    assert "zero-shot: measured" not in text  # no kept row: left out, not invented
    full = drawn["llm-full-ndcg10.png"]
    assert [b[0] for b in full] == [llm.RETRIEVER, llm.SASREC, "lora (fused)"]
    assert full[2][1] == pytest.approx(np.mean(row["per_user"]["full"]))
    assert full[2][2] <= full[2][1] <= full[2][3]
    assert drawn["llm-sampled-hr1.png"][2][1] == pytest.approx(0.5)


def test_serving_latency_histogram(figures, tmp_path: Path) -> None:  # noqa: ANN001
    serve_load = importlib.import_module("serve_load")
    load = serve_load.Load(
        [serve_load.Outcome(kind, 200, 0.05 + 0.01 * i) for i in range(20) for kind in ("chat",)]
        + [serve_load.Outcome("recommend (user)", 500, 0.2, "HTTP 500")]
    )
    line = serve_load.latency_figure(load, 4, tmp_path)
    assert line == "![latency of the answered requests per kind](figures/serving-load-latency.png)"
    _png(tmp_path / "serving-load-latency.png")
    failed = serve_load.Load([serve_load.Outcome("chat", None, 1.0, "ConnectError")])
    assert "no latency figure" in serve_load.latency_figure(failed, 4, tmp_path / "none")


def test_retrieval_effort_sweep(figures, tmp_path: Path) -> None:  # noqa: ANN001
    pytest.importorskip("faiss")
    retrieval = importlib.import_module("retrieval")
    from llmrec.retrieval.index import EmbeddingIndex, IndexParams, exact_top_k

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    queries = rng.normal(size=(12, 8)).astype(np.float32)
    params = IndexParams(hnsw_m=4, ef_construction=16, ef_search=32)
    index = EmbeddingIndex.build(x, [f"i{j}" for j in range(600)], "hnsw", params=params)
    truth = exact_top_k(x, queries[:10], 50)
    lines, figure = retrieval._effort_sweep(index, queries, truth, tmp_path)
    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert [int(r.split("|")[1]) for r in rows] == list(retrieval.EFFORT["hnsw"])
    recalls = [float(r.split("|")[2]) for r in rows]
    assert all(0.0 <= r <= 1.0 for r in recalls) and recalls[-1] >= recalls[0]
    assert index.index.hnsw.efSearch == 32  # the sweep put back the index's own effort
    assert figure.name == "retrieval-1m-hnsw-efsearch.png"
    _png(figure)
