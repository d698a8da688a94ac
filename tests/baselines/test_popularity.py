"""PopularityRecommender: training counts, the same for every user."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.baselines.popularity import PopularityRecommender


def test_counts_and_order(make_catalog, seq) -> None:
    catalog = make_catalog(5)
    train = [seq("a", [0, 1, 2]), seq("b", [1, 2]), seq("c", [2, 3])]
    model = PopularityRecommender().fit(train, catalog)

    scores = model.score([seq("x", [0]), seq("y", [])])

    assert scores.shape == (2, 5)
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(scores[0], [1, 2, 3, 1, 0])
    np.testing.assert_array_equal(scores[1], scores[0])
    assert np.argsort(-scores[0], kind="stable").tolist() == [2, 1, 0, 3, 4]


def test_score_candidates(make_catalog, seq) -> None:
    model = PopularityRecommender().fit([seq("a", [0, 1, 1, 2, 2, 2])], make_catalog(4))
    out = model.score_candidates([seq("x", [0])], np.array([[3, 2, 1]]))
    np.testing.assert_array_equal(out, [[0, 3, 2]])


def test_save_load_round_trip(tmp_path, make_catalog, seq) -> None:
    catalog = make_catalog(4)
    model = PopularityRecommender().fit([seq("a", [0, 1, 1, 3])], catalog)
    model.save(tmp_path / "pop")

    again = PopularityRecommender.load(tmp_path / "pop", catalog)

    histories = [seq("x", [2])]
    np.testing.assert_array_equal(again.score(histories), model.score(histories))
    with pytest.raises(ValueError, match="another catalogue"):
        PopularityRecommender.load(tmp_path / "pop", make_catalog(4, prefix="other-"))


def test_unfitted_and_unknown_items(make_catalog, seq) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        PopularityRecommender().score([seq("x", [0])])
    with pytest.raises(KeyError, match="'9'"):
        PopularityRecommender().fit([seq("a", [0, 9])], make_catalog(3))
    with pytest.raises(ValueError, match="valid fields"):
        PopularityRecommender(alpha=1)
