"""Behaviour sequences: deterministic order, aligned views, and the sequence options."""

from __future__ import annotations

import pandas as pd
import pytest

from llmrec.data import (
    Dedup,
    RecDataset,
    SequenceOptions,
    UserSequence,
    apply_options,
    load_files,
)
from llmrec.data.schema import sort_interactions

from .fakes import make_dataset, write_format


def items_of(ds: RecDataset) -> dict[str, list[str]]:
    return {s.user_id: list(s.item_ids) for s in ds.sequences()}


# --------------------------------------------------------------------------- order
def test_sequences_are_time_ordered_with_ties_in_file_order() -> None:
    ds = make_dataset(
        [
            ("u2", "c", 7),
            ("u1", "i5", 10),
            ("u1", "i2", 10),
            ("u1", "i9", 5),
            ("u2", "a", 7),
            ("u1", "i7", 10),
            ("u2", "b", 1),
        ]
    )
    seqs = ds.sequences()
    assert [s.user_id for s in seqs] == ["u2", "u1"]  # order of first appearance
    assert seqs[0] == UserSequence("u2", ("b", "c", "a"), (1.0, 7.0, 7.0))
    assert seqs[1] == UserSequence("u1", ("i9", "i5", "i2", "i7"), (5.0, 10.0, 10.0, 10.0))


def test_sort_does_not_depend_on_the_incoming_row_index() -> None:
    inter = pd.DataFrame(
        {"user_id": ["a", "a", "a"], "item_id": ["x", "y", "z"], "timestamp": [2.0, 1.0, 2.0]},
        index=[10, 5, 0],
    )
    out = sort_interactions(inter)
    assert out["item_id"].tolist() == ["y", "x", "z"]
    assert out.index.tolist() == [0, 1, 2]


def test_sequence_views_are_aligned() -> None:
    ds = make_dataset(
        [
            ("u1", "x", 3, 5, "buy"),
            ("u1", "y", 1, 2, "click"),
            ("u2", "x", 2, 4, "click"),
            ("u1", "z", 2, 3, "cart"),
        ]
    )
    assert ds.sequences() == [
        UserSequence(
            "u1", ("y", "z", "x"), (1.0, 2.0, 3.0), (2.0, 3.0, 5.0), ("click", "cart", "buy")
        ),
        UserSequence("u2", ("x",), (2.0,), (4.0,), ("click",)),
    ]


def test_context_columns_are_a_sliceable_view(tmp_path) -> None:  # noqa: ANN001
    u1 = load_files(*write_format(tmp_path, "csv")).sequences()[0]
    assert u1.context == {"device": ("web", "web", "mobile")}
    assert u1.head(-1).context == {"device": ("web", "web")}
    assert u1.tail(1).context == {"device": ("mobile",)}
    with pytest.raises(ValueError, match=r"context\['device'\] has 1 entries"):
        UserSequence("u", ("a", "b"), (1.0, 2.0), context={"device": ("web",)})


def test_sequences_without_ratings_or_behaviors_have_none() -> None:
    seq = make_dataset([("u1", "x", 1)]).sequences()[0]
    assert (seq.ratings, seq.behaviors) == (None, None)


def test_user_sequence_checks_alignment_and_slices() -> None:
    with pytest.raises(ValueError, match="ratings has 1 entries but item_ids has 2"):
        UserSequence("u", ("a", "b"), (1.0, 2.0), ratings=(1.0,))
    seq = UserSequence("u", ("a", "b", "c"), (1.0, 2.0, 3.0), (5.0, 4.0, 3.0), ("v", "v", "b"))
    assert seq.head(-1) == UserSequence("u", ("a", "b"), (1.0, 2.0), (5.0, 4.0), ("v", "v"))
    assert seq.tail(2) == UserSequence("u", ("b", "c"), (2.0, 3.0), (4.0, 3.0), ("v", "b"))
    assert seq.tail(5) == seq
    with pytest.raises(ValueError, match="max_len must be positive"):
        seq.tail(0)


def test_stats() -> None:
    ds = make_dataset([("u1", "x", 1, 5), ("u1", "y", 2, 4), ("u1", "z", 4, 4), ("u2", "x", 3, 1)])
    stats = ds.stats()
    assert stats["users"] == 2
    assert stats["items"] == 3
    assert stats["interactions"] == 4
    assert stats["density"] == pytest.approx(4 / 6)
    assert stats["sequence_length"] == {"min": 1, "median": 2.0, "mean": 2.0, "max": 3}
    assert stats["time_range"] == [1.0, 4.0]
    assert stats["ratings"] == {"1.0": 1, "4.0": 2, "5.0": 1}


# --------------------------------------------------------------------------- options
RATED = [
    ("a", "x", 1, 5),
    ("a", "y", 2, 2),
    ("a", "z", 3, 4),
    ("b", "x", 1, 1),
    ("b", "y", 2, 3),
    ("c", "z", 5, 4),
]


def test_default_options_change_nothing() -> None:
    ds = make_dataset(RATED, users=["a", "b", "c"])
    out = apply_options(ds, SequenceOptions())
    pd.testing.assert_frame_equal(out.interactions, ds.interactions)
    pd.testing.assert_frame_equal(out.users, ds.users)
    assert out.report == []


def test_min_rating() -> None:
    ds = make_dataset(RATED, users=["a", "b", "c"])
    out = apply_options(ds, SequenceOptions(min_rating=4))
    assert items_of(out) == {"a": ["x", "z"], "c": ["z"]}
    assert out.users["user_id"].tolist() == ["a", "c"]
    assert out.report == [
        "rating >= 4: removed 3 interactions",
        "users left with no interactions after filtering: 1 removed",
    ]
    # The input dataset is not changed.
    assert len(ds.interactions) == 6
    assert ds.report == []


def test_min_rating_needs_a_rating_column() -> None:
    with pytest.raises(ValueError, match="no rating column"):
        apply_options(make_dataset([("a", "x", 1)]), SequenceOptions(min_rating=3))


REPEATS = [("a", "x", 1), ("a", "y", 2), ("a", "x", 3), ("b", "x", 1), ("a", "x", 4)]


def test_dedup_first() -> None:
    out = apply_options(make_dataset(REPEATS), SequenceOptions(dedup="first"))
    assert [(s.item_ids, s.timestamps) for s in out.sequences()] == [
        (("x", "y"), (1.0, 2.0)),
        (("x",), (1.0,)),
    ]
    assert out.report == ["dedup (first): removed 2 repeated interactions"]


def test_dedup_last() -> None:
    out = apply_options(make_dataset(REPEATS), SequenceOptions(dedup=Dedup.LAST))
    assert [(s.item_ids, s.timestamps) for s in out.sequences()] == [
        (("y", "x"), (2.0, 4.0)),
        (("x",), (1.0,)),
    ]
    assert out.report == ["dedup (last): removed 2 repeated interactions"]


def test_k_core_is_iterative() -> None:
    # 2-core. Round 1 drops d (1 interaction); item i3 then has only c, so round 2 drops (c, i3);
    # c is then left with one interaction, so round 3 drops (c, i1). a and b remain.
    rows = [
        ("a", "i1", 1),
        ("a", "i2", 2),
        ("b", "i1", 1),
        ("b", "i2", 2),
        ("c", "i3", 1),
        ("c", "i1", 2),
        ("d", "i3", 3),
    ]
    ds = make_dataset(rows, users=["a", "b", "c", "d"])
    out = apply_options(ds, SequenceOptions(k_core=2))
    assert items_of(out) == {"a": ["i1", "i2"], "b": ["i1", "i2"]}
    assert out.users["user_id"].tolist() == ["a", "b"]
    assert out.report == [
        "2-core (3 rounds): removed 3 interactions, 2 users, 1 items from the interactions "
        "(items stay in the catalogue as cold-start items)",
        "users left with no interactions after filtering: 2 removed",
    ]
    assert "i3" in out.catalog


def test_k_core_that_removes_nothing() -> None:
    out = apply_options(make_dataset([("a", "x", 1), ("b", "x", 2)]), SequenceOptions(k_core=1))
    assert len(out.interactions) == 2
    assert out.report == [
        "1-core (0 rounds): removed 0 interactions, 0 users, 0 items from the interactions "
        "(items stay in the catalogue as cold-start items)"
    ]


def test_max_len_keeps_the_most_recent() -> None:
    rows = [("a", f"i{t}", t) for t in (5, 1, 4, 2, 3)] + [("b", "i1", 1), ("b", "i2", 2)]
    out = apply_options(make_dataset(rows), SequenceOptions(max_len=3))
    assert items_of(out) == {"a": ["i3", "i4", "i5"], "b": ["i1", "i2"]}
    assert out.report == ["max_len 3: removed 2 older interactions"]


def test_options_apply_in_order() -> None:
    rows = [
        ("a", "x", 1, 5),
        ("a", "y", 2, 1),
        ("a", "x", 3, 4),
        ("a", "z", 4, 5),
        ("b", "x", 1, 4),
        ("b", "z", 2, 4),
        ("b", "w", 3, 5),
    ]
    out = apply_options(
        make_dataset(rows), SequenceOptions(min_rating=4, dedup="last", k_core=2, max_len=1)
    )
    assert items_of(out) == {"a": ["z"], "b": ["z"]}
    assert out.report == [
        "rating >= 4: removed 1 interactions",
        "dedup (last): removed 1 repeated interactions",
        "2-core (1 rounds): removed 1 interactions, 0 users, 1 items from the interactions "
        "(items stay in the catalogue as cold-start items)",
        "max_len 1: removed 2 older interactions",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k_core": 0}, "k_core must be >= 1, got 0"),
        ({"max_len": 0}, "max_len must be >= 1, got 0"),
        ({"max_len": -3}, "max_len must be >= 1, got -3"),
        ({"dedup": "sometimes"}, "'sometimes' is not a valid Dedup"),
    ],
)
def test_invalid_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SequenceOptions(**kwargs)
