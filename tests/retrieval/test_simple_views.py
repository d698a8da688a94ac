"""Recency-aware popularity, co-occurrence and the sparse item matrix, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.retrieval.simple import DAY, Cooccurrence, RecentPopularity
from llmrec.sparse import ItemMatrix

from .fakes import numbered_catalog as catalog
from .fakes import numbered_sequence as seq


def test_item_matrix_sums_duplicates_and_adds_rows() -> None:
    m = ItemMatrix.from_pairs(
        np.array([0, 0, 1, 0]), np.array([1, 1, 2, 2]), n=3, weights=np.array([1.0, 2.0, 5.0, 0.5])
    )
    assert m.indptr.tolist() == [0, 2, 3, 3]
    assert m.indices.tolist() == [1, 2, 2] and m.data.tolist() == [3.0, 0.5, 5.0]
    assert m.row_sums().tolist() == [3.5, 5.0, 0.0]
    out = np.zeros((2, 3))
    m.add_rows(out, np.array([0, 0, 1]), np.array([0, 1, 2]), np.array([1.0, 2.0, 1.0]))
    assert out.tolist() == [[0.0, 3.0, 10.5], [0.0, 0.0, 0.0]]


def test_recent_popularity_halves_per_half_life() -> None:
    train = [seq("a", [0, 1], [0.0, 10 * DAY]), seq("b", [1, 2], [10 * DAY, 10 * DAY])]
    model = RecentPopularity(half_life_days=10).fit(train, catalog())
    # item 0: one interaction 10 days old -> 0.5; item 1: two fresh -> 2; item 2: one fresh -> 1
    assert model.score([seq("x", [])])[0].tolist() == pytest.approx([0.25, 1.0, 0.5, 0, 0])


def test_cooccurrence_by_hand() -> None:
    # one sequence 0 1 2, window 1: pairs (0,1), (1,2) both ways with weight 1
    model = Cooccurrence(window=1, history_items=1, alpha=0.5).fit([seq("a", [0, 1, 2])], catalog())
    # totals: n0 = 1, n1 = 2, n2 = 1; c01 / sqrt(n0 * n1) = 1 / sqrt(2)
    scores = model.score([seq("x", [0]), seq("y", [1]), seq("z", [])])
    assert scores[0].tolist() == pytest.approx([0, 2**-0.5, 0, 0, 0])
    assert scores[1].tolist() == pytest.approx([2**-0.5, 0, 2**-0.5, 0, 0])
    assert scores[2].tolist() == [0.0] * 5


def test_cooccurrence_weighs_recent_history_more() -> None:
    train = [seq("a", [0, 3]), seq("b", [1, 4])]
    model = Cooccurrence(window=1, history_items=2, recency_decay=0.5).fit(train, catalog())
    s = model.score([seq("x", [0, 1])])[0]  # 1 is the most recent -> its neighbour 4 wins
    assert s[4] == pytest.approx(2 * s[3]) and s[4] > 0


def test_views_save_and_load(tmp_path) -> None:  # noqa: ANN001
    train = [seq("a", [0, 1, 2, 3]), seq("b", [2, 3, 4])]
    for model in (Cooccurrence(window=2), RecentPopularity(half_life_days=1)):
        model.fit(train, catalog())
        model.save(tmp_path / model.name)
        again = type(model).load(tmp_path / model.name, catalog())
        h = [seq("x", [1, 2])]
        assert np.array_equal(model.score(h), again.score(h))
        with pytest.raises(ValueError, match="another catalogue"):
            type(model).load(tmp_path / model.name, catalog(6))


@pytest.mark.parametrize("bad", [{"window": 0}, {"alpha": 2.0}, {"recency_decay": -1.0}])
def test_bad_config_names_the_field(bad) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=next(iter(bad))):
        Cooccurrence(**bad)
