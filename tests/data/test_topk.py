"""Top-k lists: exactly the first k items of the stable descending order, with ties by index,
from dense rows, from a shared row with per-user changes, and the moments fusion needs."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.data.topk import (
    SharedScores,
    TopK,
    lowest_absent,
    row_moments,
    top_k_merge,
    top_k_rows,
)


def reference(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The dense definition: stable argsort of the negated scores, non-finite unranked."""
    clean = np.where(np.isfinite(scores), scores, -np.inf)
    order = np.argsort(-clean, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(clean, order, axis=1)
    items = np.where(values == -np.inf, -1, order)
    pad = k - items.shape[1]
    if pad > 0:
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        values = np.pad(values, ((0, 0), (0, pad)), constant_values=-np.inf)
    return items, values


@pytest.mark.parametrize("k", [1, 3, 7, 40, 45])
def test_top_k_rows_equals_the_stable_argsort_with_ties_and_non_finite(k: int) -> None:
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 4, size=(50, 40)).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    scores[rng.random(scores.shape) < 0.05] = np.nan
    scores[3] = -np.inf  # a row with nothing rankable
    items, values = top_k_rows(scores, k)
    want_items, want_values = reference(scores, k)
    assert items.shape == (50, k) and values.dtype == np.float32
    np.testing.assert_array_equal(items, want_items)
    np.testing.assert_array_equal(values, want_values)


def test_top_k_rows_works_in_blocks_and_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    import llmrec.data.topk as topk

    monkeypatch.setattr(topk, "_BLOCK_CELLS", 64)  # 2 rows of 30 items per block
    scores = np.random.default_rng(0).normal(size=(9, 30))
    np.testing.assert_array_equal(top_k_rows(scores, 5)[0], reference(scores, 5)[0])
    with pytest.raises(ValueError, match="k must be"):
        top_k_rows(scores, 0)
    with pytest.raises(ValueError, match="2-D"):
        top_k_rows(scores[0], 3)


def test_top_k_merge_and_lowest_absent() -> None:
    items, scores = top_k_merge(np.array([9, 2, 5, 7]), np.array([1.0, 3.0, 1.0, -np.inf]), 4)
    assert items.tolist() == [2, 5, 9, -1] and scores.tolist() == [3.0, 1.0, 1.0, -np.inf]
    assert lowest_absent(3, np.array([0, 2, 2]), 10).tolist() == [1, 3, 4]
    assert lowest_absent(5, np.array([0, 1]), 4).tolist() == [2, 3]


def test_shared_scores_give_the_dense_top_k_and_moments() -> None:
    rng = np.random.default_rng(1)
    n = 60
    base = rng.integers(0, 5, size=n).astype(np.float32)
    known = rng.random(n) < 0.8
    shared = SharedScores(base, known)
    excludes, touches, rows = [], [], []
    for user in range(30):
        exclude = np.unique(rng.integers(0, n, size=user % 7))
        touched = np.unique(rng.integers(0, n, size=3 * (user % 5)))  # some also excluded
        new = rng.integers(0, 8, size=len(touched)).astype(np.float32)  # ties with the base
        row = base.copy()
        row[touched] = new
        row[exclude] = -np.inf
        for k in (1, 2, 5, 70):
            items, values = shared.top_k(k, exclude, touched, new)
            want_items, want_values = reference(row[None, :], k)
            np.testing.assert_array_equal(items, want_items[0])
            np.testing.assert_array_equal(values, want_values[0])
        excludes.append(exclude)
        touches.append((touched, new))
        rows.append(row)
    mean, std = shared.moments(excludes, touches)
    want_mean, want_std = row_moments(np.array(rows), known)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(std, want_std, rtol=1e-9, atol=1e-12)
    untouched_mean, _ = shared.moments(excludes)
    assert untouched_mean[0] == pytest.approx(base[known].mean())


def test_row_moments_and_topk_record() -> None:
    scores = np.array([[1.0, 2.0, 3.0, -np.inf], [-np.inf] * 4])
    mean, std = row_moments(scores, np.array([True, True, False, True]))
    assert mean[0] == 1.5 and std[0] == 0.5 and np.isnan(mean[1]) and np.isnan(std[1])
    top = TopK(np.array([[2, 0], [1, -1]]), np.array([[3.0, 1.0], [2.0, -np.inf]]))
    assert top.k == 2 and len(top) == 2
    assert top.ranks_of(np.array([0, 3])) == [1, None]
    both = TopK.concat([top, top])
    assert both.items.shape == (4, 2) and both.mean is None
    with pytest.raises(ValueError, match="one shape"):
        TopK(np.zeros((2, 3), dtype=np.int64), np.zeros((2, 2)))
