"""MarkovRecommender: transition shares from the last item plus a popularity backoff."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.baselines.markov import MarkovConfig, MarkovRecommender

# Training data used by most tests. Item counts: 0:3, 1:3, 2:1, 3:2, 4:0 (max 3).
# Transitions: 0->1 twice; 1->2, 1->3, 1->0 once each; nothing leaves 2, 3 or 4.
TRAIN = [[0, 1, 2], [0, 1, 3], [1, 0], [3]]
POP = np.array([3, 3, 1, 2, 0]) / 3


def fitted(make_catalog, seq, backoff: float = 0.01) -> MarkovRecommender:
    train = [seq(f"u{k}", items) for k, items in enumerate(TRAIN)]
    return MarkovRecommender(backoff=backoff).fit(train, make_catalog(5))


def test_scores_match_hand_computed_values(make_catalog, seq) -> None:
    model = fitted(make_catalog, seq)

    scores = model.score([seq("x", [2, 0]), seq("y", [4, 1])])

    assert scores.shape == (2, 5)
    assert scores.dtype == np.float32
    # After 0: always 1.  After 1: 0, 2, 3 a third each.
    expected_after_0 = np.array([0, 1, 0, 0, 0]) + 0.01 * POP
    expected_after_1 = np.array([1 / 3, 0, 1 / 3, 1 / 3, 0]) + 0.01 * POP
    np.testing.assert_allclose(scores[0], expected_after_0, rtol=1e-6)
    np.testing.assert_allclose(scores[1], expected_after_1, rtol=1e-6)
    assert model.transition("1") == pytest.approx({"0": 1 / 3, "2": 1 / 3, "3": 1 / 3})
    assert model.transition("4") == {}


def test_unseen_transitions_are_ordered_by_popularity(make_catalog, seq) -> None:
    scores = fitted(make_catalog, seq).score([seq("x", [0]), seq("y", [1])])
    # After 0 only 1 was seen; the rest follow popularity 0 (3) > 3 (2) > 2 (1) > 4 (0).
    assert np.argsort(-scores[0], kind="stable").tolist() == [1, 0, 3, 2, 4]
    # After 1 the three successors tie on transitions; popularity breaks the tie: 0 > 3 > 2.
    assert np.argsort(-scores[1], kind="stable").tolist() == [0, 3, 2, 1, 4]


def test_empty_history_and_dead_end_fall_back_to_popularity(make_catalog, seq) -> None:
    scores = fitted(make_catalog, seq).score([seq("x", []), seq("y", [0, 4]), seq("z", [2])])
    for row in scores:
        np.testing.assert_allclose(row, 0.01 * POP, rtol=1e-6)


def test_matches_dense_reference_on_random_data(make_catalog, seq) -> None:
    rng = np.random.default_rng(0)
    n = 30
    train_items = [rng.integers(0, n, size=rng.integers(0, 12)).tolist() for _ in range(40)]
    model = MarkovRecommender(backoff=0.05).fit(
        [seq(f"u{k}", items) for k, items in enumerate(train_items)], make_catalog(n)
    )
    counts = np.zeros(n)
    pairs = np.zeros((n, n))
    for items in train_items:
        for i in items:
            counts[i] += 1
        for a, b in zip(items[:-1], items[1:], strict=True):
            pairs[a, b] += 1
    rows = pairs.sum(axis=1, keepdims=True)
    dense = np.divide(pairs, rows, out=np.zeros_like(pairs), where=rows > 0)
    histories = [rng.integers(0, n, size=rng.integers(0, 4)).tolist() for _ in range(25)]

    scores = model.score([seq(f"h{k}", h) for k, h in enumerate(histories)])

    for row, history in zip(scores, histories, strict=True):
        expected = 0.05 * counts / counts.max()
        if history:
            expected = expected + dense[history[-1]]
        np.testing.assert_allclose(row, expected, rtol=1e-5, atol=1e-7)


def test_save_load_round_trip(tmp_path, make_catalog, seq) -> None:
    model = fitted(make_catalog, seq, backoff=0.2)
    model.save(tmp_path / "markov")

    again = MarkovRecommender.load(tmp_path / "markov", make_catalog(5))

    histories = [seq("x", [0]), seq("y", []), seq("z", [1, 3])]
    np.testing.assert_array_equal(again.score(histories), model.score(histories))
    assert again.config == MarkovConfig(backoff=0.2)
    with pytest.raises(ValueError, match="another catalogue"):
        MarkovRecommender.load(tmp_path / "markov", make_catalog(5, prefix="x"))


def test_bad_config(make_catalog, seq) -> None:
    with pytest.raises(ValueError, match="backoff"):
        MarkovRecommender(backoff=-1.0)
    with pytest.raises(ValueError, match="backoff"):
        MarkovConfig(backoff="high")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="not fitted"):
        MarkovRecommender().score([seq("x", [0])])
