"""What the next-item LLM reads: event buckets, windows, padding (no torch needed)."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.data.records import UserSequence
from llmrec.nextitem.config import NextItemConfig
from llmrec.nextitem.features import (
    BEHAVIOR,
    GAP,
    ITEM,
    RATING,
    TIED_GAP,
    TIME,
    EventVocab,
    encode_events,
    left_pad,
    shuffle_ties,
    training_windows,
    window_priors,
)

from ..llm_fakes import ITEM_IDS, make_catalog, movie_items


def _seq(times, ratings=None, behaviors=None, items=None) -> UserSequence:
    items = items or ITEM_IDS[: len(times)]
    return UserSequence("u", tuple(items), tuple(float(t) for t in times), ratings, behaviors)


def test_vocab_buckets_gaps_times_ratings_and_behaviours() -> None:
    train = [_seq([0, 100, 1000], (1.0, 3.0, 5.0), ("view", "buy", "view"))]
    vocab = EventVocab.fit(train, gap_buckets=16, time_buckets=4)
    assert (vocab.t_min, vocab.t_max) == (0.0, 1000.0)
    assert (vocab.rating_min, vocab.rating_max) == (1.0, 5.0)
    assert vocab.behaviors == ("buy", "view")
    kinds = ("view", "buy", "x", "view", "buy")
    later = _seq([0, 0, 100, 1000, 5000], (1.0, 2.0, 5.0, 3.0, 9.0), kinds)
    events = encode_events(later, make_catalog(movie_items()), vocab)
    assert events[:, ITEM].tolist() == [1, 2, 3, 4, 5]  # catalogue index + 1
    gaps = events[:, GAP]
    assert gaps[0] == 1 and gaps[1] == 2  # first event; a zero gap
    assert gaps[2] < gaps[3] < gaps[4]  # longer gaps, higher buckets
    assert gaps.max() <= 16
    assert events[:, TIME].tolist() == [1, 1, 1, 4, 4]  # 1000 and beyond: the last bucket
    assert events[:, RATING].tolist() == [1, 2, 5, 3, 5]  # 1..5 over [1, 5]; 9 clipped to 5
    assert events[:, BEHAVIOR].tolist() == [2, 1, 0, 2, 1]  # unseen type "x" -> 0


def test_absent_views_encode_as_zero_and_the_vocab_round_trips() -> None:
    train = [_seq([0, 10])]
    vocab = EventVocab.fit(train, gap_buckets=8, time_buckets=8)
    assert not vocab.has_ratings and vocab.behaviors == ()
    events = encode_events(train[0], make_catalog(movie_items()), vocab)
    assert events[:, RATING].tolist() == [0, 0] and events[:, BEHAVIOR].tolist() == [0, 0]
    assert EventVocab.from_dict(vocab.to_dict()) == vocab


def test_windows_cover_every_transition_once_and_pad_on_the_left() -> None:
    seq = np.arange(1, 13)[:, None].repeat(5, axis=1)  # 12 events
    windows = training_windows([seq, seq[:1]], max_len=5)
    targets = [int(t) for w in windows for t in w[1:, ITEM]]
    assert sorted(targets) == list(range(2, 13))  # 11 transitions, each once
    assert all(len(w) <= 6 for w in windows)
    batch = left_pad([windows[0], windows[-1]], width=6)
    assert batch.shape == (2, 6, 5)
    short = windows[-1]
    assert (batch[1, : 6 - len(short)] == 0).all()
    assert (batch[1, 6 - len(short) :] == short).all()
    # what was read before each window: everything earlier in the same sequence
    priors = window_priors([seq, seq[:1]], max_len=5)
    assert len(priors) == len(windows)
    for window, prior in zip(windows, priors, strict=True):
        first = int(window[0, ITEM])
        assert prior.tolist() == list(range(1, first))


def test_shuffle_ties_reorders_only_runs_of_near_simultaneous_events() -> None:
    # seconds 0, 0, 1, 500, 500, 500, 9000: runs {1, 2, 3}, {4, 5, 6}, {7}
    seq = _seq([0, 0, 1, 500, 500, 500, 9000], ratings=(1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0))
    vocab = EventVocab.fit([seq], gap_buckets=16, time_buckets=4)
    events = encode_events(seq, make_catalog(movie_items()), vocab)
    assert events[:, GAP].tolist()[:3] == [1, TIED_GAP, TIED_GAP]
    assert events[3, GAP] > TIED_GAP and events[4, GAP] == events[5, GAP] == TIED_GAP
    rng = np.random.default_rng(0)
    orders = set()
    for _ in range(400):
        out = shuffle_ties(events, rng)
        items = out[:, ITEM].tolist()
        assert sorted(items[:3]) == [1, 2, 3] and sorted(items[3:6]) == [4, 5, 6]
        assert items[6] == 7
        assert (out[:, GAP] == events[:, GAP]).all()  # the gaps stay where they were
        by_item = {int(row[ITEM]): row for row in out}
        for row in events:  # every other view moves with its item
            moved = by_item[int(row[ITEM])]
            assert (
                moved[[RATING, TIME, BEHAVIOR]].tolist() == row[[RATING, TIME, BEHAVIOR]].tolist()
            )
        orders.add(tuple(items))
    assert len(orders) == 36  # 3! x 3! orders, all reached
    assert (events[:, ITEM] == np.arange(1, 8)).all()  # the input is left alone
    one = events[:1]
    assert (shuffle_ties(one, rng) == one).all()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"layers": 0}, "layers"),
        ({"views": ("gap", "mood")}, "unknown views"),
        ({"id_init": "bert"}, "id_init"),
        ({"dropout": 1.0}, "dropout"),
        ({"negatives": -1}, "negatives"),
    ],
)
def test_bad_settings_are_refused(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NextItemConfig(**values)


def test_config_round_trips_and_refuses_unknown_keys() -> None:
    cfg = NextItemConfig(layers=2, views=("gap",), negatives=8)
    assert NextItemConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        NextItemConfig.from_dict({"layer": 2})
