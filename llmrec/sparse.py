"""A small item x item sparse matrix in CSR layout, built and read with numpy (no scipy).

Used by the Markov baseline (transitions) and the co-occurrence retrieval view: memory grows with
the observed pairs, not with the square of the catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ItemMatrix:
    """``n x n`` sparse matrix: row ``i`` holds ``indices[indptr[i]:indptr[i+1]]`` and ``data``."""

    indptr: np.ndarray  # (n + 1,) int64 row starts
    indices: np.ndarray  # (nnz,) int64 column of each entry, sorted within a row
    data: np.ndarray  # (nnz,) float64 value of each entry

    @property
    def n(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def from_pairs(
        cls, rows: np.ndarray, cols: np.ndarray, n: int, weights: np.ndarray | None = None
    ) -> ItemMatrix:
        """Sum ``weights`` (default 1) of every ``(row, col)`` pair; duplicates add up."""
        rows = np.asarray(rows, dtype=np.int64)  # (P,)
        cols = np.asarray(cols, dtype=np.int64)  # (P,)
        return cls.from_codes(rows * n + cols, n, weights)

    @classmethod
    def from_codes(cls, codes: np.ndarray, n: int, weights: np.ndarray | None = None) -> ItemMatrix:
        """:meth:`from_pairs` with each pair given as one code ``row * n + col`` (half the
        memory of two index arrays); the weights of equal codes add up in input order."""
        codes = np.asarray(codes, dtype=np.int64)  # (P,) one code per (row, col)
        w = np.ones(len(codes)) if weights is None else np.asarray(weights, dtype=np.float64)
        unique, inverse = np.unique(codes, return_inverse=True)  # (nnz,) sorted by row, col
        data = np.bincount(inverse.ravel(), weights=w, minlength=len(unique))  # (nnz,)
        entry_rows = unique // n  # (nnz,)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(entry_rows, minlength=n))])
        return cls(indptr.astype(np.int64), (unique % n).astype(np.int64), data.astype(np.float64))

    def row_sums(self) -> np.ndarray:
        rows = np.repeat(np.arange(self.n), np.diff(self.indptr))  # (nnz,)
        return np.bincount(rows, weights=self.data, minlength=self.n)  # (n,)

    def scale(self, row_factors: np.ndarray | None = None, col_factors: np.ndarray | None = None):
        """A new matrix with entry (i, j) multiplied by ``row_factors[i] * col_factors[j]``."""
        data = self.data.copy()
        if row_factors is not None:
            data *= np.repeat(np.asarray(row_factors, dtype=np.float64), np.diff(self.indptr))
        if col_factors is not None:
            data *= np.asarray(col_factors, dtype=np.float64)[self.indices]
        return ItemMatrix(self.indptr, self.indices, data)

    def strongest(self, m: int) -> ItemMatrix:
        """A new matrix keeping each row's ``m`` largest entries (ties: the lower column)."""
        if m < 1:
            raise ValueError(f"m must be >= 1, got {m}")
        rows = np.repeat(np.arange(self.n), np.diff(self.indptr))  # (nnz,)
        order = np.lexsort((self.indices, -self.data, rows))  # by row, value descending, column
        rank = np.arange(len(order)) - self.indptr[rows[order]]  # place within the row
        keep = np.sort(order[rank < m])  # back to row, column order
        counts = np.bincount(rows[keep], minlength=self.n)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return ItemMatrix(indptr, self.indices[keep], self.data[keep])

    def add_rows(
        self,
        out: np.ndarray,
        out_rows: np.ndarray,
        rows: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> None:
        """``out[out_rows[k]] += weights[k] * self[rows[k]]`` for every k, in place.

        ``out`` is a dense (users, n) array; ``out_rows``, ``rows`` and ``weights`` are aligned.
        """
        targets, cols, values = self._gather(out_rows, rows, weights)
        if len(values):
            np.add.at(out, (targets, cols), values)

    def combine_rows(
        self,
        out_rows: np.ndarray,
        rows: np.ndarray,
        n_out: int,
        weights: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What :meth:`add_rows` adds to a zero (n_out, n) array, kept sparse: CSR arrays
        (indptr (n_out + 1,), indices, data) with columns sorted within each output row.

        Each entry sums its terms in the same order as :meth:`add_rows`, so the values agree to
        the bit; only the items the rows touch are stored.
        """
        targets, cols, values = self._gather(out_rows, rows, weights)
        codes = targets * self.n + cols  # (k,) one code per (output row, column)
        unique, inverse = np.unique(codes, return_inverse=True)  # (m,)
        data = np.bincount(inverse.ravel(), weights=values, minlength=len(unique))  # (m,)
        counts = np.bincount(unique // self.n, minlength=n_out) if len(unique) else None
        indptr = np.zeros(n_out + 1, dtype=np.int64)
        if counts is not None:
            indptr[1:] = np.cumsum(counts)
        return indptr, (unique % self.n).astype(np.int64), data.astype(np.float64)

    def _gather(
        self, out_rows: np.ndarray, rows: np.ndarray, weights: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(output row, column, value) of every stored entry of ``rows``, weighted, in order."""
        out_rows = np.asarray(out_rows, dtype=np.int64)  # (m,)
        rows = np.asarray(rows, dtype=np.int64)  # (m,)
        starts = self.indptr[rows]  # (m,)
        lengths = self.indptr[rows + 1] - starts  # (m,)
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        first = np.cumsum(lengths) - lengths  # (m,) where each row's entries start in the output
        offsets = np.arange(total) - np.repeat(first, lengths)  # (k,)
        entries = np.repeat(starts, lengths) + offsets  # (k,) positions in indices/data
        values = self.data[entries]  # (k,)
        if weights is not None:
            values = values * np.repeat(np.asarray(weights, dtype=np.float64), lengths)
        return np.repeat(out_rows, lengths), self.indices[entries], values

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"indptr": self.indptr, "indices": self.indices, "data": self.data}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray] | np.lib.npyio.NpzFile) -> ItemMatrix:
        return cls(arrays["indptr"], arrays["indices"], arrays["data"])
