"""bench/nextitem.py reads the listwise LoRA row bench/llm.py cached and pairs it against the
baselines of its own run, user by user; a missing or mismatched row becomes a note."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench():  # noqa: ANN201
    sys.path.insert(0, str(BENCH))
    return importlib.import_module("nextitem")


def _record(full: list[float], sampled: list[float]) -> dict:
    return {
        "measured": "2026-12-01 10:00 UTC",
        "metrics": {
            "full_fused": {"NDCG@10": float(np.mean(full)), "HR@10": 0.5},
            "sampled_fused": {"HR@1": float(np.mean(sampled))},
        },
        "per_user": {"full": full, "sampled": sampled},
        "training": {"trainable_parameters": 1_628_160, "train_seconds": 1883.0, "steps": 300},
    }


def test_listwise_row_is_paired_against_this_runs_baselines(bench, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "lora.json"
    path.write_text(json.dumps(_record([1.0, 0.0, 0.5, 0.5], [1.0, 1.0, 0.0, 0.0])))
    baselines = {
        bench.RETRIEVER: (np.array([0.5, 0.0, 0.5, 0.5]), np.array([1.0, 0.0, 0.0, 0.0])),
        bench.SASREC: (np.array([0.0, 0.0, 0.5, 0.5]), np.array([0.0, 1.0, 0.0, 0.0])),
    }
    cells, result = bench._listwise(path, 4, baselines)
    assert cells[0].startswith(bench.LISTWISE) and "2026-12-01 10:00 UTC" in cells[0]
    assert cells[1] == "0.5000" and cells[2] == "0.5000"
    # per user the differences against the retriever are +0.5, 0, 0, 0: mean +0.125
    assert cells[3].startswith("+0.1250 [")
    assert cells[4].startswith("+0.2500 [")  # against SASRec: +1, 0, 0, 0
    assert cells[5] == "0.5000" and cells[6].startswith("+0.2500 [")  # HR@1 1,1,0,0 vs 0,1,0,0
    assert cells[7] == "1.63 M trainable, 31 min (300 steps)"
    assert result["full"]["NDCG@10"] == 0.5


def test_missing_or_other_users_listwise_row_is_a_note(bench, tmp_path: Path) -> None:  # noqa: ANN001
    note = bench._listwise(tmp_path / "none.json", 4, {})
    assert isinstance(note, str) and "missing" in note and "bench/llm.py" in note
    path = tmp_path / "lora.json"
    path.write_text(json.dumps(_record([1.0, 0.0], [1.0, 0.0])))
    note = bench._listwise(path, 4, {})
    assert isinstance(note, str) and "other test users" in note
