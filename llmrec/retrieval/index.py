"""Nearest-neighbour search over item embeddings with faiss (inner product).

:class:`EmbeddingIndex` wraps a faiss index whose row ``i`` is the item ``item_ids[i]``: rows are
numbered in the order items were added, and the id list maps them back to item ids. Kinds:

- ``"flat"``: ``IndexFlatIP``, exact;
- ``"hnsw"``: ``IndexHNSWFlat`` (inner product), approximate; ``hnsw_m``, ``ef_construction``,
  ``ef_search``;
- ``"ivf"``: ``IndexIVFFlat`` (inner product) trained on a seeded sample; ``nlist``, ``nprobe``;
- ``"auto"``: flat below :data:`AUTO_HNSW_THRESHOLD` items, else hnsw.

Scores are inner products: cosine similarities when the embeddings and queries are unit length
(the caller normalizes). An index remembers the encoder and catalogue fingerprints it was built
for, and :meth:`EmbeddingIndex.load` refuses one built for others.

faiss is imported only when an index is built or loaded: ``pip install 'llmrec[retrieval]'``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.io import atomic_dir
from llmrec.validation import check_number

logger = logging.getLogger(__name__)

KINDS = ("flat", "hnsw", "ivf", "auto")
#: ``kind="auto"`` builds an exact flat index below this many items, an HNSW graph above.
AUTO_HNSW_THRESHOLD = 100_000
FORMAT_VERSION = 1


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            f"the embedding index needs faiss: pip install 'llmrec[retrieval]' ({exc})"
        ) from exc
    return faiss


def set_threads(threads: int | None) -> None:
    """Set faiss's OpenMP thread count (process-wide); ``None`` leaves it as it is."""
    if threads is None:
        return
    check_number("threads", threads, minimum=1)
    _faiss().omp_set_num_threads(int(threads))


@dataclass(frozen=True)
class IndexParams:
    """Tuning knobs of the approximate kinds (ignored by ``flat``).

    ``nlist=None`` picks ``4 * sqrt(N)`` lists (at least 1, at most N / 39 so each list gets
    enough training points); ``train_size`` caps the seeded training sample of ``ivf``.
    """

    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int | None = None
    nprobe: int = 16
    train_size: int = 100_000
    seed: int = 0

    def __post_init__(self) -> None:
        check_number("hnsw_m", self.hnsw_m, minimum=2)
        check_number("ef_construction", self.ef_construction, minimum=1)
        check_number("ef_search", self.ef_search, minimum=1)
        if self.nlist is not None:
            check_number("nlist", self.nlist, minimum=1)
        check_number("nprobe", self.nprobe, minimum=1)
        check_number("train_size", self.train_size, minimum=1)
        check_number("seed", self.seed, minimum=0)


def _as_matrix(x: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (n, d), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{what} have dimension {arr.shape[1]}, the index has {dim}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} hold NaN or infinite values")
    return np.ascontiguousarray(arr)


def _check_new_ids(item_ids: Sequence[str], existing: set[str], count: int) -> list[str]:
    ids = [str(i) for i in item_ids]
    if len(ids) != count:
        raise ValueError(f"got {len(ids)} item ids for {count} embeddings")
    seen: set[str] = set()
    dup: set[str] = set()
    for item_id in ids:
        if item_id in existing or item_id in seen:
            dup.add(item_id)
        seen.add(item_id)
    if dup:
        dup_list = sorted(dup)
        raise ValueError(
            f"duplicate item ids {dup_list[:5]}{' ...' if len(dup) > 5 else ''}: each item may "
            "be in the index once"
        )
    return ids


def _catalog_fingerprint(catalog: Catalog | str | None) -> str | None:
    if catalog is None or isinstance(catalog, str):
        return catalog
    return catalog.fingerprint()


class EmbeddingIndex:
    """A faiss inner-product index whose rows map back to item ids. Build with :meth:`build`."""

    def __init__(
        self,
        index: Any,
        item_ids: Sequence[str],
        kind: str,
        dim: int,
        params: IndexParams,
        encoder_fingerprint: str | None = None,
        catalog_fingerprint: str | None = None,
    ) -> None:
        self.index = index
        self.item_ids: list[str] = list(item_ids)
        self._id_set = set(self.item_ids)
        self.kind = kind
        self.dim = dim
        self.params = params
        self.encoder_fingerprint = encoder_fingerprint
        self.catalog_fingerprint = catalog_fingerprint
        self._apply_search_params()

    def __len__(self) -> int:
        return len(self.item_ids)

    # ------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        item_ids: Sequence[str],
        kind: str = "auto",
        *,
        fingerprint: str | None = None,
        catalog: Catalog | str | None = None,
        params: IndexParams | None = None,
        threads: int | None = None,
    ) -> EmbeddingIndex:
        """Index ``embeddings`` (N, d), row ``i`` being ``item_ids[i]``.

        ``fingerprint`` is the encoder fingerprint and ``catalog`` the catalogue (or its
        fingerprint) the embeddings come from; both are saved and checked by :meth:`load`.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
        params = params or IndexParams()
        set_threads(threads)
        faiss = _faiss()
        x = _as_matrix(embeddings, "embeddings")
        n, dim = x.shape
        if n == 0:
            raise ValueError("cannot build an index over 0 embeddings")
        ids = _check_new_ids(item_ids, set(), n)
        resolved = kind if kind != "auto" else ("flat" if n < AUTO_HNSW_THRESHOLD else "hnsw")
        if resolved == "flat":
            index = faiss.IndexFlatIP(dim)
        elif resolved == "hnsw":
            index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = params.ef_construction
        else:
            nlist = params.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
            if nlist > n:
                raise ValueError(f"nlist ({nlist}) must not exceed the number of items ({n})")
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(params.seed)
            size = min(n, params.train_size)
            sample = x if size == n else x[np.sort(rng.choice(n, size=size, replace=False))]
            index.train(sample)
            params = IndexParams(**{**asdict(params), "nlist": nlist})
        index.add(x)
        logger.info("index: built %s index over %d items of dimension %d", resolved, n, dim)
        return cls(index, ids, resolved, dim, params, fingerprint, _catalog_fingerprint(catalog))

    def _apply_search_params(self) -> None:
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = self.params.ef_search
        elif self.kind == "ivf":
            self.index.nprobe = min(self.params.nprobe, self.index.nlist)

    def add(
        self,
        embeddings: np.ndarray,
        item_ids: Sequence[str],
        *,
        catalog: Catalog | str | None = None,
    ) -> None:
        """Append items; ids already in the index (or repeated) raise ``ValueError``.

        ``catalog`` is the catalogue that now holds the items (or its fingerprint). Without it
        the stored catalogue fingerprint no longer describes the index and is cleared (with a
        warning), so a later :meth:`load` with ``expected_catalog`` refuses the index.
        """
        x = _as_matrix(embeddings, "embeddings", self.dim)
        ids = _check_new_ids(item_ids, self._id_set, x.shape[0])
        self.index.add(x)
        self.item_ids.extend(ids)
        self._id_set.update(ids)
        fingerprint = _catalog_fingerprint(catalog)
        if fingerprint is None and self.catalog_fingerprint is not None:
            logger.warning(
                "index: added %d items without a catalogue; its catalogue fingerprint is cleared",
                len(ids),
            )
        self.catalog_fingerprint = fingerprint

    # ------------------------------------------------------------ searching
    def search(self, queries: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
        """The ``k`` best items per query: (item ids per query, scores float32 (n, k)).

        Rows are best first. When the index holds fewer than ``k`` items (or an approximate
        search finds fewer), a row's id list is shorter and the missing scores are ``-inf``.
        """
        check_number("k", k, minimum=1)
        q = _as_matrix(queries, "queries", self.dim)
        k_eff = min(int(k), len(self))
        scores, rows = self.index.search(q, k_eff)  # (n, k_eff) each
        out_scores = np.full((q.shape[0], int(k)), -np.inf, dtype=np.float32)
        out_ids: list[list[str]] = []
        for r in range(q.shape[0]):
            valid = rows[r] >= 0
            out_ids.append([self.item_ids[j] for j in rows[r][valid]])
            out_scores[r, : int(valid.sum())] = scores[r][valid]
        return out_ids, out_scores

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``index.faiss``, ``ids.json`` and ``meta.json`` to the folder ``path``."""
        faiss = _faiss()
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "metric": "inner_product",
            "dim": self.dim,
            "count": len(self),
            "encoder_fingerprint": self.encoder_fingerprint,
            "catalog_fingerprint": self.catalog_fingerprint,
            "params": asdict(self.params),
            "faiss_version": getattr(faiss, "__version__", "unknown"),
        }
        with atomic_dir(path) as tmp:
            faiss.write_index(self.index, str(tmp / "index.faiss"))
            (tmp / "ids.json").write_text(json.dumps(self.item_ids, ensure_ascii=False) + "\n")
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        return Path(path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        expected_fingerprint: str | None = None,
        expected_catalog: Catalog | str | None = None,
        threads: int | None = None,
    ) -> EmbeddingIndex:
        """Read an index written by :meth:`save`.

        Raises ``ValueError`` when ``expected_fingerprint`` (the current encoder's fingerprint)
        or ``expected_catalog`` (a catalogue or its fingerprint) differ from what the index was
        built for, saying what differs and how to rebuild.
        """
        faiss = _faiss()
        set_threads(threads)
        folder = Path(path)
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} holds no saved embedding index (no meta.json)")
        meta = json.loads(meta_path.read_text())
        rebuild = (
            "; rebuild it with EmbeddingIndex.build(<current item embeddings>, <item ids>, "
            "fingerprint=..., catalog=...) and save it again"
        )
        stored_fingerprint = meta.get("encoder_fingerprint")
        if expected_fingerprint is not None and stored_fingerprint != expected_fingerprint:
            raise ValueError(
                f"{folder} was built with text encoder fingerprint "
                f"{meta.get('encoder_fingerprint')!r}, but the current encoder's is "
                f"{expected_fingerprint!r}: its vectors do not match the encoder's queries"
                + rebuild
            )
        expected_cat = _catalog_fingerprint(expected_catalog)
        if expected_cat is not None and meta.get("catalog_fingerprint") != expected_cat:
            raise ValueError(
                f"{folder} was built for catalogue fingerprint {meta.get('catalog_fingerprint')!r}"
                f", but the current catalogue's is {expected_cat!r}: its items differ" + rebuild
            )
        ids = json.loads((folder / "ids.json").read_text())
        index = faiss.read_index(str(folder / "index.faiss"))
        if index.ntotal != len(ids) or len(ids) != meta.get("count") or index.d != meta.get("dim"):
            raise ValueError(
                f"{folder} is inconsistent: index.faiss has {index.ntotal} vectors of dimension "
                f"{index.d}, ids.json {len(ids)} ids, meta.json count {meta.get('count')} and dim "
                f"{meta.get('dim')}" + rebuild
            )
        return cls(
            index,
            ids,
            meta["kind"],
            int(meta["dim"]),
            IndexParams(**meta.get("params", {})),
            meta.get("encoder_fingerprint"),
            meta.get("catalog_fingerprint"),
        )


def exact_top_k(
    embeddings: np.ndarray, queries: np.ndarray, k: int, chunk: int = 1024
) -> np.ndarray:
    """Row numbers of the ``k`` largest inner products per query, best first: int64 (n, k)."""
    x = _as_matrix(embeddings, "embeddings")
    q = _as_matrix(queries, "queries", x.shape[1])
    k = min(int(k), x.shape[0])
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for start in range(0, q.shape[0], chunk):
        s = q[start : start + chunk] @ x.T  # (c, N)
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]  # (c, k) unordered
        order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
        out[start : start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def recall_vs_exact(
    index: EmbeddingIndex, embeddings: np.ndarray, queries: np.ndarray, k: int = 10
) -> float:
    """Recall@k of ``index`` against exact search: mean share of the true top ``k`` found.

    ``embeddings`` are the indexed vectors in the index's row order (``index.item_ids``).
    """
    if len(embeddings) != len(index):
        raise ValueError(f"got {len(embeddings)} embeddings for an index of {len(index)} items")
    truth = exact_top_k(embeddings, queries, k)  # (n, k)
    found, _ = index.search(queries, k)
    hits = [
        len({index.item_ids[j] for j in row} & set(ids))
        for row, ids in zip(truth, found, strict=True)
    ]
    return float(np.mean(hits) / truth.shape[1]) if hits else 1.0
