"""Each view's sparse top-k path against its dense scores: the same lists, scores and moments."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.baselines.markov import MarkovRecommender
from llmrec.baselines.popularity import PopularityRecommender
from llmrec.recommender import Recommender
from llmrec.retrieval.simple import Cooccurrence, RecentPopularity
from llmrec.sparse import ItemMatrix

from .fakes import numbered_catalog as catalog
from .fakes import numbered_sequence as seq

N_ITEMS = 80


def random_sequences(n: int, seed: int, prefix: str = "u") -> list:
    """``n`` users with 0-11 random items each (items 70-79 never occur: unknown to every view,
    which abstains there) at random times over ten days."""
    rng = np.random.default_rng(seed)
    out = []
    for u in range(n):
        length = int(rng.integers(0, 12))
        times = np.sort(rng.uniform(0, 10 * 86_400, size=length)).tolist()
        out.append(seq(f"{prefix}{u}", rng.integers(0, 70, size=length).tolist(), times))
    return out


def fitted_views() -> list[Recommender]:
    train = random_sequences(60, seed=0, prefix="t")
    views = [
        PopularityRecommender(),
        MarkovRecommender(backoff=1e-3),
        RecentPopularity(half_life_days=1),
        Cooccurrence(window=3, history_items=4, recency_decay=0.7),
        Cooccurrence(window=3, neighbours=4),
    ]
    return [v.fit(train, catalog(N_ITEMS)) for v in views]


def view_id(view: Recommender) -> str:
    return view.name + ("-pruned" if getattr(view.config, "neighbours", None) else "")


@pytest.mark.parametrize("view", fitted_views(), ids=view_id)
@pytest.mark.parametrize("exclude_history", [True, False])
def test_sparse_top_k_equals_the_dense_top_k(view: Recommender, exclude_history: bool) -> None:
    histories = random_sequences(40, seed=1)
    for k in (1, 10, 100):
        sparse = view.top_k(histories, k, exclude_history=exclude_history, with_moments=True)
        dense = Recommender.top_k(
            view, histories, k, exclude_history=exclude_history, with_moments=True
        )
        np.testing.assert_array_equal(sparse.items, dense.items)
        np.testing.assert_array_equal(sparse.scores, dense.scores)
        assert sparse.scores.dtype == np.float32
        assert sparse.mean is not None and dense.mean is not None
        np.testing.assert_allclose(sparse.mean, dense.mean, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(sparse.std, dense.std, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("view", fitted_views(), ids=view_id)
def test_score_candidates_equals_the_dense_scores(view: Recommender) -> None:
    histories = random_sequences(30, seed=2)
    candidates = np.random.default_rng(3).integers(0, N_ITEMS, size=(30, 25))
    full = view.score(histories)
    np.testing.assert_array_equal(
        view.score_candidates(histories, candidates),
        np.take_along_axis(full, candidates, axis=1),
    )


def test_top_k_needs_a_fitted_view_and_a_valid_k() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        Cooccurrence().top_k([seq("x", [1])], 5)
    view = fitted_views()[0]
    with pytest.raises(ValueError, match="k must be"):
        view.top_k([seq("x", [1])], 0)


def test_strongest_keeps_each_rows_largest_entries_and_cooc_prunes_with_it() -> None:
    m = ItemMatrix.from_pairs(
        np.array([0, 0, 0, 1, 1, 2]),
        np.array([1, 2, 3, 0, 3, 1]),
        n=4,
        weights=np.array([1.0, 3.0, 3.0, 2.0, 1.0, 5.0]),
    )
    top = m.strongest(2)
    # row 0: 3.0 at columns 2 and 3 (1.0 at column 1 dropped); row 1 keeps both; row 2 its one
    assert top.indptr.tolist() == [0, 2, 4, 5, 5]
    assert top.indices.tolist() == [2, 3, 0, 3, 1] and top.data.tolist() == [3, 3, 2, 1, 5]
    assert m.strongest(1).indices.tolist() == [2, 0, 1]  # a tie goes to the lower column
    with pytest.raises(ValueError, match="m must be"):
        m.strongest(0)
    train = [seq("a", [0, 1, 2, 3, 4, 5])]
    pruned = Cooccurrence(window=5, neighbours=2).fit(train, catalog(8))
    assert (np.diff(pruned.matrix.indptr) <= 2).all()
    assert (pruned.score([seq("x", [0])])[0] > 0).sum() == 2
    with pytest.raises(ValueError, match="neighbours"):
        Cooccurrence(neighbours=0)


def test_cooccurrence_fits_the_same_matrix_whatever_the_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import llmrec.retrieval.simple as simple

    train = random_sequences(50, seed=7, prefix="t")
    whole = Cooccurrence(window=4).fit(train, catalog(N_ITEMS)).matrix
    monkeypatch.setattr(simple, "_FIT_CHUNK", 3)
    chunked = Cooccurrence(window=4).fit(train, catalog(N_ITEMS)).matrix
    for name, value in whole.to_arrays().items():
        np.testing.assert_array_equal(chunked.to_arrays()[name], value)
