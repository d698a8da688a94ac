"""Readers: files in several formats -> raw tables; errors name file, line and column.

Formats: RecBole atomic files (``.inter`` / ``.item`` / ``.user``, tab-separated with typed
``name:type`` headers), CSV, TSV, Parquet, JSON lines, and Hugging Face ``datasets`` (a
``Dataset`` object or a folder written by ``save_to_disk``).

Every reader returns a :class:`RawTable`: a DataFrame plus where it came from, so that later
validation can point at the exact line. Logs may be large (docs/scale.md), so the tables of
Parquet, CSV and TSV files are ``typed``: Parquet keeps the file's column types (numbers,
date-times, Arrow-backed strings), CSV and TSV give Arrow-backed string columns, and
:meth:`RawTable.text` gives any column as strings, vectorised, with the values the per-cell
conversion gives. RecBole atomic files, JSON lines and ``datasets`` give object columns whose
cells are strings (or ``None`` for a missing value).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from llmrec.data.errors import DataError

if TYPE_CHECKING:
    import datasets

#: File suffixes and the format each one means.
SUFFIX_FORMATS = {
    ".inter": "atomic",
    ".item": "atomic",
    ".user": "atomic",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
FORMATS = ("atomic", "csv", "tsv", "parquet", "jsonl", "hf")


@dataclass
class RawTable:
    """A table read from ``source``: cells are strings unless ``typed``.

    ``first_line`` is the file line of the first data row (2 for files with a header line), or
    ``None`` when rows are records rather than lines (Parquet, datasets), in which case row numbers
    in errors are 0-based record indices.
    """

    frame: pd.DataFrame
    source: str
    first_line: int | None = 2
    #: RecBole atomic ``token_seq`` columns (space-separated lists).
    seq_columns: tuple[str, ...] = ()
    #: ``frame`` holds typed columns (Parquet's types, Arrow strings) rather than objects; read a
    #: column as strings with :meth:`text`, a cell with :meth:`cell`, all with :meth:`strings`.
    typed: bool = False

    def text(self, column: str) -> pd.Series:
        """Column ``column`` as strings, missing values missing (vectorised where it can be)."""
        values = self.frame[column]
        return _text_column(values) if self.typed else values

    def cell(self, column: str, position: int) -> Any:
        """The ``position``-th cell of ``column`` as a string (or ``None``), as errors show it."""
        value = self.frame[column].iloc[position]
        return _cell_text(value) if self.typed else value

    def strings(self) -> pd.DataFrame:
        """Every cell a ``str`` or ``None``: cell by cell, for small tables (items, users)."""
        return _as_strings(self.frame) if self.typed else self.frame

    @property
    def header_line(self) -> int | None:
        """The file line holding the column names (1), or ``None`` where there is none."""
        return 1 if self.first_line is not None and self.first_line > 1 else None

    def row_ref(self, position: int) -> tuple[int, str]:
        """The row number and its label ("line" or "record") for the ``position``-th row."""
        if self.first_line is None:
            return position, "record"
        return self.first_line + position, "line"

    def error(self, message: str, position: int | None = None, **kw: Any) -> DataError:
        if position is None:
            return DataError(message, source=self.source, **kw)
        row, label = self.row_ref(position)
        return DataError(message, source=self.source, row=row, row_label=label, **kw)


def detect_format(path: str | os.PathLike[str]) -> str:
    p = Path(path)
    if p.is_dir():
        return "hf"
    fmt = SUFFIX_FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise DataError(
            f"cannot tell the format from the file name suffix {p.suffix!r}",
            source=str(p),
            hint=f"use one of {sorted(SUFFIX_FORMATS)} or pass the format explicitly "
            f"(one of {', '.join(FORMATS)})",
        )
    return fmt


def read_table(
    path: str | os.PathLike[str] | datasets.Dataset | datasets.DatasetDict,
    fmt: str | None = None,
    *,
    encoding: str = "utf-8",
    split: str = "train",
) -> RawTable:
    """Read one table file in any supported format (or a ``datasets.Dataset`` / ``DatasetDict``)."""
    if not isinstance(path, (str, os.PathLike)):
        return read_hf(path, split=split)
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", source=str(p), hint="check the path")
    fmt = fmt or detect_format(p)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}", source=str(p), hint=f"use one of {FORMATS}")
    if fmt == "hf":
        return read_hf(str(p), split=split)
    if fmt == "parquet":
        return _read_parquet(p)
    text = _decode(p, encoding)
    if not text.strip():
        raise DataError("file is empty", source=str(p), hint="expected a header line and rows")
    if fmt == "jsonl":
        return _read_jsonl(text, str(p))
    if fmt == "atomic":
        return _read_atomic(text, str(p))
    return _read_delimited(text, str(p), sep="," if fmt == "csv" else "\t")


def read_hf(dataset: Any, split: str = "train") -> RawTable:
    """Read a ``datasets.Dataset``, ``DatasetDict`` (one ``split``) or ``save_to_disk`` folder."""
    import datasets

    source = "<datasets.Dataset>"
    if isinstance(dataset, (str, os.PathLike)):
        source = str(dataset)
        try:
            dataset = datasets.load_from_disk(str(dataset))
        except FileNotFoundError as exc:
            raise DataError(
                "not a folder written by datasets' save_to_disk", source=source, hint=str(exc)
            ) from exc
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise DataError(
                f"split {split!r} not found",
                source=source,
                hint=f"available splits: {sorted(dataset)}",
            )
        dataset = dataset[split]
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"expected a datasets.Dataset or DatasetDict, got {type(dataset).__name__}")
    frame = dataset.to_pandas()
    if frame.empty:
        raise DataError("dataset has no rows", source=source)
    return RawTable(_as_strings(frame), source, first_line=None)


# --------------------------------------------------------------------------- formats
def _decode(path: Path, encoding: str) -> str:
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"cannot decode byte {data[exc.start : exc.start + 1]!r} at byte offset {exc.start} "
            f"as {encoding}",
            source=str(path),
            row=line,
            hint="the file is in another encoding: pass it (e.g. --encoding latin-1)",
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def _read_delimited(text: str, source: str, sep: str) -> RawTable:
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=True,
        )
    except pd.errors.ParserError as exc:
        raise DataError(f"malformed delimited file: {exc}", source=source) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.where(frame != "")  # an empty cell is a missing value
    if frame.empty:
        raise DataError("file has a header but no rows", source=source)
    table = RawTable(frame, source, first_line=2, typed=True)  # Arrow string columns
    return _with_line_map(table, text, sep, csv.QUOTE_MINIMAL)


def _read_atomic(text: str, source: str) -> RawTable:
    """RecBole atomic file: tab-separated, header ``name:type`` (token, token_seq, float, ...)."""
    header = text.split("\n", 1)[0].rstrip("\r").split("\t")
    names: list[str] = []
    seq_cols: list[str] = []
    for i, field in enumerate(header):
        name, sep, ftype = field.partition(":")
        if not sep or not name:
            raise DataError(
                "bad RecBole atomic header field",
                source=source,
                row=1,
                column=f"#{i + 1}",
                expected="name:type such as user_id:token",
                got=field,
            )
        if ftype not in ("token", "token_seq", "float", "float_seq"):
            raise DataError(
                f"unknown RecBole field type {ftype!r}",
                source=source,
                row=1,
                column=name,
                expected="token, token_seq, float or float_seq",
                got=ftype,
            )
        names.append(name)
        if ftype.endswith("_seq"):
            seq_cols.append(name)
    body = text.split("\n", 1)[1] if "\n" in text else ""
    if not body.strip():
        raise DataError("file has a header but no rows", source=source)
    try:
        frame = pd.read_csv(
            io.StringIO(body),
            sep="\t",
            header=None,
            names=names,
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,  # titles may contain quotes
        )
    except pd.errors.ParserError as exc:
        raise DataError(f"malformed atomic file: {exc}", source=source) from None
    frame = _as_strings(frame.replace({"": None}))
    table = RawTable(frame, source, first_line=2, seq_columns=tuple(seq_cols))
    return _with_line_map(table, text, "\t", csv.QUOTE_NONE)


def _read_jsonl(text: str, source: str) -> RawTable:
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"invalid JSON: {exc.msg}", source=source, row=n, hint="one JSON object per line"
            ) from None
        if not isinstance(obj, dict):
            raise DataError(
                "each line must be a JSON object",
                source=source,
                row=n,
                expected="an object",
                got=type(obj).__name__,
            )
        records.append(obj)
        lines.append(n)
    frame = _as_strings(pd.DataFrame.from_records(records))
    table = RawTable(frame, source, first_line=1)
    # JSON lines may have blank lines: keep a map to true line numbers when they do.
    if lines != list(range(1, len(lines) + 1)):
        table = _LineMappedTable(frame, source, first_line=1, lines=lines)
    return table


@dataclass
class _LineMappedTable(RawTable):
    """A table whose rows are not one per line: ``lines[i]`` is the file line of row ``i``."""

    lines: list[int] | None = None

    def row_ref(self, position: int) -> tuple[int, str]:
        assert self.lines is not None
        return self.lines[position], "line"


def _with_line_map(table: RawTable, text: str, sep: str, quoting: int) -> RawTable:
    """``table`` (read from ``text``, one header line) with the true line of each row.

    The parser skips blank lines and a quoted cell may span lines, so when the file has more lines
    than header + rows, each row's first line is found again with the ``csv`` module.
    """
    n_lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    if n_lines == len(table.frame) + 1:
        return table
    starts: list[int] = []
    end = 0
    try:
        reader = csv.reader(io.StringIO(text), delimiter=sep, quoting=quoting)
        for row in reader:
            start, end = end + 1, reader.line_num
            if row and not (len(row) == 1 and not row[0].strip()):  # pandas skips blank lines
                starts.append(start)
    except csv.Error:
        return table
    starts = starts[1:]  # the header
    if len(starts) != len(table.frame):
        return table
    return _LineMappedTable(
        table.frame, table.source, table.first_line, table.seq_columns, table.typed, lines=starts
    )


def _read_parquet(path: Path) -> RawTable:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(f"cannot read Parquet file: {exc}", source=str(path)) from None
    if frame.empty:
        raise DataError("file has no rows", source=str(path))
    frame.columns = [str(c) for c in frame.columns]
    return RawTable(frame, str(path), first_line=None, typed=True)


def _cell_text(v: Any) -> Any:
    """One cell as a ``str`` (a list as a list of ``str``); a missing value as ``None``."""
    if hasattr(v, "tolist") and not isinstance(v, str):
        v = v.tolist()  # numpy scalars and arrays to Python objects
    if isinstance(v, (list, tuple)):
        return [str(x) for x in v]
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _as_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells to ``str`` (lists to lists of ``str``); missing values to ``None``."""
    # Built as object columns directly: ``Series.map`` would infer pandas' string dtype, which
    # turns ``None`` into NaN.
    return pd.DataFrame(
        {str(c): _strings_column(frame[c]) for c in frame.columns},
        index=frame.index,
    )


def _strings_column(values: pd.Series) -> pd.Series:
    """An object column of ``str`` / ``None``, cell by cell."""
    return pd.Series([_cell_text(v) for v in values], index=values.index, dtype=object)


#: Integers up to this size are exact in a float64, so an integral float prints as that integer.
_EXACT_FLOAT_INT = 2.0**53


def _text_column(values: pd.Series) -> pd.Series:
    """A typed column as strings with the values :func:`_cell_text` gives, vectorised.

    Strings stay as they are; integers, and floats that all hold whole numbers (an integer column
    with missing values), are formatted by Arrow; any other type (date-times, lists, non-integral
    floats, booleans) goes cell by cell.
    """
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype):
        return values
    if pd.api.types.is_bool_dtype(dtype) or not isinstance(dtype, np.dtype):
        return _strings_column(values)
    if dtype.kind in "iu":
        return _arrow_to_text(pa.array(values.to_numpy()), values)
    if dtype.kind == "f":
        numbers = values.to_numpy()
        missing = np.isnan(numbers)
        present = numbers[~missing]
        if np.all(np.abs(present) < _EXACT_FLOAT_INT) and np.all(present == np.floor(present)):
            integers = np.where(missing, 0, numbers).astype(np.int64)
            return _arrow_to_text(pa.array(integers, mask=missing), values)
    return _strings_column(values)


def _arrow_to_text(array: pa.Array, like: pd.Series) -> pd.Series:
    strings = array.cast(pa.string()).to_pandas()
    return pd.Series(strings.array, index=like.index, name=like.name)
