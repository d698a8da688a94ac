"""RecDataset.sequences() built column by column gives what one pandas group per user gave."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmrec.data import Catalog, RecDataset, UserSequence


def per_group(dataset: RecDataset) -> list[UserSequence]:
    """The former definition: one pandas group per user, converted cell by cell."""
    inter = dataset.interactions
    out = []
    for user_id, rows in inter.groupby("user_id", sort=False):
        out.append(
            UserSequence(
                user_id=str(user_id),
                item_ids=tuple(rows["item_id"].tolist()),
                timestamps=tuple(rows["timestamp"].astype(float).tolist()),
                ratings=tuple(rows["rating"].astype(float).tolist()) if "rating" in rows else None,
                behaviors=tuple(rows["behavior"].astype(str).tolist())
                if "behavior" in rows
                else None,
                context={
                    c: tuple(None if pd.isna(v) else str(v) for v in rows[c].tolist())
                    for c in dataset.context_columns
                },
            )
        )
    return out


def dataset(inter: pd.DataFrame) -> RecDataset:
    ids = sorted(set(inter["item_id"]))
    catalog = Catalog(
        pd.DataFrame(
            {"item_id": ids, "title": ids, "year": None, "categories": [[]] * len(ids),
             "description": None}
        )
    )  # fmt: skip
    return RecDataset("t", catalog, pd.DataFrame({"user_id": []}), inter)


def test_sequences_equal_the_per_group_ones_with_every_column_and_unsorted_rows() -> None:
    rng = np.random.default_rng(0)
    n = 400
    inter = pd.DataFrame(
        {
            "user_id": pd.array(rng.choice(["u1", "u2", "u3", "u10", "x"], size=n), "string"),
            "item_id": pd.array([f"i{j}" for j in rng.integers(0, 30, size=n)], "string"),
            "timestamp": rng.integers(0, 50, size=n).astype(float),
            "rating": rng.integers(1, 6, size=n).astype(float),
            "behavior": rng.choice(["view", "buy"], size=n),
            "device": rng.choice(["phone", "web", None], size=n),
        }
    )  # users interleave: not grouped, as a table built by hand may be
    ds = dataset(inter)
    got, want = ds.sequences(), per_group(ds)
    assert got == want
    assert [s.user_id for s in got] == list(pd.unique(inter["user_id"]))  # first appearance
    assert got[0].item_ids[0] is not None and type(got[0].timestamps[0]) is float


def test_sequences_of_a_minimal_and_an_empty_table() -> None:
    inter = pd.DataFrame(
        {"user_id": ["b", "a", "b"], "item_id": ["1", "2", "1"], "timestamp": [0.0, 1.0, 2.0]}
    )
    ds = dataset(inter)
    assert ds.sequences() == per_group(ds)
    assert ds.sequences()[0] == UserSequence("b", ("1", "1"), (0.0, 2.0))
    assert dataset(inter.iloc[:0]).sequences() == []
