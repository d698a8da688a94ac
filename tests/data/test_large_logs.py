"""Large logs: the synthetic log generator, and Parquet's columnar path giving what the per-cell
path gives (the same sequences, catalogue, errors)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from llmrec.cli.main import main
from llmrec.data import ColumnMapping, DataError, LoadOptions, RecDataset, load_files
from llmrec.data.readers import (
    RawTable,
    _as_strings,
    _strings_column,
    _text_column,
    read_table,
)
from llmrec.data.schema import build_dataset, normalize_interactions, normalize_items
from llmrec.data.sequences import SequenceOptions, apply_options

ROOT = Path(__file__).resolve().parents[2]
TINY = {"interactions": 2000, "users": 200, "items": 50}


@pytest.fixture(scope="module")
def synthetic() -> ModuleType:
    """bench/synthetic_log.py, imported from its file (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "synthetic_log", ROOT / "bench" / "synthetic_log.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["synthetic_log"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _tables(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (
        pq.read_table(folder / "interactions.parquet").to_pandas(),
        pq.read_table(folder / "items.parquet").to_pandas(),
    )


# --------------------------------------------------------------------------- the generator
def test_generator_is_deterministic_for_a_seed(synthetic: ModuleType, tmp_path: Path) -> None:
    spec = synthetic.LogSpec(**TINY, rating=True, chunk_users=64)
    synthetic.write_log(spec, tmp_path / "a")
    synthetic.write_log(spec, tmp_path / "b")
    synthetic.write_log(
        synthetic.LogSpec(**TINY, rating=True, chunk_users=64, seed=1), tmp_path / "c"
    )
    (inter_a, items_a), (inter_b, items_b) = _tables(tmp_path / "a"), _tables(tmp_path / "b")
    pdt.assert_frame_equal(inter_a, inter_b)
    pdt.assert_frame_equal(items_a, items_b)
    inter_c, _ = _tables(tmp_path / "c")
    assert not inter_a.equals(inter_c)


def test_generator_shape(synthetic: ModuleType, tmp_path: Path) -> None:
    synthetic.write_log(synthetic.LogSpec(**TINY, chunk_users=64), tmp_path)
    inter, items = _tables(tmp_path)
    assert list(inter.columns) == ["user_id", "item_id", "timestamp", "behavior"]
    assert len(inter) == 2000 and inter["user_id"].nunique() == 200  # every user has a row
    assert set(inter["item_id"]) <= set(items["item_id"]) and len(items) == 50
    assert set(inter["behavior"]) <= {"view", "cart", "buy"}
    assert inter["timestamp"].between(synthetic.T_START, synthetic.T_END).all()
    assert list(items.columns) == ["item_id", "title", "category"]
    # Zipf-like popularity: the most popular tenth of the items has far more than a tenth.
    counts = inter["item_id"].value_counts().to_numpy()
    assert counts[:5].sum() > 0.3 * len(inter)
    # Shuffled within chunks: the file is not in (user, time) order.
    assert not inter.sort_values(["user_id", "timestamp"]).index.equals(inter.index)
    assert pq.ParquetFile(tmp_path / "interactions.parquet").num_row_groups == 4


def test_generator_refuses_fewer_interactions_than_users(synthetic: ModuleType) -> None:
    with pytest.raises(ValueError, match="every user has at least one interaction"):
        synthetic.LogSpec(interactions=10, users=20, items=5)


# --------------------------------------------------------------------------- columnar = per cell
def _per_cell_dataset(inter_path: Path, items_path: Path) -> RecDataset:
    """What `llmrec data prepare` built before tables stayed columnar: every cell a string."""

    def table(path: Path) -> RawTable:
        typed = read_table(path)
        return dataclasses.replace(typed, frame=typed.strings(), typed=False)

    options, mapping = LoadOptions(), ColumnMapping()
    inter_table = table(inter_path)
    items = normalize_items(table(items_path), mapping, options.report)
    inter = normalize_interactions(inter_table, mapping)
    dataset = build_dataset(
        "interactions", inter, items, None, options, interactions_source=inter_table
    )
    return apply_options(dataset, SequenceOptions())


def test_prepared_synthetic_log_matches_the_per_cell_path(
    synthetic: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inter, items = synthetic.write_log(
        synthetic.LogSpec(**TINY, rating=True, chunk_users=64), tmp_path / "log"
    )
    out = tmp_path / "prepared"
    assert (
        main(["data", "prepare", "--inter", str(inter), "--items", str(items), "--out", str(out)])
        == 0
    )
    assert "interactions  2,000" in capsys.readouterr().out
    prepared, reference = RecDataset.load(out), _per_cell_dataset(inter, items)
    assert prepared.sequences() == reference.sequences()
    assert prepared.catalog.ids == reference.catalog.ids
    assert list(prepared.catalog) == list(reference.catalog)
    pdt.assert_frame_equal(prepared.interactions, reference.interactions)
    assert prepared.fingerprint() == reference.fingerprint()
    assert prepared.report == reference.report
    first = prepared.sequences()[0]
    assert list(first.timestamps) == sorted(first.timestamps)
    assert set(first.behaviors or ()) <= {"view", "cart", "buy"}


def test_synthetic_log_as_csv_matches_the_per_cell_path_and_parquet(
    synthetic: ModuleType, tmp_path: Path
) -> None:
    paths = synthetic.write_log(synthetic.LogSpec(**TINY, rating=True), tmp_path)
    for path in paths:
        pacsv.write_csv(pq.read_table(path), path.with_suffix(".csv"))
    inter, items = (p.with_suffix(".csv") for p in paths)
    from_csv = load_files(inter, items)
    reference = _per_cell_dataset(inter, items)
    pdt.assert_frame_equal(from_csv.interactions, reference.interactions)
    pdt.assert_frame_equal(from_csv.catalog.table, reference.catalog.table)
    from_parquet = load_files(*paths)
    pdt.assert_frame_equal(from_csv.interactions, from_parquet.interactions)
    assert from_csv.sequences() == from_parquet.sequences()


def test_typed_parquet_columns_give_the_per_cell_values(tmp_path: Path) -> None:
    # Integer ids, a nullable integer context column, float ratings with a gap, date-times.
    path = tmp_path / "log.parquet"
    pd.DataFrame(
        {
            "user_id": np.array([7, 7, 3, 3], dtype=np.int64),
            "item_id": [10.0, 11.0, 10.0, 12.0],
            "timestamp": pd.to_datetime(
                ["2024-05-02 00:00", "2024-05-01 00:00", "2024-05-01 12:00", "2024-05-03 00:00"]
            ),
            "rating": [4.5, None, 3.0, 1.0],
            "session": pd.array([1, None, 2, 2], dtype="Int64"),
            "device": ["tv", None, "phone", "tv"],
        }
    ).to_parquet(path)
    columnar = load_files(path)
    table = RawTable(_as_strings(pd.read_parquet(path)), str(path), first_line=None)
    reference = build_dataset("log", normalize_interactions(table, ColumnMapping()), None, None)
    pdt.assert_frame_equal(columnar.interactions, reference.interactions)
    inter = columnar.interactions
    assert inter["user_id"].tolist() == ["7", "7", "3", "3"]
    assert inter["item_id"].tolist() == ["11", "10", "10", "12"]
    assert inter["timestamp"].tolist() == [1714521600.0, 1714608000.0, 1714564800.0, 1714694400.0]
    assert [None if pd.isna(v) else v for v in inter["session"]] == [None, "1", "2", "2"]


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(["a", None, "c"], dtype="str"),
        pd.Series([1, -2, 30], dtype=np.int64),
        pd.Series([1.0, np.nan, -3.0]),
        pd.Series([1.5, 2.0, np.nan]),
        pd.Series([1e20, 2.0, 3.0]),
        pd.Series([np.inf, 1.0, 2.0]),
        pd.Series([True, False, True]),
        pd.Series(pd.to_datetime(["2024-05-01 00:00", None, "2024-05-02 10:00"])),
    ],
    ids=["str", "int", "int-with-gaps", "fractional", "huge", "inf", "bool", "datetime"],
)
def test_text_column_equals_the_cell_by_cell_strings(values: pd.Series) -> None:
    vectorised = [None if pd.isna(v) else v for v in _text_column(values)]
    assert vectorised == _strings_column(values).tolist()


def test_errors_in_typed_parquet_show_the_cell_as_text(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pd.DataFrame(
        {"user_id": ["a", "b", "c"], "item_id": ["x", "y", "x"], "timestamp": [1.0, 5e12, 7e12]}
    ).to_parquet(path)
    with pytest.raises(DataError) as info:
        load_files(path)
    err = info.value
    assert (err.row, err.column, err.got) == (1, "timestamp", "5000000000000")
    assert str(err).startswith(f"{path}, record 1, column 'timestamp': 2 rows have a timestamp")
