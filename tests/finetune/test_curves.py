"""training-curve.png: the points read from a Trainer's log history, a valid PNG written
atomically, and a warning (no file, no failure) without matplotlib. The tiny fine-tuning runs of
test_finetune.py and test_nextitem.py check that both families write it."""

from __future__ import annotations

import sys

import pytest

from llmrec.finetune.curves import CURVE_FILE, read_curves, write_training_curve

from ..llm_fakes import assert_png

HISTORY = [
    {"zero_shot_NDCG@10": 0.21, "zero_shot_runtime": 0.1, "step": 0},
    {"loss": 2.5, "grad_norm": 1.0, "learning_rate": 0.01, "epoch": 0.5, "step": 1},
    {"loss": 2.1, "step": 2},
    {"eval_NDCG@10": 0.30, "eval_HR@10": 0.5, "step": 2},
    {"loss": 1.7, "step": 3},
    {"loss": float("nan"), "step": 4},  # a diverged step is left out, not drawn
    {"eval_NDCG@10": 0.35, "step": 4},
    {"train_runtime": 3.0, "train_loss": 2.0, "step": 4},  # the summary line: not a point
    {"final_NDCG@10": 0.35, "step": 4},
    {"note": "no step"},
]


def test_points_come_from_the_log_history() -> None:
    curves = read_curves(HISTORY)
    assert curves.loss == [(1, 2.5), (2, 2.1), (3, 1.7)]
    assert curves.valid == [(2, 0.30), (4, 0.35)]
    assert curves.zero_shot == 0.21 and curves.final == 0.35 and curves.last_step == 4
    resumed = read_curves([*HISTORY, {"loss": 1.5, "step": 3}])  # a step logged again
    assert resumed.loss[-1] == (3, 1.5)
    assert read_curves([]).empty()


def test_the_curve_is_a_png_written_atomically(tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("matplotlib")
    path = write_training_curve(HISTORY, tmp_path / CURVE_FILE, "lora adapter")
    assert path == tmp_path / CURVE_FILE
    assert_png(path)
    assert [p.name for p in tmp_path.iterdir()] == [CURVE_FILE]  # no temporary file left
    # only a loss (no validation yet) or only validation still draws
    assert write_training_curve(HISTORY[1:3], tmp_path / "loss.png") is not None
    assert write_training_curve(HISTORY[3:4], tmp_path / "valid.png") is not None
    assert write_training_curve([], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_without_matplotlib_the_curve_is_skipped_with_a_warning(
    tmp_path, monkeypatch, caplog
) -> None:  # noqa: ANN001, E501
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    with caplog.at_level("WARNING", logger="llmrec.finetune.curves"):
        assert write_training_curve(HISTORY, tmp_path / CURVE_FILE) is None
    assert "matplotlib is not installed: no training-curve.png" in caplog.text
    assert 'pip install "llmrec[train]"' in caplog.text
    assert not (tmp_path / CURVE_FILE).exists()


def test_a_drawing_failure_does_not_fail_the_run(tmp_path, monkeypatch, caplog) -> None:  # noqa: ANN001
    pytest.importorskip("matplotlib")
    import llmrec.finetune.curves as curves

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("no fonts")

    monkeypatch.setattr(curves, "_draw", broken)
    with caplog.at_level("WARNING", logger="llmrec.finetune.curves"):
        assert write_training_curve(HISTORY, tmp_path / CURVE_FILE) is None
    assert "could not draw training-curve.png: no fonts" in caplog.text
    assert list(tmp_path.iterdir()) == []
