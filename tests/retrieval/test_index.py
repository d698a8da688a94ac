"""Tests of the faiss embedding index: exactness, recall, persistence, refusals, additions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmrec.retrieval.index import (
    EmbeddingIndex,
    IndexParams,
    exact_top_k,
    recall_vs_exact,
    set_threads,
)

from .fakes import MOVIES, make_catalog


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def vectors() -> tuple[np.ndarray, list[str], np.ndarray]:
    rng = np.random.default_rng(0)
    return _unit(rng, 2000, 32), [f"i{j}" for j in range(2000)], _unit(rng, 100, 32)


def test_flat_search_equals_brute_force(vectors) -> None:
    emb, ids, queries = vectors
    index = EmbeddingIndex.build(emb, ids, kind="flat")
    found, scores = index.search(queries, 10)
    sims = queries @ emb.T  # (100, 2000)
    top = np.argsort(-sims, axis=1)[:, :10]
    assert found == [[ids[j] for j in row] for row in top]
    np.testing.assert_allclose(scores, np.take_along_axis(sims, top, axis=1), rtol=1e-5)
    assert scores.dtype == np.float32 and scores.shape == (100, 10)
    np.testing.assert_array_equal(exact_top_k(emb, queries, 10), top)


def test_auto_picks_flat_for_small_catalogues(vectors) -> None:
    emb, ids, _ = vectors
    assert EmbeddingIndex.build(emb[:50], ids[:50]).kind == "flat"


def test_hnsw_recall_against_exact(vectors) -> None:
    emb, ids, queries = vectors
    index = EmbeddingIndex.build(emb, ids, kind="hnsw", params=IndexParams(hnsw_m=16))
    assert index.kind == "hnsw"
    assert recall_vs_exact(index, emb, queries, k=10) >= 0.9


def test_ivf_trains_and_probes(vectors) -> None:
    emb, ids, queries = vectors
    index = EmbeddingIndex.build(emb, ids, kind="ivf", params=IndexParams(nlist=16, nprobe=4))
    assert index.kind == "ivf" and index.index.nprobe == 4
    assert 0.3 <= recall_vs_exact(index, emb, queries, k=10) <= 1.0
    full = EmbeddingIndex.build(emb, ids, kind="ivf", params=IndexParams(nlist=16, nprobe=16))
    assert recall_vs_exact(full, emb, queries, k=10) == pytest.approx(1.0)
    auto_nlist = EmbeddingIndex.build(emb, ids, kind="ivf")
    assert auto_nlist.params.nlist == min(int(4 * np.sqrt(2000)), 2000 // 39)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip(vectors, kind: str, tmp_path: Path) -> None:
    emb, ids, queries = vectors
    catalog = make_catalog(MOVIES)
    index = EmbeddingIndex.build(
        emb, ids, kind=kind, fingerprint="32-abc", catalog=catalog, threads=1
    )
    index.save(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [
        "ids.json",
        "index.faiss",
        "meta.json",
    ]
    loaded = EmbeddingIndex.load(
        tmp_path / "idx", expected_fingerprint="32-abc", expected_catalog=catalog
    )
    assert (loaded.kind, loaded.dim, len(loaded)) == (kind, 32, 2000)
    assert loaded.params == index.params
    a_ids, a_scores = index.search(queries, 10)
    b_ids, b_scores = loaded.search(queries, 10)
    assert a_ids == b_ids
    np.testing.assert_allclose(a_scores, b_scores, rtol=1e-6)


def test_load_refuses_mismatched_index(vectors, tmp_path: Path) -> None:
    emb, ids, _ = vectors
    catalog = make_catalog(MOVIES)
    EmbeddingIndex.build(emb[:100], ids[:100], fingerprint="32-abc", catalog=catalog).save(
        tmp_path / "idx"
    )
    with pytest.raises(ValueError, match="encoder fingerprint '32-abc'.*'32-xyz'.*rebuild"):
        EmbeddingIndex.load(tmp_path / "idx", expected_fingerprint="32-xyz")
    with pytest.raises(ValueError, match="catalogue fingerprint.*rebuild"):
        EmbeddingIndex.load(tmp_path / "idx", expected_catalog=make_catalog(MOVIES[:3]))
    with pytest.raises(FileNotFoundError, match="no saved embedding index"):
        EmbeddingIndex.load(tmp_path / "missing")


def test_add_then_search_finds_new_items(vectors) -> None:
    emb, ids, _ = vectors
    catalog = make_catalog(MOVIES)
    index = EmbeddingIndex.build(emb[:100], ids[:100], kind="hnsw", catalog=catalog)
    new = _unit(np.random.default_rng(5), 2, 32)
    index.add(new, ["new-a", "new-b"], catalog="fp-2")
    found, scores = index.search(new, 1)
    assert found == [["new-a"], ["new-b"]]
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)
    assert len(index) == 102 and index.catalog_fingerprint == "fp-2"
    index.add(_unit(np.random.default_rng(6), 1, 32), ["new-c"])
    assert index.catalog_fingerprint is None


def test_duplicate_ids_refused(vectors) -> None:
    emb, ids, _ = vectors
    with pytest.raises(ValueError, match=r"duplicate item ids \['i0'\]"):
        EmbeddingIndex.build(emb[:3], ["i0", "i1", "i0"])
    index = EmbeddingIndex.build(emb[:10], ids[:10])
    with pytest.raises(ValueError, match=r"duplicate item ids \['i3'\]"):
        index.add(emb[:1], ["i3"])
    with pytest.raises(ValueError, match=r"duplicate item ids \['x'\]"):
        index.add(emb[:2], ["x", "x"])
    assert len(index) == 10 and index.index.ntotal == 10


def test_small_index_and_bad_input(vectors) -> None:
    emb, ids, queries = vectors
    index = EmbeddingIndex.build(emb[:3], ids[:3])
    found, scores = index.search(queries[:2], 5)
    assert [len(row) for row in found] == [3, 3]
    assert scores.shape == (2, 5) and np.all(np.isneginf(scores[:, 3:]))
    one, _ = index.search(queries[0], 1)  # a single 1-D query
    assert len(one) == 1
    with pytest.raises(ValueError, match="dimension 8, the index has 32"):
        index.search(np.ones((1, 8), dtype=np.float32), 1)
    with pytest.raises(ValueError, match="kind must be one of"):
        EmbeddingIndex.build(emb[:3], ids[:3], kind="lsh")
    with pytest.raises(ValueError, match="3 item ids for 2 embeddings"):
        EmbeddingIndex.build(emb[:2], ids[:3])
    with pytest.raises(ValueError, match="NaN"):
        EmbeddingIndex.build(np.full((2, 4), np.nan), ["a", "b"])
    with pytest.raises(ValueError, match="threads must be >= 1"):
        set_threads(0)
