"""Every reader turns the same logical dataset into the same normalized tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pandas.testing as pdt
import pytest

from llmrec.data import ColumnMapping, Item, RecDataset, load_files
from llmrec.data.readers import read_table

from .fakes import EXPECTED_INTERACTIONS, FORMATS, columns, write_format

EXPECTED_ITEMS = {
    "i1": Item("i1", "Toy Story", 1995, ("Animation", "Comedy"), "Toys come alive"),
    "i2": Item("i2", "Heat", 1995, ("Action", "Crime", "Thriller"), None),
    "i3": Item("i3", "Sabrina", 1954, ("Comedy", "Romance"), None),
    "i4": Item("i4", "Untitled Project", None, (), None),
}
EXPECTED_PROFILES = {
    "u1": {"age": "24", "gender": "M"},
    "u2": {"age": "53", "gender": "F"},
    "u3": {"age": "23", "gender": "M"},
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RecDataset]:
    root = tmp_path_factory.mktemp("formats")
    return {fmt: load_files(*write_format(root / fmt, fmt)) for fmt in FORMATS}


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_gives_the_expected_tables(loaded: dict[str, RecDataset], fmt: str) -> None:
    ds = loaded[fmt]
    assert columns(ds.interactions) == EXPECTED_INTERACTIONS
    assert ds.catalog.ids == ["i1", "i2", "i3", "i4"]
    assert {item.item_id: item for item in ds.catalog} == EXPECTED_ITEMS
    assert ds.users["user_id"].tolist() == ["u1", "u2", "u3"]
    assert {u: dict(ds.user(u).profile) for u in ("u1", "u2", "u3")} == EXPECTED_PROFILES
    assert ds.context_columns == ["device"]
    assert ds.report == []


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "csv"])
def test_each_format_is_identical_to_csv(loaded: dict[str, RecDataset], fmt: str) -> None:
    reference, ds = loaded["csv"], loaded[fmt]
    pdt.assert_frame_equal(ds.interactions, reference.interactions)
    pdt.assert_frame_equal(ds.catalog.table, reference.catalog.table)
    pdt.assert_frame_equal(ds.users, reference.users)
    assert ds.fingerprint() == reference.fingerprint()


def test_dataset_name_defaults_to_the_interactions_file_stem(loaded: dict[str, RecDataset]) -> None:
    assert loaded["csv"].name == "inter"
    assert loaded["atomic"].name == "data"
    assert loaded["hf_object"].name == "dataset"


def test_atomic_token_seq_columns_are_recorded(tmp_path: Path) -> None:
    _, items, _ = write_format(tmp_path, "atomic")
    table = read_table(items)
    assert table.seq_columns == ("categories",)
    assert table.frame.loc[0, "categories"] == "Animation Comedy"
    assert table.frame.loc[3, "year"] is None


def test_custom_column_mapping_keeps_context_columns(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "uid,movie,ts,stars,event,device,session\n"
        "a,m1,10,4.5,view,tv,s1\n"
        "a,m2,5,3,like,phone,s1\n"
        "b,m1,7,,view,tv,s2\n"
    )
    mapping = ColumnMapping(
        user_id="uid", item_id="movie", timestamp="ts", rating="stars", behavior="event"
    )
    ds = load_files(path, mapping=mapping)
    cols = ds.interactions.to_dict("list")
    assert cols.pop("rating") == pytest.approx([3.0, 4.5, float("nan")], nan_ok=True)
    assert cols == {
        "user_id": ["a", "a", "b"],
        "item_id": ["m2", "m1", "m1"],
        "timestamp": [5.0, 10.0, 7.0],
        "behavior": ["like", "view", "view"],
        "device": ["phone", "tv", "tv"],
        "session": ["s1", "s1", "s2"],
    }
    assert ds.context_columns == ["device", "session"]
    # Without an items table, items are titled by their ids (and the report says so).
    assert ds.catalog.ids == ["m1", "m2"]
    assert ds.catalog.item("m2").title == "m2"
    assert ds.report == ["items: no items table given; 2 items titled by their ids"]


def test_explicit_context_list_keeps_only_those_columns(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp,device,session\na,m1,1,tv,s1\n")
    ds = load_files(path, mapping=ColumnMapping(context=["session"]))
    assert list(ds.interactions.columns) == ["user_id", "item_id", "timestamp", "session"]


def test_behavior_found_under_a_default_name(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp,action\na,m1,1,buy\na,m2,2,\n")
    ds = load_files(path)
    assert ds.interactions["behavior"].tolist() == ["buy", "interaction"]
    assert "rating" not in ds.interactions.columns


def test_iso_timestamps_become_epoch_seconds(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "user_id,item_id,timestamp\n"
        "a,m1,1970-01-02T00:00:00\n"
        "a,m2,2024-05-01\n"
        "a,m3,2024-05-01T12:00:00+02:00\n"
        "a,m4,2024-05-01T12:00:00Z\n"
    )
    ds = load_files(path)
    assert ds.interactions["timestamp"].tolist() == [
        86400.0,
        1714521600.0,
        1714557600.0,
        1714564800.0,
    ]
    assert ds.interactions["item_id"].tolist() == ["m1", "m2", "m3", "m4"]


def test_fractional_and_float_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\na,m1,1.5\na,m2,1e3\n")
    assert load_files(path).interactions["timestamp"].tolist() == [1.5, 1000.0]


def test_utf8_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes("\ufeffuser_id,item_id,timestamp\r\nä,m1,1\r\nb,m2,2\r\n".encode())
    ds = load_files(path)
    assert ds.interactions["user_id"].tolist() == ["ä", "b"]
    assert ds.interactions["timestamp"].tolist() == [1.0, 2.0]


def test_jsonl_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(
        '{"user_id": "a", "item_id": 1, "timestamp": 1}\n'
        "\n"
        '{"user_id": "a", "item_id": 2, "timestamp": 2}\n'
    )
    assert load_files(path).interactions["item_id"].tolist() == ["1", "2"]


def test_hf_dataset_dict_split(tmp_path: Path) -> None:
    import datasets

    inter = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["x", "y"], "timestamp": [1, 2]})
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_pandas(inter)})
    dd.save_to_disk(str(tmp_path / "dd"))
    ds = load_files(tmp_path / "dd")
    assert ds.interactions["item_id"].tolist() == ["x", "y"]
    table = read_table(dd)
    assert table.first_line is None
    assert table.frame["timestamp"].tolist() == ["1", "2"]


def test_to_hf_tables(loaded: dict[str, RecDataset]) -> None:
    dd = loaded["csv"].to_hf()
    assert sorted(dd) == ["interactions", "items", "users"]
    assert dd["interactions"].num_rows == 6
    assert dd["interactions"][0] == {
        "user_id": "u1",
        "item_id": "i3",
        "timestamp": 50.0,
        "rating": 4.0,
        "behavior": "click",
        "device": "web",
    }
    assert dd["interactions"]["device"] == ["web", "web", "mobile", "web", "mobile", None]
    assert dd["items"][0] == {
        "item_id": "i1",
        "title": "Toy Story",
        "year": 1995,
        "categories": ["Animation", "Comedy"],
        "description": "Toys come alive",
    }
    assert dd["items"][3] == {
        "item_id": "i4",
        "title": "Untitled Project",
        "year": None,
        "categories": [],
        "description": None,
    }
    assert dd["users"].to_list() == [
        {"user_id": "u1", "age": "24", "gender": "M"},
        {"user_id": "u2", "age": "53", "gender": "F"},
        {"user_id": "u3", "age": "23", "gender": "M"},
    ]


def test_sequences_to_hf_rows(loaded: dict[str, RecDataset]) -> None:
    rows = loaded["parquet"].sequences_to_hf().to_list()
    assert rows == [
        {
            "user_id": "u1",
            "item_ids": ["i3", "i1", "i2"],
            "timestamps": [50.0, 100.0, 200.0],
            "ratings": [4.0, 5.0, 3.0],
            "behaviors": ["click", "click", "buy"],
            "device": ["web", "web", "mobile"],
        },
        {
            "user_id": "u2",
            "item_ids": ["i2", "i3"],
            "timestamps": [150.0, 150.0],
            "ratings": [4.0, 2.0],
            "behaviors": ["click", "click"],
            "device": ["web", "mobile"],
        },
        {
            "user_id": "u3",
            "item_ids": ["i1"],
            "timestamps": [300.0],
            "ratings": [1.0],
            "behaviors": ["buy"],
            "device": [None],
        },
    ]


def test_sequences_to_hf_without_rating_or_behavior(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\na,x,2\nb,y,1\na,z,1\n")
    rows = load_files(path).sequences_to_hf().to_list()
    assert rows == [
        {"user_id": "a", "item_ids": ["z", "x"], "timestamps": [1.0, 2.0]},
        {"user_id": "b", "item_ids": ["y"], "timestamps": [1.0]},
    ]


def test_item_text_views(tmp_path: Path) -> None:
    inter = tmp_path / "log.csv"
    inter.write_text("user_id,item_id,timestamp\na,1,1\n")
    items = tmp_path / "items.csv"
    items.write_text(
        "item_id,name,release_year,genres,overview,director\n"
        "1,Alpha,1999,A|B,About alpha,Ann\n"
        '2,Beta,released 2001-05-02,"C, D",,\n'
        "3,,n/a,,,Bob\n"
        "4,Delta,,E,,\n"
    )
    ds = load_files(inter, items)
    assert list(ds.catalog) == [
        Item("1", "Alpha", 1999, ("A", "B"), "About alpha", {"director": "Ann"}),
        Item("2", "Beta", 2001, ("C", "D"), None, {}),
        Item("3", "", None, (), None, {"director": "Bob"}),
        Item("4", "Delta", None, ("E",), None, {}),
    ]
    assert ds.catalog.attribute_columns == ["director"]
    assert ds.report == [
        "items: 1 items have no title (kept; text views see an empty title)",
        "items: 1 year values are not a year (kept as missing)",
    ]


def test_categories_separator_from_the_mapping(tmp_path: Path) -> None:
    inter = tmp_path / "log.csv"
    inter.write_text("user_id,item_id,timestamp\na,1,1\n")
    items = tmp_path / "items.tsv"
    items.write_text("item_id\ttitle\ttags\n1\tAlpha\tsci-fi; space opera |x\n")
    mapping = ColumnMapping(categories="tags", categories_sep=";")
    ds = load_files(inter, items, mapping=mapping, fmt=None)
    assert ds.catalog.item("1").categories == ("sci-fi", "space opera |x")
