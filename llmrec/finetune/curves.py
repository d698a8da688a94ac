"""The training-curve picture of a fine-tuning run: ``OUT/training-curve.png``.

Both families (listwise adapters, :mod:`llmrec.finetune.trainer`; the next-item LLM,
:mod:`llmrec.finetune.nextitem`) draw it from the Trainer's ``state.log_history`` when training
ends: the training loss and the validation NDCG@10 against the optimizer step, with the zero-shot
validation at step 0 and the final (best model's) validation marked. A resumed run's history
holds the earlier steps too (the Trainer restores it from the checkpoint), so the picture covers
the whole run.

matplotlib (the ``train`` extra) is imported only here, and drawn through its Agg canvas on a
bare ``Figure`` (no pyplot: nothing global changes for a notebook that uses another backend).
Without matplotlib the picture is skipped with a warning; the run itself never fails on it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.io import atomic_file

logger = logging.getLogger(__name__)

#: Beside the run's other outputs (``OUT/``).
CURVE_FILE = "training-curve.png"
METRIC = "NDCG@10"


@dataclass
class Curves:
    """The points of the picture, read from a Trainer's ``log_history``."""

    #: (step, training loss) as the Trainer logged it every ``logging_steps``
    loss: list[tuple[int, float]] = field(default_factory=list)
    #: (step, validation NDCG@10) at every evaluation
    valid: list[tuple[int, float]] = field(default_factory=list)
    zero_shot: float | None = None
    #: the best model's validation after training, and the step training ended at
    final: float | None = None
    last_step: int = 0

    def empty(self) -> bool:
        return not self.loss and not self.valid and self.zero_shot is None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def read_curves(log_history: Sequence[Mapping[str, Any]]) -> Curves:
    """The loss and validation points of ``log_history`` (entries without a step are skipped;
    a step logged twice, as after a resume, keeps its last value)."""
    loss: dict[int, float] = {}
    valid: dict[int, float] = {}
    curves = Curves()
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        step = int(step)
        curves.last_step = max(curves.last_step, step)
        if (value := _number(entry.get("loss"))) is not None:
            loss[step] = value
        if (value := _number(entry.get(f"eval_{METRIC}"))) is not None:
            valid[step] = value
        if (value := _number(entry.get(f"zero_shot_{METRIC}"))) is not None:
            curves.zero_shot = value
        if (value := _number(entry.get(f"final_{METRIC}"))) is not None:
            curves.final = value
    curves.loss = sorted(loss.items())
    curves.valid = sorted(valid.items())
    return curves


def write_training_curve(
    log_history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], title: str = ""
) -> Path | None:
    """Draw the run's curves to ``path`` (a PNG, written atomically); returns it, or None when
    matplotlib is missing (a warning says so), the history holds no point, or drawing failed (a
    warning says why: a finished training run does not fail on its picture)."""
    target = Path(path)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning(
            'matplotlib is not installed: no %s (pip install "llmrec[train]")', target.name
        )
        return None
    curves = read_curves(log_history)
    if curves.empty():
        logger.info("no training loss or validation logged: no %s", target.name)
        return None
    try:
        figure = Figure(figsize=(7.0, 5.5), dpi=110, layout="constrained")
        FigureCanvasAgg(figure)
        top, bottom = figure.subplots(2, 1, sharex=True)
        _draw(top, bottom, curves)
        if title:
            figure.suptitle(title)
        with atomic_file(target) as tmp:
            figure.savefig(tmp, format="png")
    except Exception as exc:  # noqa: BLE001 - the picture is a by-product of a finished run
        logger.warning("could not draw %s: %s", target.name, exc)
        return None
    return target


def _draw(top: Any, bottom: Any, curves: Curves) -> None:
    if curves.loss:
        steps, values = zip(*curves.loss, strict=True)
        top.plot(steps, values, color="tab:blue", marker="." if len(steps) < 50 else None)
    else:
        top.text(0.5, 0.5, "no training loss logged", ha="center", transform=top.transAxes)
    top.set_ylabel("training loss")
    top.grid(alpha=0.3)

    valid = list(curves.valid)
    if curves.zero_shot is not None:
        bottom.scatter([0], [curves.zero_shot], color="tab:gray", zorder=3, label="zero-shot")
        valid = [(0, curves.zero_shot), *valid]  # the curve starts where training started
    if curves.valid:
        steps, values = zip(*valid, strict=True)
        bottom.plot(steps, values, color="tab:orange", marker="o", label="validation")
    if curves.final is not None:
        bottom.scatter(
            [curves.last_step], [curves.final], color="tab:red", marker="*", s=120, zorder=3,
            label="final (best model)",
        )  # fmt: skip
    bottom.set_ylabel(f"validation {METRIC}")
    bottom.set_xlabel("optimizer step")
    from matplotlib.ticker import MaxNLocator

    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.grid(alpha=0.3)
    if bottom.get_legend_handles_labels()[0]:
        bottom.legend(loc="best", fontsize="small")
