"""One small logical dataset, written in every input format the readers support.

Interactions (file order)::

    user  item  rating  timestamp  behavior  device
    u1    i1    5       100        click     web
    u1    i2    3       200        buy       mobile
    u2    i2    4       150        click     web
    u2    i3    2       150        click     mobile    <- same time as the row above
    u1    i3    4       50         click     web       <- u1's earliest interaction
    u3    i1    1       300        buy       (missing)

Items: i1..i3 have interactions, i4 is a cold-start item with no year and no categories.
Users: u1..u3 with an age and a gender.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from llmrec.data import LoadOptions, RecDataset
from llmrec.data.schema import build_dataset

INTERACTIONS = [
    # user, item, rating, timestamp, behavior, device
    ("u1", "i1", 5, 100, "click", "web"),
    ("u1", "i2", 3, 200, "buy", "mobile"),
    ("u2", "i2", 4, 150, "click", "web"),
    ("u2", "i3", 2, 150, "click", "mobile"),
    ("u1", "i3", 4, 50, "click", "web"),
    ("u3", "i1", 1, 300, "buy", None),
]

ITEMS = [
    # id, title, year, categories, description
    ("i1", "Toy Story", 1995, ["Animation", "Comedy"], "Toys come alive"),
    ("i2", "Heat", 1995, ["Action", "Crime", "Thriller"], None),
    ("i3", "Sabrina", 1954, ["Comedy", "Romance"], None),
    ("i4", "Untitled Project", None, [], None),
]


USERS = [("u1", 24, "M"), ("u2", 53, "F"), ("u3", 23, "M")]

#: The interactions after loading: sorted by user (first appearance), time, then file order.
EXPECTED_INTERACTIONS = {
    "user_id": ["u1", "u1", "u1", "u2", "u2", "u3"],
    "item_id": ["i3", "i1", "i2", "i2", "i3", "i1"],
    "timestamp": [50.0, 100.0, 200.0, 150.0, 150.0, 300.0],
    "rating": [4.0, 5.0, 3.0, 4.0, 2.0, 1.0],
    "behavior": ["click", "click", "buy", "click", "click", "buy"],
    "device": ["web", "web", "mobile", "web", "mobile", None],
}

FORMATS = ("atomic", "csv", "tsv", "parquet", "jsonl", "hf_object", "hf_disk")


def _frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    inter = pd.DataFrame(
        INTERACTIONS, columns=["user_id", "item_id", "rating", "timestamp", "behavior", "device"]
    )
    inter["rating"] = inter["rating"].astype(float)
    inter["timestamp"] = inter["timestamp"].astype("int64")
    items = pd.DataFrame(
        {
            "item_id": [r[0] for r in ITEMS],
            "title": [r[1] for r in ITEMS],
            "year": pd.array([r[2] for r in ITEMS], dtype="Int64"),
            "categories": [r[3] for r in ITEMS],
            "description": [r[4] for r in ITEMS],
        }
    )
    users = pd.DataFrame(USERS, columns=["user_id", "age", "gender"])
    return inter, items, users


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _write_delimited(folder: Path, suffix: str, sep: str) -> tuple[Path, Path, Path]:
    inter = folder / f"inter{suffix}"
    inter.write_text(
        sep.join(["user_id", "item_id", "rating", "timestamp", "behavior", "device"])
        + "\n"
        + "".join(sep.join(_text(v) for v in row) + "\n" for row in INTERACTIONS)
    )
    items = folder / f"items{suffix}"
    items.write_text(
        sep.join(["item_id", "title", "year", "categories", "description"])
        + "\n"
        + "".join(
            sep.join([i, t, _text(y), "|".join(c), _text(d)]) + "\n" for i, t, y, c, d in ITEMS
        )
    )
    users = folder / f"users{suffix}"
    users.write_text(
        sep.join(["user_id", "age", "gender"])
        + "\n"
        + "".join(sep.join(str(v) for v in row) + "\n" for row in USERS)
    )
    return inter, items, users


def _write_atomic(folder: Path) -> tuple[Path, Path, Path]:
    inter = folder / "data.inter"
    inter.write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\tbehavior:token\tdevice:token\n"
        + "".join("\t".join(_text(v) for v in row) + "\n" for row in INTERACTIONS)
    )
    items = folder / "data.item"
    items.write_text(
        "item_id:token\ttitle:token\tyear:token\tcategories:token_seq\tdescription:token\n"
        + "".join(
            "\t".join([i, t, _text(y), " ".join(c), _text(d)]) + "\n" for i, t, y, c, d in ITEMS
        )
    )
    users = folder / "data.user"
    users.write_text(
        "user_id:token\tage:token\tgender:token\n"
        + "".join("\t".join(str(v) for v in row) + "\n" for row in USERS)
    )
    return inter, items, users


def _write_jsonl(folder: Path) -> tuple[Path, Path, Path]:
    inter_frame, _, _ = _frames()
    paths = []
    names = ("inter.jsonl", "items.jsonl", "users.jsonl")
    records = (
        [dict(zip(inter_frame.columns, row, strict=True)) for row in INTERACTIONS],
        [
            {"item_id": i, "title": t, "year": y, "categories": c, "description": d}
            for i, t, y, c, d in ITEMS
        ],
        [{"user_id": u, "age": a, "gender": g} for u, a, g in USERS],
    )
    for name, rows in zip(names, records, strict=True):
        path = folder / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(path)
    return paths[0], paths[1], paths[2]


def write_format(folder: Path, fmt: str) -> tuple[object, object, object]:
    """Write the logical dataset in ``fmt``; returns what to pass to ``load_files``."""
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "atomic":
        return _write_atomic(folder)
    if fmt == "csv":
        return _write_delimited(folder, ".csv", ",")
    if fmt == "tsv":
        return _write_delimited(folder, ".tsv", "\t")
    if fmt == "jsonl":
        return _write_jsonl(folder)
    inter, items, users = _frames()
    if fmt == "parquet":
        out = []
        for name, frame in (("inter", inter), ("items", items), ("users", users)):
            path = folder / f"{name}.parquet"
            frame.to_parquet(path, index=False)
            out.append(path)
        return out[0], out[1], out[2]
    import datasets

    objects = [datasets.Dataset.from_pandas(f, preserve_index=False) for f in (inter, items, users)]
    if fmt == "hf_object":
        return objects[0], objects[1], objects[2]
    if fmt == "hf_disk":
        out = []
        for name, ds in zip(("inter", "items", "users"), objects, strict=True):
            path = folder / name
            ds.save_to_disk(str(path))
            out.append(path)
        return out[0], out[1], out[2]
    raise ValueError(fmt)


def make_dataset(
    rows: list[tuple], users: list[str] | None = None, name: str = "hand-made"
) -> RecDataset:
    """A dataset from ``(user, item, timestamp[, rating[, behavior]])`` rows in file order.

    Items are titled by their ids; ``users`` (optional) is the users table.
    """
    columns = ["user_id", "item_id", "timestamp", "rating", "behavior"][: len(rows[0])]
    inter = pd.DataFrame(rows, columns=columns)
    inter["timestamp"] = inter["timestamp"].astype(float)
    if "rating" in inter.columns:
        inter["rating"] = inter["rating"].astype(float)
    user_frame = None if users is None else pd.DataFrame({"user_id": users})
    options = LoadOptions(drop_users_without_interactions=False)
    ds = build_dataset(name, inter, None, user_frame, options)
    ds.report.clear()  # only what later steps add
    return ds


def columns(frame: pd.DataFrame) -> dict[str, list]:
    """A table's columns as lists, missing values (NaN or None) as ``None``."""
    return {c: [None if pd.isna(v) else v for v in frame[c]] for c in frame.columns}
