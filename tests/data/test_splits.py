"""Leave-one-out and time splits on hand-made datasets, with every case spelled out."""

from __future__ import annotations

import pytest

from llmrec.data import EvalCase, SplitKind, UserSequence, leave_one_out, make_split, time_split

from .fakes import make_dataset


def seq(
    user: str, items: str, times: list[float], ratings: list[float] | None = None
) -> UserSequence:
    return UserSequence(
        user,
        tuple(items),
        tuple(float(t) for t in times),
        None if ratings is None else tuple(ratings),
    )


LOO_ROWS = [
    ("u1", "a", 1, 5),
    ("u2", "e", 1, 3),
    ("u1", "b", 2, 4),
    ("u3", "g", 1, 1),
    ("u1", "d", 4, 2),
    ("u1", "c", 3, 3),
    ("u2", "f", 2, 3),
    ("u3", "h", 2, 2),
    ("u3", "i", 3, 3),
]


def test_leave_one_out() -> None:
    split = leave_one_out(make_dataset(LOO_ROWS))
    assert split.kind is SplitKind.LEAVE_ONE_OUT
    assert split.train == [
        seq("u1", "ab", [1, 2], [5, 4]),
        seq("u2", "ef", [1, 2], [3, 3]),
        seq("u3", "g", [1], [1]),
    ]
    assert split.valid == [
        EvalCase("u1", seq("u1", "ab", [1, 2], [5, 4]), "c"),
        EvalCase("u3", seq("u3", "g", [1], [1]), "h"),
    ]
    assert split.test == [
        EvalCase("u1", seq("u1", "abc", [1, 2, 3], [5, 4, 3]), "d"),
        EvalCase("u3", seq("u3", "gh", [1, 2], [1, 2]), "i"),
    ]
    assert split.report == [
        "leave-one-out: 2 users evaluated; 1 users with fewer than 3 interactions used for "
        "training only"
    ]
    assert split.cases("valid") is split.valid
    assert split.cases("test") is split.test
    assert split.train_for("test") is split.train
    with pytest.raises(ValueError, match="'valid' or 'test'"):
        split.cases("train")


def test_leave_one_out_min_length() -> None:
    split = leave_one_out(make_dataset(LOO_ROWS), min_length=4)
    assert [c.user_id for c in split.test] == ["u1"]
    assert split.train[2] == seq("u3", "ghi", [1, 2, 3], [1, 2, 3])
    assert split.report[0].startswith("leave-one-out: 1 users evaluated; 2 users with fewer")
    with pytest.raises(ValueError, match="min_length must be >= 3"):
        leave_one_out(make_dataset(LOO_ROWS), min_length=2)


# Timestamps 0..10, one each: with valid/test fractions 0.2 the cuts are the 0.6 and 0.8
# quantiles, t=6 and t=8 exactly; an interaction at a cut belongs to the later period.
TIME_ROWS = [
    ("u1", "a", 0),
    ("u1", "b", 2),
    ("u1", "c", 6),
    ("u1", "d", 7),
    ("u1", "e", 9),
    ("u2", "f", 1),
    ("u2", "g", 3),
    ("u2", "h", 4),
    ("u3", "j", 5),
    ("u3", "k", 8),
    ("u4", "i", 10),
]


def test_time_split() -> None:
    split = time_split(make_dataset(TIME_ROWS), valid_fraction=0.2, test_fraction=0.2)
    assert split.kind is SplitKind.TIME
    assert split.train == [
        seq("u1", "ab", [0, 2]),
        seq("u2", "fgh", [1, 3, 4]),
        seq("u3", "j", [5]),
    ]
    # u1's first item at or after t=6 is c; u3's next item (k, at t=8) is in the test period.
    assert split.valid == [EvalCase("u1", seq("u1", "ab", [0, 2]), "c")]
    # Test histories include the validation period; u4 has no history before t=8.
    assert split.test == [
        EvalCase("u1", seq("u1", "abcd", [0, 2, 6, 7]), "e"),
        EvalCase("u3", seq("u3", "j", [5]), "k"),
        EvalCase("u4", seq("u4", "", []), "i"),
    ]
    assert split.report == [
        "time split at t=6 / t=8: 3 training sequences, 1 validation and 3 test users "
        "(1 test users with no earlier history)"
    ]


def test_time_split_interpolated_cuts() -> None:
    # Defaults 0.1 / 0.1 on timestamps 0..10: cuts at 8 and 9.
    split = time_split(make_dataset(TIME_ROWS))
    assert [s.item_ids for s in split.train] == [
        ("a", "b", "c", "d"),
        ("f", "g", "h"),
        ("j",),
    ]
    assert split.valid == [EvalCase("u3", seq("u3", "j", [5]), "k")]
    assert [(c.user_id, c.target, len(c.history)) for c in split.test] == [
        ("u1", "e", 4),
        ("u4", "i", 0),
    ]


@pytest.mark.parametrize(
    ("valid", "test"), [(0.0, 0.1), (0.1, 0.0), (0.5, 0.5), (1.2, 0.1), (-0.1, 0.1)]
)
def test_time_split_rejects_bad_fractions(valid: float, test: float) -> None:
    with pytest.raises(ValueError, match="must be in"):
        time_split(make_dataset(TIME_ROWS), valid_fraction=valid, test_fraction=test)


def test_make_split() -> None:
    ds = make_dataset(TIME_ROWS)
    assert make_split(ds).kind is SplitKind.LEAVE_ONE_OUT
    assert make_split(ds, "time").kind is SplitKind.TIME
    assert make_split(ds, "loo").test == leave_one_out(ds).test
    with pytest.raises(ValueError):
        make_split(ds, "random")


def test_hold_out_items_removes_cold_items_from_training_only() -> None:
    from llmrec.data.splits import hold_out_items

    ds = make_dataset([("u", i, t) for t, i in enumerate(["a", "b", "c", "d", "e", "f"])])
    split = leave_one_out(ds)
    cold_split, cold = hold_out_items(split, ["a", "b", "c", "d"], fraction=0.5, seed=0)
    assert len(cold) == 2 and cold <= {"a", "b", "c", "d"}
    kept = [i for i in ("a", "b", "c", "d") if i not in cold]
    assert list(cold_split.train[0].item_ids) == kept
    assert cold_split.test == split.test and cold_split.valid == split.valid
    assert "2 of 4 items held out" in cold_split.report[-1]
    again, cold_again = hold_out_items(split, ["a", "b", "c", "d"], fraction=0.5, seed=0)
    assert cold_again == cold
