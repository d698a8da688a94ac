"""RecDataset on disk: round trip, atomic save, and a clear error for a folder that is not one."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pandas.testing as pdt
import pytest

from llmrec.data import LoadOptions, RecDataset, load_files

from .fakes import write_format


@pytest.fixture
def dataset(tmp_path: Path) -> RecDataset:
    inter, items, users = write_format(tmp_path / "src", "csv")
    # One exact duplicate user row, so the report is not empty.
    users.write_text(users.read_text() + "u3,23,M\n")
    return load_files(inter, items, users, name="tiny", options=LoadOptions())


def test_round_trip(tmp_path: Path, dataset: RecDataset) -> None:
    out = dataset.save(tmp_path / "prepared")
    assert out == tmp_path / "prepared"
    assert sorted(p.name for p in out.iterdir()) == [
        "interactions.parquet",
        "items.parquet",
        "manifest.json",
        "users.parquet",
    ]
    loaded = RecDataset.load(out)
    assert loaded.name == "tiny"
    assert loaded.report == ["users: removed 1 exact duplicate rows"]
    pdt.assert_frame_equal(loaded.interactions, dataset.interactions)
    pdt.assert_frame_equal(loaded.users, dataset.users)
    pdt.assert_frame_equal(loaded.catalog.table, dataset.catalog.table)
    assert loaded.catalog.table["categories"].tolist() == [
        ["Animation", "Comedy"],
        ["Action", "Crime", "Thriller"],
        ["Comedy", "Romance"],
        [],
    ]
    assert all(type(c) is list for c in loaded.catalog.table["categories"])
    assert list(loaded.catalog) == list(dataset.catalog)
    assert loaded.sequences() == dataset.sequences()
    assert loaded.user("u3").profile == {"age": "23", "gender": "M"}
    assert loaded.fingerprint() == dataset.fingerprint()


def test_manifest(tmp_path: Path, dataset: RecDataset) -> None:
    dataset.save(tmp_path / "prepared")
    manifest = json.loads((tmp_path / "prepared" / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["name"] == "tiny"
    assert manifest["fingerprint"] == dataset.fingerprint()
    assert manifest["report"] == ["users: removed 1 exact duplicate rows"]
    stats = manifest["stats"]
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 4, 6)
    assert stats["items_with_interactions"] == 3
    assert stats["sequence_length"] == {"min": 1, "median": 2.0, "mean": 2.0, "max": 3}
    assert stats["time_range"] == [50.0, 300.0]
    assert stats["behaviors"] == {"click": 4, "buy": 2}
    assert stats["interaction_columns"] == [
        "user_id",
        "item_id",
        "timestamp",
        "rating",
        "behavior",
        "device",
    ]
    assert stats["user_profile_columns"] == ["age", "gender"]


def test_save_replaces_an_existing_dataset(tmp_path: Path, dataset: RecDataset) -> None:
    target = tmp_path / "prepared"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    dataset.save(target)
    assert not (target / "stale.txt").exists()
    assert RecDataset.load(target).name == "tiny"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared", "src"]


@pytest.mark.parametrize("existing", [True, False])
def test_failed_save_leaves_the_old_folder_and_no_temp_folders(
    tmp_path: Path, dataset: RecDataset, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    target = tmp_path / "prepared"
    if existing:
        dataset.save(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()} if existing else None

    real = pd.DataFrame.to_parquet
    calls = []

    def flaky(self: pd.DataFrame, *args: object, **kwargs: object) -> object:
        calls.append(args[0])
        if len(calls) == 2:
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", flaky)
    changed = RecDataset(
        "changed", dataset.catalog, dataset.users, dataset.interactions.iloc[:2], report=[]
    )
    with pytest.raises(OSError, match="disk full"):
        changed.save(target)
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        ["prepared", "src"] if existing else ["src"]
    )
    if existing:
        assert {p.name: p.read_bytes() for p in target.iterdir()} == before
        monkeypatch.undo()
        assert RecDataset.load(target).name == "tiny"


def test_load_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "somewhere").mkdir()
    with pytest.raises(FileNotFoundError) as info:
        RecDataset.load(tmp_path / "somewhere")
    assert str(info.value) == (
        f"{tmp_path / 'somewhere'} is not a prepared llmrec dataset (no manifest.json); create one "
        f"with `llmrec data prepare --dataset ml-100k --out {tmp_path / 'somewhere'}` or "
        "`--inter FILE ...`"
    )
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        RecDataset.load(tmp_path / "missing")


def test_load_refuses_another_format_version(tmp_path: Path, dataset: RecDataset) -> None:
    target = dataset.save(tmp_path / "prepared")
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["format_version"] = 99
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="has dataset format 99, this llmrec reads 1"):
        RecDataset.load(target)
