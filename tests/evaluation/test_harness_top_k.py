"""The full protocol from top-k lists gives the dense path's metrics and rankings."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.data import leave_one_out
from llmrec.data.topk import TopK
from llmrec.evaluation import EvalConfig, evaluate

from .fakes import FixedScores, make_dataset


class PerUser(FixedScores):
    """Random scores per user (seeded by the user id), with ties."""

    def score(self, histories):  # noqa: ANN001
        self.calls.append(len(histories))
        rows = [
            np.random.default_rng(sum(map(ord, h.user_id))).integers(0, 6, len(self.weights))
            for h in histories
        ]
        return np.array(rows, dtype=np.float32)


@pytest.fixture
def users():  # noqa: ANN201
    rng = np.random.default_rng(0)
    sequences = {
        f"u{u}": [str(i) for i in rng.choice(30, size=rng.integers(3, 12), replace=False)]
        for u in range(25)
    }
    return make_dataset(sequences)


@pytest.mark.parametrize("exclude_history", [True, False])
def test_top_k_lists_give_the_dense_metrics_and_rankings(users, exclude_history) -> None:  # noqa: ANN001
    model = PerUser(np.zeros(30)).fit([], users.catalog)
    cases = leave_one_out(users).test
    results = {
        ranking: evaluate(
            model,
            users,
            cases,
            EvalConfig(ranking=ranking, depth=20, batch_size=4, exclude_history=exclude_history),
            progress=False,
        )
        for ranking in ("dense", "top-k")
    }
    dense, top = results["dense"], results["top-k"]
    assert top.metrics == dense.metrics
    assert top.rankings == dense.rankings
    assert any("top 20 list" in n for n in top.notes)
    assert not any("top 20 list" in n for n in dense.notes)
    assert model.calls[-7:] == [4, 4, 4, 4, 4, 4, 1]  # scored in batches, as the dense path


def test_auto_ranks_small_catalogues_densely(users) -> None:  # noqa: ANN001
    model = FixedScores(np.arange(30.0)).fit([], users.catalog)
    result = evaluate(model, users, leave_one_out(users).test, progress=False)
    assert not any("list (a target" in n for n in result.notes)


class Bad(FixedScores):
    def __init__(self, weights: np.ndarray, mode: str) -> None:
        super().__init__(weights)
        self.mode = mode

    def top_k(self, histories, k, *, exclude_history=True, with_moments=False):  # noqa: ANN001
        n = len(histories)
        if self.mode == "shape":
            return TopK(np.zeros((n, k - 1), np.int64), np.zeros((n, k - 1)))
        if self.mode == "range":
            return TopK(np.full((n, k), 99, np.int64), np.zeros((n, k)))
        first = self.catalog.index(histories[0].item_ids[0])
        return TopK(np.full((n, k), first, np.int64), np.zeros((n, k)))


@pytest.mark.parametrize(
    ("mode", "message"),
    [("shape", "expected TopK lists"), ("range", "outside"), ("history", "history")],
)
def test_bad_top_k_lists_are_reported(users, mode: str, message: str) -> None:  # noqa: ANN001
    model = Bad(np.zeros(30), mode).fit([], users.catalog)
    with pytest.raises(ValueError, match=message):
        evaluate(
            model, users, leave_one_out(users).test, EvalConfig(ranking="top-k"), progress=False
        )


def test_ranking_setting_is_checked() -> None:
    with pytest.raises(ValueError):
        EvalConfig(ranking="sorted")
