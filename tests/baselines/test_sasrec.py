"""SASRecRecommender: learning, determinism, persistence, config checks (small and fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from llmrec.baselines._common import ndcg_hr_at_k  # noqa: E402
from llmrec.baselines.sasrec import SASRecConfig, SASRecRecommender  # noqa: E402
from llmrec.data.records import EvalCase  # noqa: E402

N_ITEMS = 12
#: A small, quick model; each test's fit takes about a second on one core.
SMALL = dict(
    hidden_size=32,
    num_layers=1,
    num_heads=2,
    inner_size=64,
    dropout=0.1,
    max_len=10,
    lr=5e-3,
    batch_size=16,
    epochs=30,
    num_threads=1,
    progress=False,
)


def walks(seq, rng: np.random.Generator, count: int, prefix: str = "u") -> list:
    """Sequences that step i -> i + 1 (mod N_ITEMS) from a random start, 4 to 14 items long."""
    out = []
    for k in range(count):
        start, length = int(rng.integers(N_ITEMS)), int(rng.integers(4, 15))
        out.append(seq(f"{prefix}{k}", [(start + t) % N_ITEMS for t in range(length)]))
    return out


@pytest.fixture(scope="module")
def chain_data():
    from conftest import build_catalog, build_sequence

    rng = np.random.default_rng(7)
    catalog = build_catalog(N_ITEMS)
    return catalog, walks(build_sequence, rng, 64), walks(build_sequence, rng, 40, "held")


@pytest.fixture(scope="module")
def chain_model(chain_data) -> SASRecRecommender:
    catalog, train, _ = chain_data
    return SASRecRecommender(**SMALL).fit(train, catalog)


def test_learns_the_next_item_of_a_walk(chain_data, chain_model) -> None:
    _, _, held = chain_data
    prefixes = [s.head(-1) for s in held]

    scores = chain_model.score(prefixes)

    assert scores.shape == (len(held), N_ITEMS)
    assert scores.dtype == np.float32
    predicted = scores.argmax(axis=1)
    expected = [(int(p.item_ids[-1]) + 1) % N_ITEMS for p in prefixes]
    assert np.mean(predicted == expected) >= 0.9


def test_seeded_fits_are_identical(chain_data) -> None:
    catalog, train, held = chain_data
    config = SASRecConfig(**{**SMALL, "epochs": 3})
    first = SASRecRecommender(config).fit(train, catalog).score(held)
    second = SASRecRecommender(config).fit(train, catalog).score(held)
    np.testing.assert_array_equal(first, second)
    other_seed = SASRecRecommender(config, seed=1).fit(train, catalog).score(held)
    assert not np.array_equal(first, other_seed)


def test_save_load_round_trip(tmp_path, chain_data, chain_model, make_catalog) -> None:
    catalog, _, held = chain_data
    chain_model.save(tmp_path / "sasrec")

    meta = json.loads((tmp_path / "sasrec" / "model.json").read_text())
    again = SASRecRecommender.load(tmp_path / "sasrec", catalog)

    assert meta["model"] == "sasrec" and meta["config"]["hidden_size"] == 32
    assert (tmp_path / "sasrec" / "model.pt").is_file()
    assert again.config == chain_model.config
    np.testing.assert_array_equal(again.score(held), chain_model.score(held))
    with pytest.raises(ValueError, match="another catalogue"):
        SASRecRecommender.load(tmp_path / "sasrec", make_catalog(N_ITEMS, prefix="z"))


def test_empty_and_long_histories(chain_data, chain_model, seq) -> None:
    catalog, train, _ = chain_data
    long_history = seq("long", [t % N_ITEMS for t in range(40)])  # longer than max_len=10

    scores = chain_model.score([seq("empty", []), long_history, long_history.tail(10)])

    trained = np.concatenate([catalog.indices(s.item_ids) for s in train])
    counts = np.bincount(trained, minlength=N_ITEMS)
    np.testing.assert_array_equal(scores[0], counts.astype(np.float32))
    np.testing.assert_allclose(scores[1], scores[2], rtol=1e-5, atol=1e-5)
    assert np.isfinite(scores).all()
    candidates = chain_model.score_candidates([long_history], np.array([[0, 5]]))
    np.testing.assert_allclose(candidates, scores[1:2, [0, 5]], rtol=1e-5, atol=1e-5)


def test_early_stopping_keeps_the_best_validation_weights(chain_data) -> None:
    catalog, train, held = chain_data
    valid = [EvalCase(s.user_id, s.head(-1), s.item_ids[-1]) for s in held]
    model = SASRecRecommender(**{**SMALL, "epochs": 12, "eval_every": 2, "patience": 2})

    model.fit(train, catalog, valid)

    assert [h["epoch"] for h in model.history][:2] == [2, 4]
    best = max(h["valid_ndcg@10"] for h in model.history)
    ndcg, _ = ndcg_hr_at_k(model.score([c.history for c in valid]), valid, catalog)
    assert ndcg == pytest.approx(best, abs=1e-9)
    checks_after_best = (
        len(model.history) - 1 - int(np.argmax([h["valid_ndcg@10"] for h in model.history]))
    )
    assert model.history[-1]["epoch"] == 12 or checks_after_best == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hidden_size", 0),
        ("num_layers", 1.5),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("lr", 0.0),
        ("weight_decay", -1.0),
        ("batch_size", "64"),
        ("patience", 0),
        ("max_len", True),
        ("num_threads", 0),
        ("device", "abacus"),
    ],
)
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        SASRecConfig(**{field: value})


def test_heads_must_divide_hidden_size() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        SASRecConfig(hidden_size=30, num_heads=4)


def test_unfitted_and_untrainable(make_catalog, seq) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        SASRecRecommender().score([seq("x", [0])])
    with pytest.raises(ValueError, match="two or more items"):
        SASRecRecommender(**SMALL).fit([seq("a", [0]), seq("b", [])], make_catalog(3))


def test_training_windows_cover_every_transition_once() -> None:
    from llmrec.baselines.sasrec import _training_windows

    encoded = [np.arange(12), np.arange(3), np.arange(1), np.arange(0)]
    windows = _training_windows(encoded, max_len=4)

    assert all(2 <= len(w) <= 5 for w in windows)
    pairs = sorted((int(a), int(b)) for w in windows for a, b in zip(w[:-1], w[1:], strict=True))
    tokens = [np.arange(12) + 1, np.arange(3) + 1]  # tokens are catalogue index + 1
    expected = sorted((int(a), int(b)) for t in tokens for a, b in zip(t[:-1], t[1:], strict=True))
    assert pairs == expected
