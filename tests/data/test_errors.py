"""Bad input raises DataError naming the file, the line (header = line 1) and the column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from llmrec.data import ColumnMapping, DataError, LoadOptions, load_files
from llmrec.data.readers import read_table
from llmrec.data.schema import build_dataset

ITEMS_CSV = "item_id,title\nx,Film X\ny,Film Y\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def load_error(*args: object, **kwargs: object) -> DataError:
    with pytest.raises(DataError) as info:
        load_files(*args, **kwargs)
    return info.value


def where(path: Path, line: int | None = None, column: str | None = None) -> str:
    """The prefix DataError puts before its message."""
    parts = [str(path)]
    if line is not None:
        parts.append(f"line {line}")
    if column is not None:
        parts.append(f"column {column!r}")
    return ", ".join(parts) + ": "


# --------------------------------------------------------------------------- columns
def test_missing_column_suggests_the_close_name(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "user_id,item_id,time\na,x,1\n")
    err = load_error(path)
    assert (err.source, err.row, err.column) == (str(path), 1, "timestamp")
    assert str(err) == (
        where(path, 1, "timestamp") + "missing timestamp column 'timestamp'. did you mean 'time'? "
        "the file has columns ['user_id', 'item_id', 'time']; map yours with the column mapping "
        "(e.g. --col timestamp=YOUR_COLUMN)"
    )


def test_missing_column_without_a_close_name(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "user,item_id,timestamp\na,x,1\n")
    err = load_error(path, mapping=ColumnMapping(user_id="account"))
    assert str(err).startswith(where(path, 1, "account") + "missing user_id column 'account'. ")
    assert "did you mean" not in str(err)


def test_explicitly_mapped_optional_column_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp,stars\na,x,1,5\n")
    err = load_error(path, mapping=ColumnMapping(rating="star"))
    assert str(err).startswith(where(path, 1, "star") + "missing rating column 'star'. ")
    assert "did you mean 'stars'?" in str(err)


def test_missing_column_in_jsonl_has_no_header_line(tmp_path: Path) -> None:
    path = write(tmp_path / "log.jsonl", '{"user_id": "a", "item_id": "x", "time": 1}\n')
    err = load_error(path)
    assert (err.row, err.column) == (None, "timestamp")
    assert str(err).startswith(where(path, None, "timestamp") + "missing timestamp column")


def test_items_without_a_title_column(tmp_path: Path) -> None:
    inter = write(tmp_path / "log.csv", "user_id,item_id,timestamp\na,x,1\n")
    items = write(tmp_path / "items.csv", "item_id,label\nx,Film X\n")
    err = load_error(inter, items)
    assert str(err).startswith(where(items, 1) + "no title column. the file has columns")


def test_unknown_mapping_key_suggests_the_right_one() -> None:
    with pytest.raises(ValueError) as info:
        ColumnMapping.from_dict({"user": "uid", "item_id": "movie"})
    assert "unknown column-mapping keys ['user']" in str(info.value)
    assert str(info.value).endswith("; did you mean 'user_id' for 'user'?")
    assert ColumnMapping.from_dict({"item_id": "movie"}).item_id == "movie"


# --------------------------------------------------------------------------- files
@pytest.mark.parametrize("name", ["log.csv", "log.tsv", "log.inter", "log.jsonl"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, "\n  \n")
    err = load_error(path)
    assert str(err) == where(path) + "file is empty. expected a header line and rows"


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("log.csv", "user_id,item_id,timestamp\n"),
        ("log.tsv", "user_id\titem_id\ttimestamp\n"),
        ("log.inter", "user_id:token\titem_id:token\ttimestamp:float\n"),
    ],
)
def test_header_only(tmp_path: Path, name: str, header: str) -> None:
    path = write(tmp_path / name, header)
    err = load_error(path)
    assert str(err) == where(path) + "file has a header but no rows"


def test_missing_file(tmp_path: Path) -> None:
    err = load_error(tmp_path / "nope.csv")
    assert str(err) == where(tmp_path / "nope.csv") + "file not found. check the path"


def test_unknown_suffix(tmp_path: Path) -> None:
    path = write(tmp_path / "log.txt", "user_id,item_id,timestamp\na,x,1\n")
    err = load_error(path)
    assert str(err).startswith(where(path) + "cannot tell the format from the file name suffix")
    assert load_files(path, fmt="csv").interactions["item_id"].tolist() == ["x"]


def test_latin1_file_read_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes("item_id,title\nx,Film X\ny,Amélie\n".encode("latin-1"))
    with pytest.raises(DataError) as info:
        read_table(path)
    err = info.value
    assert err.row == 3
    assert str(err) == (
        where(path, 3) + "cannot decode byte b'\\xe9' at byte offset 27 as utf-8. the file is in "
        "another encoding: pass it (e.g. --encoding latin-1)"
    )
    assert read_table(path, encoding="latin-1").frame["title"].tolist() == ["Film X", "Amélie"]


def test_latin1_items_load_with_the_encoding(tmp_path: Path) -> None:
    inter = write(tmp_path / "log.csv", "user_id,item_id,timestamp\na,y,1\n")
    items = tmp_path / "items.csv"
    items.write_bytes("item_id,title\ny,Amélie\n".encode("latin-1"))
    assert load_error(inter, items).row == 2
    ds = load_files(inter, items, encoding="latin-1")
    assert ds.catalog.item("y").title == "Amélie"


def test_bad_json_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "log.jsonl",
        '{"user_id": "a", "item_id": "x", "timestamp": 1}\n'
        "\n"
        '{"user_id": "a", "item_id": "y", "timestamp": 2,}\n',
    )
    err = load_error(path)
    assert err.row == 3
    assert str(err).startswith(where(path, 3) + "invalid JSON: ")
    assert str(err).endswith(". one JSON object per line")


def test_json_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = write(tmp_path / "log.jsonl", '{"user_id": "a", "item_id": "x", "timestamp": 1}\n[1]\n')
    err = load_error(path)
    assert str(err) == (
        where(path, 2) + "each line must be a JSON object (expected an object, got 'list')"
    )


def test_bad_atomic_header_type(tmp_path: Path) -> None:
    path = write(tmp_path / "log.inter", "user_id:token\titem_id:tokn\ttimestamp:float\na\tx\t1\n")
    err = load_error(path)
    assert str(err) == (
        where(path, 1, "item_id") + "unknown RecBole field type 'tokn' "
        "(expected token, token_seq, float or float_seq, got 'tokn')"
    )


def test_atomic_header_field_without_type(tmp_path: Path) -> None:
    path = write(tmp_path / "log.inter", "user_id:token\titem_id\ttimestamp:float\na\tx\t1\n")
    err = load_error(path)
    assert str(err) == (
        where(path, 1, "#2") + "bad RecBole atomic header field "
        "(expected name:type such as user_id:token, got 'item_id')"
    )


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = write(tmp_path / "log.parquet", "not parquet")
    err = load_error(path)
    assert str(err).startswith(where(path) + "cannot read Parquet file: ")


# --------------------------------------------------------------------------- values
def test_non_numeric_timestamp_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "log.csv", "user_id,item_id,timestamp\na,x,100\na,y,200\nb,x,yesterday\nb,y,5\n"
    )
    err = load_error(path)
    assert (err.row, err.column, err.got) == (4, "timestamp", "yesterday")
    assert str(err).startswith(where(path, 4, "timestamp") + "timestamp is not a number")


def test_non_numeric_timestamp_message(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\na,x,1\na,y,2\nb,x,2024-01-01\n")
    assert str(load_error(path)) == (
        where(path, 4, "timestamp") + "timestamp is not a number (most rows are) "
        "(expected seconds since the epoch, got '2024-01-01')"
    )


def test_number_among_iso_timestamps_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "log.csv",
        "user_id,item_id,timestamp\na,x,2024-01-01\na,y,2024-01-02\nb,x,1714521600\n",
    )
    err = load_error(path)
    assert (err.row, err.got) == (4, "1714521600")
    assert "neither a number nor an ISO-8601 date/time" in str(err)


def test_bad_iso_timestamp_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "log.csv",
        "user_id,item_id,timestamp\na,x,2024-01-01\na,y,2024-13-45\nb,x,2024-01-02\n",
    )
    err = load_error(path)
    assert str(err) == (
        where(path, 3, "timestamp") + "timestamp is neither a number nor an ISO-8601 date/time "
        "(expected seconds since the epoch or e.g. 2024-05-01T12:00:00, got '2024-13-45')"
    )


def test_line_numbers_count_blank_lines_and_multiline_cells(tmp_path: Path) -> None:
    path = write(
        tmp_path / "log.csv",
        'user_id,item_id,timestamp,note\na,x,1,"two\nlines"\n\nb,y,oops,\n',
    )
    assert load_error(path).row == 5


def test_line_numbers_count_blank_lines_in_atomic_files(tmp_path: Path) -> None:
    path = write(
        tmp_path / "log.inter",
        "user_id:token\titem_id:token\ttimestamp:float\na\tx\t1\n\n\nb\ty\toops\n",
    )
    assert load_error(path).row == 5


def test_line_numbers_in_jsonl_with_blank_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "log.jsonl",
        '{"user_id": "a", "item_id": "x", "timestamp": 1}\n\n'
        '{"user_id": "a", "item_id": "y", "timestamp": "later"}\n',
    )
    err = load_error(path)
    assert (err.row, err.column) == (3, "timestamp")


def test_missing_timestamp(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\na,x,1\na,y,\nb,x,\n")
    err = load_error(path)
    assert str(err) == (
        where(path, 3, "timestamp") + "2 rows have no value (expected a value, got None)"
    )


def test_missing_user_id(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\na,x,1\n,y,2\n")
    err = load_error(path)
    assert (err.row, err.column) == (3, "user_id")


def test_non_numeric_rating(tmp_path: Path) -> None:
    path = write(
        tmp_path / "log.csv", "user_id,item_id,timestamp,rating\na,x,1,5\na,y,2,\nb,x,3,great\n"
    )
    err = load_error(path)
    assert str(err) == (
        where(path, 4, "rating") + "rating is not a number (expected a number, got 'great')"
    )


def test_parquet_errors_name_the_record(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pd.DataFrame(
        {"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": ["1", "soon"]}
    ).to_parquet(path)
    err = load_error(path)
    assert str(err).startswith(f"{path}, record 1, column 'timestamp': timestamp is not a")


# --------------------------------------------------------------------------- cross-checks
def test_unknown_item_ids(tmp_path: Path) -> None:
    inter = write(
        tmp_path / "log.csv", "user_id,item_id,timestamp\na,x,1\na,zz,2\nb,y,3\nb,zz,4\nc,qq,5\n"
    )
    items = write(tmp_path / "items.csv", ITEMS_CSV)
    err = load_error(inter, items)
    assert str(err) == (
        where(inter, 3, "item_id") + "3 interactions refer to items missing from the items table "
        "(expected an id from the items table, got 'zz'). fix the ids, add the items, or pass "
        "--drop-unknown-items to drop them"
    )
    ds = load_files(inter, items, options=LoadOptions(drop_unknown_items=True))
    assert ds.interactions["item_id"].tolist() == ["x", "y"]
    assert ds.interactions["user_id"].tolist() == ["a", "b"]
    assert ds.report == ["interactions: dropped 3 with item ids not in the items table"]


def test_unknown_item_ids_in_a_dataset_object() -> None:
    import datasets

    inter = datasets.Dataset.from_dict(
        {"user_id": ["a", "a"], "item_id": ["x", "zz"], "timestamp": [1, 2]}
    )
    items = datasets.Dataset.from_dict({"item_id": ["x"], "title": ["X"]})
    err = load_error(inter, items)
    assert str(err).startswith("<datasets.Dataset>, record 1, column 'item_id': 1 interactions")


def test_users_without_interactions(tmp_path: Path) -> None:
    inter = write(tmp_path / "log.csv", "user_id,item_id,timestamp\na,x,1\nc,y,2\n")
    users = write(tmp_path / "users.csv", "user_id,age\na,30\nb,40\nc,50\nd,60\n")
    err = load_error(inter, None, users)
    assert str(err) == (
        where(users, 3, "user_id") + "2 users in the users table have no interactions, e.g. 'b'. "
        "pass --drop-users-without-interactions to drop them (they are counted)"
    )
    ds = load_files(inter, None, users, options=LoadOptions(drop_users_without_interactions=True))
    assert ds.users.to_dict("list") == {"user_id": ["a", "c"], "age": ["30", "50"]}
    assert ds.report == [
        "items: no items table given; 2 items titled by their ids",
        "users: dropped 2 users with no interactions",
    ]


def test_users_without_profile_rows_are_counted(tmp_path: Path) -> None:
    inter = write(tmp_path / "log.csv", "user_id,item_id,timestamp\na,x,1\nb,y,2\nc,y,3\n")
    users = write(tmp_path / "users.csv", "user_id,age\na,30\n")
    ds = load_files(inter, None, users)
    assert ds.report[-1] == "users: 2 users with interactions have no profile row"
    assert ds.user("b").profile == {}
    assert ds.user("a").profile == {"age": "30"}


def test_duplicate_item_with_conflicting_text(tmp_path: Path) -> None:
    inter = write(tmp_path / "log.csv", "user_id,item_id,timestamp\na,x,1\n")
    items = write(
        tmp_path / "items.csv", "item_id,title,year\nx,Film X,1999\ny,Film Y,2001\nx,Film X2,1999\n"
    )
    err = load_error(inter, items)
    assert str(err) == (
        where(items, 4, "title") + "item id 'x' appears twice with different values in ['title'] "
        "(expected 'Film X', got 'Film X2'). make each id unique or remove the conflicting row"
    )


def test_duplicate_item_conflict_without_year_column(tmp_path: Path) -> None:
    # The year column is then all missing (pd.NA), which must not break the comparison.
    inter = write(tmp_path / "log.csv", "user_id,item_id,timestamp\na,x,1\n")
    items = write(tmp_path / "items.csv", "item_id,title\nx,Film X\nx,Other\n")
    err = load_error(inter, items)
    assert (err.row, err.column) == (3, "title")
    assert "item id 'x' appears twice with different values in ['title']" in str(err)


def test_exact_duplicate_items_and_users_are_removed_and_counted(tmp_path: Path) -> None:
    inter = write(tmp_path / "log.csv", "user_id,item_id,timestamp\na,x,1\nb,y,2\n")
    items = write(
        tmp_path / "items.csv",
        "item_id,title,genres\nx,Film X,A|B\ny,Film Y,\nx,Film X,A|B\nx,Film X,A|B\n",
    )
    users = write(tmp_path / "users.csv", "user_id,age\na,30\nb,\nb,\n")
    ds = load_files(inter, items, users)
    assert ds.catalog.ids == ["x", "y"]
    assert ds.catalog.item("x").categories == ("A", "B")
    assert ds.users["user_id"].tolist() == ["a", "b"]
    assert ds.report == [
        "items: removed 2 exact duplicate rows",
        "users: removed 1 exact duplicate rows",
    ]


def test_duplicate_user_with_conflicting_profile(tmp_path: Path) -> None:
    inter = write(tmp_path / "log.csv", "user_id,item_id,timestamp\na,x,1\n")
    users = write(tmp_path / "users.csv", "user_id,age,gender\na,30,F\na,31,F\n")
    err = load_error(inter, None, users)
    assert (err.row, err.column, err.got) == (3, "age", "31")
    assert "user id 'a' appears twice with different values in ['age']" in str(err)


def test_unknown_item_error_from_build_dataset_without_a_table() -> None:
    inter = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["x", "q"], "timestamp": [1.0, 2.0]})
    items = pd.DataFrame(
        {
            "item_id": ["x"],
            "title": ["X"],
            "year": pd.array([None], dtype="Int64"),
            "categories": [[]],
            "description": None,
        }
    )
    with pytest.raises(DataError) as info:
        build_dataset("t", inter, items, None)
    assert str(info.value).startswith("interactions, record 1, column 'item_id': ")


def test_reused_load_options_keep_reports_apart(tmp_path: Path) -> None:
    inter = write(tmp_path / "log.csv", "user_id,item_id,timestamp\na,x,1\na,zz,2\n")
    items = write(tmp_path / "items.csv", ITEMS_CSV)
    options = LoadOptions(drop_unknown_items=True)
    first = load_files(inter, items, options=options)
    second = load_files(inter, items, options=options)
    line = "interactions: dropped 1 with item ids not in the items table"
    assert first.report == [line]
    assert second.report == [line]
    assert options.report == []


# --------------------------------------------------------------------------- timestamp range
def test_negative_timestamps_are_counted_and_the_first_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path / "log.csv",
        "user_id,item_id,timestamp\na,x,100\na,y,-5\nb,x,-7\nb,y,5\n",
    )
    err = load_error(path)
    assert (err.row, err.column, err.got) == (3, "timestamp", "-5")
    assert str(err) == (
        where(path, 3, "timestamp") + "2 rows have a negative timestamp; the first is here "
        "(expected seconds since the epoch, from 0 (1970-01-01) to below 32503680000 "
        "(3000-01-01), got '-5'). timestamps are seconds since 1970-01-01; if yours are "
        "relative times, shift them so that the earliest is 0"
    )


@pytest.mark.parametrize(
    ("value", "got"),
    [("1714521600000", "1714521600000"), ("inf", "inf"), ("32503680000", "32503680000")],
)
def test_far_future_and_infinite_timestamps_are_refused(
    tmp_path: Path, value: str, got: str
) -> None:
    path = write(tmp_path / "log.csv", f"user_id,item_id,timestamp\na,x,1\nb,y,{value}\n")
    err = load_error(path)
    assert (err.row, err.got) == (3, got)
    assert "1 row has a timestamp out of range (in the year 3000 or later, or not finite)" in str(
        err
    )
    assert "milliseconds or microseconds" in str(err)


def test_pre_1970_dates_are_negative_and_the_edges_are_accepted(tmp_path: Path) -> None:
    iso = write(tmp_path / "iso.csv", "user_id,item_id,timestamp\na,x,2024-01-01\na,y,1969-12-31\n")
    err = load_error(iso)
    assert (err.row, err.got) == (3, "1969-12-31") and "1 row has a negative timestamp" in str(err)
    edges = write(tmp_path / "ok.csv", "user_id,item_id,timestamp\na,x,0\na,y,32503679999.5\n")
    items = write(tmp_path / "items.csv", ITEMS_CSV)
    data = load_files(edges, items)
    assert data.interactions["timestamp"].tolist() == [0.0, 32503679999.5]


def test_negative_timestamps_in_parquet_name_the_record(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"],
                  "timestamp": [1, 2, -3]}).to_parquet(path)  # fmt: skip
    err = load_error(path)
    assert err.column == "timestamp" and "1 row has a negative timestamp" in str(err)
    assert err.row is not None
