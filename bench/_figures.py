"""Figures for the benchmark documents: PNG files beside the Markdown that embeds them.

matplotlib draws on a bare Figure with the Agg canvas (no pyplot, no display, no global backend
switch). Every figure is written atomically.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def mean_interval(values: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` and its 95 % bootstrap interval."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def metric_bars(
    path: Path,
    bars: Sequence[tuple[str, float, float, float]],
    xlabel: str,
    title: str,
) -> Path:
    """Horizontal bars (label, value, low, high) with their intervals as error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 0.5 * len(bars) + 1.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    labels = [b[0] for b in bars]
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
