"""Atomic files and the row writer behind ``llmrec recommend --all-users --out``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrec.io import atomic_file, write_rows

COLUMNS = {"user": "string", "n": "int64", "x": "float64", "extra": "json"}


def _rows(n: int) -> list[dict]:
    return [
        {"user": f"u{i}", "n": i, "x": None if i == 0 else i / 2, "extra": {"k": [i]}}
        for i in range(n)
    ]


def test_jsonl_and_parquet(tmp_path: Path) -> None:
    import pandas as pd

    assert write_rows(tmp_path / "a.jsonl", iter(_rows(5)), COLUMNS) == 5
    lines = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert lines == _rows(5)
    # batches: the schema is fixed up front, so a column that is null in the first batch is fine
    assert write_rows(tmp_path / "a.parquet", iter(_rows(5)), COLUMNS, batch_rows=1) == 5
    frame = pd.read_parquet(tmp_path / "a.parquet")
    assert frame["user"].tolist() == [f"u{i}" for i in range(5)]
    assert pd.isna(frame["x"].iloc[0]) and frame["x"].iloc[4] == 2.0
    assert [json.loads(v) for v in frame["extra"]] == [r["extra"] for r in _rows(5)]
    assert write_rows(tmp_path / "empty.parquet", iter([]), COLUMNS) == 0
    assert list(pd.read_parquet(tmp_path / "empty.parquet").columns) == list(COLUMNS)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")

    def broken():  # noqa: ANN202
        yield from _rows(2)
        raise KeyboardInterrupt

    for name in ("out.jsonl", "out.parquet"):
        with pytest.raises(KeyboardInterrupt):
            write_rows(tmp_path / name, broken(), COLUMNS, batch_rows=1)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    with pytest.raises(ValueError, match=r"row 1 has keys \['user'\]"):
        write_rows(tmp_path / "bad.jsonl", [_rows(1)[0], {"user": "x"}], COLUMNS)
    with pytest.raises(ValueError, match="column types"):
        write_rows(tmp_path / "bad.jsonl", [], {"a": "decimal"})
    assert not (tmp_path / "bad.jsonl").exists()


def test_atomic_file_replaces_on_success(tmp_path: Path) -> None:
    with atomic_file(tmp_path / "sub" / "f.txt") as tmp:
        assert tmp.parent == tmp_path / "sub" and tmp.name.startswith(".f.txt.tmp-")
        tmp.write_text("new")
        assert not (tmp_path / "sub" / "f.txt").exists()
    assert (tmp_path / "sub" / "f.txt").read_text() == "new"
