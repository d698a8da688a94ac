"""Figures for the benchmark documents: PNG files beside the Markdown that embeds them.

matplotlib draws on a bare Figure with the Agg canvas (no pyplot, no display, no global backend
switch). Every figure is written atomically. The numbers drawn are always the ones the run
measured and passes in; nothing here holds a result.

- ``metric_bars``: one bar a model, with its 95 % bootstrap interval (``mean_interval`` over the
  per-user values that ``per_user`` reads off an evaluation's rankings);
- ``line_panels``: curves side by side (recall against efSearch, loss against step, ...);
- ``histograms``: overlaid distributions (request latencies), p50 and p95 in the legend;
- ``run_curves`` + ``training_curves``: several fine-tuning runs' loss and validation curves on
  shared axes, read from each run's last checkpoint (``trainer_state.json``);
- ``copy_figure``: a PNG a run drew itself (a training curve), copied into the docs.
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Series:
    """One curve: ``y`` against ``x`` (same length), named ``label`` in the legend."""

    label: str
    x: Sequence[float]
    y: Sequence[float]

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(
                f"series {self.label!r}: {len(self.x)} x values but {len(self.y)} y values; "
                "give one y per x"
            )


@dataclass(frozen=True)
class Panel:
    """One set of axes of :func:`line_panels`."""

    xlabel: str
    ylabel: str
    series: Sequence[Series]
    logx: bool = False


def mean_interval(values: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` and its 95 % bootstrap interval."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


_METRIC = re.compile(r"^(HR|NDCG|MRR)@([1-9][0-9]*)$")


def per_user(rankings: Sequence[Mapping[str, Any]], metric: str) -> np.ndarray:
    """Per-user HR@K, NDCG@K or MRR@K from an evaluation's rankings rows (``ranked``, one
    ``target`` a user): their mean is the evaluation's metric when the rows list at least K
    items."""
    from llmrec.evaluation.metrics import metrics_from_ranks

    match = _METRIC.match(metric)
    if match is None:
        raise ValueError(f"metric {metric!r}: expected HR@K, NDCG@K or MRR@K, e.g. 'NDCG@10'")
    k = int(match.group(2))
    ranks = [
        row["ranked"].index(row["target"]) if row["target"] in row["ranked"] else None
        for row in rankings
    ]
    return np.array([metrics_from_ranks([rank], (k,))[metric] for rank in ranks])


def metric_bars(
    path: Path,
    bars: Sequence[tuple[str, float, float, float]],
    xlabel: str,
    title: str,
) -> Path:
    """Horizontal bars (label, value, low, high) with their intervals as error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # long labels wrap (at most 44 characters a line), so the bars keep their width
    labels = [textwrap.fill(b[0], 44) for b in bars]
    lines = sum(label.count("\n") + 1 for label in labels)
    fig = Figure(figsize=(9, 0.32 * lines + 0.2 * len(bars) + 1.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    values = np.array([b[1] for b in bars])
    errors = np.array([[b[1] - b[2] for b in bars], [b[3] - b[1] for b in bars]])
    y = np.arange(len(bars))[::-1]
    ax.barh(y, values, xerr=errors, color="#4c72b0", ecolor="#333333", capsize=3)
    ax.set_yticks(y, labels)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    for yy, value in zip(y, values, strict=True):
        ax.text(value, yy + 0.3, f"{value:.4f}", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def line_panels(path: Path, panels: Sequence[Panel], title: str) -> Path:
    """Panels side by side, each with its curves (markers on the measured points)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not panels:
        raise ValueError(f"{path.name}: no panels to draw")
    fig = Figure(figsize=(5.2 * len(panels), 4.2), dpi=110)
    FigureCanvasAgg(fig)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for series in panel.series:
            marker = "o" if len(series.x) <= 40 else None  # dense curves: a line alone
            ax.plot(series.x, series.y, marker=marker, markersize=4, label=series.label)
        if panel.logx:
            ax.set_xscale("log", base=2)
            ticks = sorted({float(x) for series in panel.series for x in series.x})
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if panel.series:
            ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def histograms(
    path: Path,
    groups: Sequence[tuple[str, Sequence[float]]],
    xlabel: str,
    title: str,
    bins: int = 40,
) -> Path:
    """Overlaid step histograms of each (label, values), on shared bins; each legend entry
    gives the group's size, p50 and p95."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drawn = [(label, np.asarray(v, dtype=np.float64)) for label, v in groups if len(v)]
    if not drawn:
        raise ValueError(f"{path.name}: every group is empty, nothing to draw")
    edges = np.histogram_bin_edges(np.concatenate([v for _, v in drawn]), bins=bins)
    fig = Figure(figsize=(8, 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, values in drawn:
        p50, p95 = np.percentile(values, [50, 95])
        ax.hist(
            values, bins=edges, histtype="step", linewidth=1.5,
            label=f"{label} (n={len(values)}, p50 {p50:.0f}, p95 {p95:.0f})",
        )  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel("requests")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def run_curves(run_dir: Path) -> Any | None:
    """The loss and validation points (``llmrec.finetune.curves.Curves``) of a fine-tuning run
    folder, from the ``log_history`` of its latest checkpoint's ``trainer_state.json``; the
    zero-shot and final validation from its ``training.json`` when the history lacks them.
    None when the folder holds no checkpoint."""
    from llmrec.finetune.curves import METRIC, read_curves

    states = sorted(
        run_dir.glob("checkpoints/checkpoint-*/trainer_state.json"),
        key=lambda p: int(p.parent.name.rsplit("-", 1)[1]),
    )
    if not states:
        return None
    curves = read_curves(json.loads(states[-1].read_text())["log_history"])
    summary_file = run_dir / "training.json"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        if curves.zero_shot is None:
            curves.zero_shot = (summary.get("validation_zero_shot") or {}).get(METRIC)
        if curves.final is None:
            curves.final = (summary.get("validation_final") or {}).get(METRIC)
        curves.last_step = max(curves.last_step, int(summary.get("steps") or 0))
    return curves


def training_curves(path: Path, runs: Sequence[tuple[str, Any]], title: str) -> Path:
    """Training loss and validation NDCG@10 against the optimizer step, one line per
    (label, Curves); the validation line starts at the zero-shot value (step 0)."""
    loss, valid = [], []
    for label, curves in runs:
        if curves.loss:
            steps, values = zip(*curves.loss, strict=True)
            loss.append(Series(label, steps, values))
        points = [(0, curves.zero_shot)] if curves.zero_shot is not None else []
        points += list(curves.valid)
        if points:
            steps, values = zip(*points, strict=True)
            valid.append(Series(label, steps, values))
    return line_panels(
        path,
        [
            Panel("optimizer step", "training loss", loss),
            Panel("optimizer step", "validation NDCG@10 (step 0: zero-shot)", valid),
        ],
        title,
    )


def copy_figure(source: Path, path: Path) -> Path | None:
    """Copy an existing PNG (e.g. a run's training curve) into the docs; None if it is missing."""
    if not source.is_file():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(path)
    return path


def _save(fig, path: Path) -> Path:  # noqa: ANN001
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, format="png")
    tmp.replace(path)
    return path
