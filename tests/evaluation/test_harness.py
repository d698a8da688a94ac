import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmrec.data import leave_one_out
from llmrec.evaluation import EvalConfig, evaluate

from .fakes import FixedScores

ROOT = Path(__file__).resolve().parents[2]


def test_full_protocol_metrics_by_hand(tiny, tmp_path) -> None:  # noqa: ANN001
    # Every user gets scores descending with the item index (item 29 best).
    model = FixedScores(np.arange(30, dtype=float)).fit([], tiny.catalog)
    split = leave_one_out(tiny)
    result = evaluate(model, tiny, split.test, EvalConfig(protocol="full"), progress=False)
    # a: history 0..3 excluded, target 4 -> ranked 29..5 above it: rank 25 (miss at K<=20)
    # b: history 5,6 excluded, target 7 -> items 29..8 above: rank 22 (miss)
    # c: history 9,8,7 excluded, target 6 -> items 29..10 above: rank 20 (miss @20)
    assert result.metrics["HR@20"] == 0.0
    model.weights = -np.arange(30, dtype=np.float32)  # item 0 best
    result = evaluate(model, tiny, split.test, EvalConfig(protocol="full"), progress=False)
    # a: 0..3 excluded -> target 4 at rank 0; b: 5,6 excluded -> 0..4 above 7: rank 5;
    # c: 7,8,9 excluded -> 0..5 above 6: rank 6
    assert result.metrics["HR@1"] == pytest.approx(1 / 3)
    assert result.metrics["HR@5"] == pytest.approx(1 / 3)
    assert result.metrics["HR@10"] == pytest.approx(1.0)
    assert result.metrics["NDCG@10"] == pytest.approx((1 + 1 / math.log2(7) + 1 / math.log2(8)) / 3)
    assert [r["ranked"][:2] for r in result.rankings] == [["4", "5"], ["0", "1"], ["0", "1"]]
    assert all("3" not in r["ranked"] for r in result.rankings if r["user_id"] == "a")
    assert any("history are excluded" in n for n in result.notes)


def test_without_history_exclusion_ranks_are_lower(tiny) -> None:  # noqa: ANN001
    model = FixedScores(-np.arange(30, dtype=float)).fit([], tiny.catalog)
    split = leave_one_out(tiny)
    result = evaluate(model, tiny, split.test, EvalConfig(exclude_history=False), progress=False)
    # a: target 4 at rank 4; b: 7 at 7; c: 6 at 6
    assert result.metrics["HR@5"] == pytest.approx(1 / 3)
    assert result.metrics["MRR@10"] == pytest.approx((1 / 5 + 1 / 8 + 1 / 7) / 3)


def test_rankings_file_recomputes_to_the_same_metrics(tiny, tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    model = FixedScores(rng.normal(size=30)).fit([], tiny.catalog)
    split = leave_one_out(tiny)
    for protocol in ("full", "sampled"):
        result = evaluate(
            model, tiny, split.test, EvalConfig(protocol=protocol, n_negatives=9), progress=False
        )
        metrics, rankings = tmp_path / f"{protocol}.json", tmp_path / f"{protocol}.jsonl"
        result.write(str(metrics), str(rankings))
        rows = [json.loads(line) for line in rankings.read_text().splitlines()]
        assert [r["user_id"] for r in rows] == ["a", "b", "c"]
        assert all(len(r["ranked"]) >= 10 for r in rows)
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "recompute_metrics.py"),
                str(rankings),
                "--check",
                str(metrics),
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert "OK: 12 metrics agree" in done.stdout


def test_sampled_protocol_scores_only_candidates(tiny) -> None:  # noqa: ANN001
    model = FixedScores(np.zeros(30)).fit([], tiny.catalog)
    split = leave_one_out(tiny)
    result = evaluate(
        model, tiny, split.test, EvalConfig(protocol="sampled", n_negatives=9), progress=False
    )
    for row in result.rankings:
        assert len(row["ranked"]) == 10 and row["target"] in row["ranked"]
    # constant scores: the order is the shuffled candidate order, so HR@1 is a coin toss, not 1
    assert result.metrics["HR@10"] == 1.0


def test_bad_scores_shape_is_reported(tiny) -> None:  # noqa: ANN001
    model = FixedScores(np.zeros(29)).fit([], tiny.catalog)
    with pytest.raises(ValueError, match=r"shape \(3, 29\), expected \(3, 30\)"):
        evaluate(model, tiny, leave_one_out(tiny).test, progress=False)


def test_batches_cover_every_user(tiny) -> None:  # noqa: ANN001
    model = FixedScores(np.zeros(30)).fit([], tiny.catalog)
    result = evaluate(
        model, tiny, leave_one_out(tiny).test, EvalConfig(batch_size=2), progress=False
    )
    assert model.calls == [2, 1] and result.users == 3
