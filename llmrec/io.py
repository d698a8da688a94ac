"""Atomic writes: a file or folder appears whole at its final path, or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``.

    On an exception the temporary folder is removed and an existing ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on success it replaces ``path``.

    On an exception (an interrupt too) the temporary file is removed and an existing ``path`` is
    left untouched. For files written piece by piece; :func:`atomic_write_text` writes one text.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


#: Column types of :func:`write_rows` for Parquet, and their Arrow types ("json": any value,
#: stored as its JSON text).
COLUMN_TYPES = ("string", "int64", "float64", "json")

PARQUET_SUFFIXES = (".parquet", ".pq")


def write_rows(
    path: str | os.PathLike[str],
    rows: Iterable[Mapping[str, Any]],
    columns: Mapping[str, str],
    batch_rows: int = 10_000,
) -> int:
    """Write ``rows`` to ``path`` atomically as JSON lines, or as Parquet when the name ends
    ``.parquet`` (or ``.pq``); returns the number of rows.

    ``columns`` names each column and its type (one of :data:`COLUMN_TYPES`); every row has
    exactly these keys. JSON lines keep values as they are (``json`` columns as nested JSON);
    Parquet stores ``json`` columns as their JSON text and writes ``batch_rows`` rows at a time,
    so memory stays bounded however many rows come.
    """
    unknown = sorted({t for t in columns.values()} - set(COLUMN_TYPES))
    if unknown:
        raise ValueError(f"column types {unknown} are not among {COLUMN_TYPES}")
    target = Path(path)
    parquet = target.suffix.lower() in PARQUET_SUFFIXES
    with atomic_file(target) as tmp:
        if parquet:
            return _write_parquet(tmp, rows, columns, batch_rows)
        count = 0
        with open(tmp, "w", encoding="utf-8") as out:
            for row in rows:
                _check_keys(row, columns, count)
                out.write(json.dumps(dict(row), ensure_ascii=False) + "\n")
                count += 1
        return count


def _check_keys(row: Mapping[str, Any], columns: Mapping[str, str], index: int) -> None:
    if set(row) != set(columns):
        raise ValueError(
            f"row {index} has keys {sorted(row)}, expected the columns {sorted(columns)}"
        )


def _write_parquet(
    tmp: Path, rows: Iterable[Mapping[str, Any]], columns: Mapping[str, str], batch_rows: int
) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
    schema = pa.schema([(name, arrow.get(kind, pa.string())) for name, kind in columns.items()])
    json_columns = [name for name, kind in columns.items() if kind == "json"]
    count = 0
    batch: list[dict[str, Any]] = []
    with pq.ParquetWriter(str(tmp), schema) as writer:

        def flush() -> None:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            batch.clear()

        for row in rows:
            _check_keys(row, columns, count)
            values = dict(row)
            for name in json_columns:
                values[name] = json.dumps(values[name], ensure_ascii=False)
            batch.append(values)
            count += 1
            if len(batch) >= batch_rows:
                flush()
        if batch or count == 0:
            flush()
    return count
