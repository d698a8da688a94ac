"""The sparse fusion (the union of the views' top lists) against today's dense fusion.

Five views (text with a tiny encoder, co-occurrence, Markov, recent popularity, popularity) on
150 items, ten of them cold (never in training: only the text view knows them), lists of depth
25: RRF gives the dense top-k exactly; weighted fusion gives it wherever the dense top-k lies in
the union of the views' lists (the only place the union can know about). Weight tuning on the
sparse path picks the dense path's weights.
"""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.baselines.markov import MarkovRecommender
from llmrec.baselines.popularity import PopularityRecommender
from llmrec.data import EvalCase
from llmrec.retrieval.fusion import FusedRetriever, FusionConfig
from llmrec.retrieval.simple import Cooccurrence, RecentPopularity
from llmrec.retrieval.text import TextView

from .fakes import numbered_catalog, numbered_sequence

N_ITEMS, N_WARM, DEPTH, K = 150, 140, 25, 10
WEIGHTS = {"text": 1.0, "cooc": 2.0, "markov": 1.0, "recent": 0.5, "pop": 0.25}


def users(n: int, seed: int, prefix: str) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for u in range(n):
        length = int(rng.integers(0, 15))
        # a user drifts through the catalogue, so co-occurrence and Markov have signal
        items = (int(rng.integers(0, N_WARM)) + np.cumsum(rng.integers(1, 4, size=length))) % N_WARM
        times = np.sort(rng.uniform(0, 30 * 86_400, size=length)).tolist()
        out.append(numbered_sequence(f"{prefix}{u}", items.tolist(), times))
    return out


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from .fakes import build_tiny_model

    model = str(build_tiny_model(tmp_path_factory.mktemp("tiny-sparse"), seed=0))
    train = users(120, seed=0, prefix="t")
    catalog = numbered_catalog(N_ITEMS)
    members = {
        "text": TextView(model=model, show_progress=False),
        "cooc": Cooccurrence(window=3),
        "markov": MarkovRecommender(),
        "recent": RecentPopularity(half_life_days=5),
        "pop": PopularityRecommender(),
    }
    return {name: view.fit(train, catalog) for name, view in members.items()}


def fused(views: dict, path: str, method: str, **settings) -> FusedRetriever:  # noqa: ANN003
    config = FusionConfig(method=method, depth=DEPTH, weights=WEIGHTS, path=path, **settings)
    return FusedRetriever(views, config).fit([], numbered_catalog(N_ITEMS), fit_views=False)


def union_of_lists(views: dict, histories: list) -> list[set[int]]:
    lists = [v.top_k(histories, DEPTH).items for v in views.values()]
    return [{int(i) for top in lists for i in top[u] if i >= 0} for u in range(len(histories))]


@pytest.mark.parametrize("cold_slots", [0.0, 0.25])
def test_rrf_sparse_top_k_equals_the_dense_top_k(views: dict, cold_slots: float) -> None:
    histories = users(80, seed=1, prefix="u")
    dense = fused(views, "dense", "rrf", cold_slots=cold_slots)
    sparse = fused(views, "sparse", "rrf", cold_slots=cold_slots, batch_size=16)
    assert not dense.sparse and sparse.sparse
    want = dense.top_k(histories, K)
    got = sparse.top_k(histories, K)
    np.testing.assert_array_equal(got.items, want.items)
    if cold_slots == 0:  # with slots the dense scores are positions, the sparse ones fused scores
        np.testing.assert_array_equal(got.scores, want.scores)
    else:
        cold = set(range(N_WARM, N_ITEMS))
        assert any(int(i) in cold for i in got.items.ravel())  # the slots were exercised
    # without excluding history (the fusion's own setting and the caller's), still the same
    dense.config.exclude_history = sparse.config.exclude_history = False
    np.testing.assert_array_equal(
        sparse.top_k(histories, K, exclude_history=False).items,
        dense.top_k(histories, K, exclude_history=False).items,
    )


@pytest.mark.parametrize("cold_slots", [0.0, 0.25])
def test_weighted_sparse_top_k_equals_the_dense_top_k_on_the_union(
    views: dict, cold_slots: float
) -> None:
    histories = users(80, seed=2, prefix="u")
    dense = fused(views, "dense", "weighted", cold_slots=cold_slots)
    sparse = fused(views, "sparse", "weighted", cold_slots=cold_slots, batch_size=16)
    want = dense.top_k(histories, K).items
    got = sparse.top_k(histories, K).items
    unions = union_of_lists(views, histories)
    # cold items are pooled by their fused score wherever the views rank them (for the slots)
    cold = set(range(N_WARM, N_ITEMS))
    covered = [set(w.tolist()) - cold <= u for w, u in zip(want, unions, strict=True)]
    assert sum(covered) >= 0.9 * len(histories)  # the comparison is not vacuous
    for u in np.flatnonzero(covered):
        assert got[u].tolist() == want[u].tolist(), f"user {u}"


@pytest.mark.parametrize("method", ["rrf", "weighted"])
def test_sparse_tuning_matches_dense_tuning(views: dict, method: str) -> None:
    histories = [h for h in users(60, seed=3, prefix="v") if len(h) > 1]
    valid = [EvalCase(h.user_id, h.head(-1), h.item_ids[-1]) for h in histories]
    results = {
        path: fused(views, path, method, tune_metric="HR@10", batch_size=16).tune_weights(valid)
        for path in ("dense", "sparse")
    }
    assert results["sparse"]["weights"] == results["dense"]["weights"]
    assert results["sparse"]["HR@10"] == pytest.approx(results["dense"]["HR@10"], abs=1e-12)


def test_sparse_path_refuses_moments_and_is_chosen_by_size(views: dict) -> None:
    sparse = fused(views, "sparse", "rrf")
    with pytest.raises(ValueError, match="moments"):
        sparse.top_k(users(2, 4, "u"), K, with_moments=True)
    assert not fused(views, "auto", "rrf").sparse  # 150 items: the dense path
    with pytest.raises(ValueError, match="batch_size"):
        FusionConfig(batch_size=0)
    with pytest.raises(ValueError):
        FusionConfig(path="sideways")


def test_the_harness_scores_the_sparse_fusion_as_the_dense_one(views: dict) -> None:
    import pandas as pd

    from llmrec.data import RecDataset
    from llmrec.evaluation import EvalConfig, evaluate

    histories = [h for h in users(60, seed=5, prefix="e") if len(h) > 1]
    cases = [EvalCase(h.user_id, h.head(-1), h.item_ids[-1]) for h in histories]
    dataset = RecDataset("sparse-check", numbered_catalog(N_ITEMS), pd.DataFrame(), pd.DataFrame())
    dense = evaluate(
        fused(views, "dense", "rrf"), dataset, cases, EvalConfig(ranking="dense"), progress=False
    )
    sparse = evaluate(
        fused(views, "sparse", "rrf", batch_size=8),
        dataset,
        cases,
        EvalConfig(ranking="top-k", batch_size=16),
        progress=False,
    )
    assert sparse.metrics == dense.metrics and sparse.rankings == dense.rankings
