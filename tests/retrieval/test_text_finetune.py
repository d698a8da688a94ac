"""Tests of the text encoder fine-tuning: pairs, a short run, resuming, using the result."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from llmrec.data.records import EvalCase
from llmrec.retrieval.text import TextView
from llmrec.retrieval.text_finetune import (
    TextFinetuneConfig,
    finetune_text_encoder,
    last_checkpoint,
    read_training_summary,
    training_columns,
    training_pairs,
)

from .fakes import make_sequence


@pytest.fixture
def train():
    return [
        make_sequence("a", ["1", "2", "3", "4", "5"]),
        make_sequence("b", ["2", "4", "6", "1", "3"]),
        make_sequence("c", ["6", "5", "4", "3", "2"]),
        make_sequence("d", ["3", "1", "6", "2", "5"]),
        make_sequence("e", ["1"]),  # too short to give a pair
    ]


@pytest.fixture
def valid():
    return [
        EvalCase("a", make_sequence("a", ["1", "2", "3", "4", "5"]), "6"),
        EvalCase("b", make_sequence("b", ["2", "4"]), "1"),
    ]


def test_training_pairs_from_every_prefix(movies, train, tmp_path: Path) -> None:
    config = TextFinetuneConfig(output_dir=str(tmp_path), history_items=2)
    anchors, positives = training_pairs(train[:1], movies, config)
    assert len(anchors) == 4
    assert anchors[0] == "Recently watched: Toy Story (1995)"
    assert positives[0] == "Heat (1995). Genres: Action, Crime, Thriller."
    assert anchors[3] == "Recently watched: Alien (1979); Schindler's List (1993)"
    assert positives[3] == "Sense and Sensibility (1995). Genres: Drama, Romance."
    anchors, _ = training_pairs(train, movies, config)
    assert len(anchors) == 16  # 4 users x 4 prefixes; the 1-item user gives none


def test_training_pairs_capped_with_a_seeded_sample(movies, train, tmp_path: Path) -> None:
    config = TextFinetuneConfig(output_dir=str(tmp_path), max_pairs_per_user=2, seed=3)
    first = training_pairs(train, movies, config)
    assert len(first[0]) == 8
    assert training_pairs(train, movies, config) == first
    other = training_pairs(train, movies, TextFinetuneConfig(str(tmp_path), max_pairs_per_user=2))
    assert len(other[0]) == 8


def test_uniform_negatives_avoid_the_pair_items(movies, train, tmp_path: Path) -> None:
    config = TextFinetuneConfig(output_dir=str(tmp_path), history_items=2)
    columns = training_columns(train, movies, config)
    assert list(columns) == ["anchor", "positive", "negative"]
    assert len(columns["negative"]) == len(columns["anchor"]) == 16
    titles = {movies.item_at(i).title: i for i in range(len(movies))}
    for anchor, positive, negative in zip(*columns.values(), strict=True):
        assert negative != positive
        negative_title = negative.split(" (")[0]
        assert negative_title in titles and negative_title not in anchor
    assert training_columns(train, movies, config) == columns  # seeded
    plain = dataclasses.replace(config, uniform_negatives=False)
    assert list(training_columns(train, movies, plain)) == ["anchor", "positive"]


def test_config_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_steps must be -1"):
        TextFinetuneConfig(output_dir=str(tmp_path), max_steps=0)
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        TextFinetuneConfig(output_dir=str(tmp_path), batch_size=1)
    with pytest.raises(ValueError, match="user_mode|template"):
        TextFinetuneConfig(output_dir=str(tmp_path), template="{{ x")


def _config(tmp_path: Path, model: str, **overrides) -> TextFinetuneConfig:
    settings = dict(
        output_dir=str(tmp_path / "ft"),
        base_model=model,
        batch_size=8,
        learning_rate=1e-3,
        warmup=0.0,
        save_steps=1,
        eval_steps=1,
        logging_steps=1,
        max_seq_length=64,
        progress=False,
    )
    return TextFinetuneConfig(**{**settings, **overrides})


def test_short_run_writes_final_model(tiny_model, movies, train, valid, tmp_path: Path) -> None:
    config = _config(tmp_path, tiny_model, max_steps=2)
    final = finetune_text_encoder(train, movies, config, valid)
    assert final == tmp_path / "ft" / "final"
    assert (final / "modules.json").is_file() and (final / "llmrec_text.json").is_file()
    summary = read_training_summary(final)
    assert summary["global_step"] == 2 and summary["train_pairs"] == 16
    assert math.isfinite(summary["training_loss"])
    assert any("eval_valid_cosine_ndcg@10" in entry for entry in summary["log_history"])
    assert summary["resumed_from"] is None
    # the fine-tuned encoder drives a text view
    view = TextView(config.for_view(final), show_progress=False).fit([], movies)
    assert view.config.user_mode == "text" and view.config.model == str(final)
    scores = view.score([make_sequence("a", ["1", "2"])])
    assert scores.shape == (1, 6) and np.isfinite(scores).all()


def test_resume_continues_from_the_last_checkpoint(
    tiny_model, movies, train, tmp_path: Path, caplog
) -> None:
    first = finetune_text_encoder(train, movies, _config(tmp_path, tiny_model, max_steps=1))
    assert read_training_summary(first)["global_step"] == 1
    checkpoint = last_checkpoint(tmp_path / "ft")
    assert checkpoint is not None and checkpoint.name == "checkpoint-1"
    with caplog.at_level(logging.INFO, logger="llmrec.retrieval.text_finetune"):
        final = finetune_text_encoder(
            train, movies, _config(tmp_path, tiny_model, max_steps=3), resume=True
        )
    summary = read_training_summary(final)
    assert summary["resumed_from"] == str(checkpoint)
    assert summary["global_step"] == 3
    steps = [entry["step"] for entry in summary["log_history"] if "loss" in entry]
    assert steps == [1, 2, 3]  # step 1 restored from the checkpoint, then 2 and 3
    assert "resuming from" in caplog.text
    assert last_checkpoint(tmp_path / "ft").name == "checkpoint-3"


def test_view_warns_when_rendering_differs(tiny_model, movies, train, tmp_path, caplog) -> None:
    final = finetune_text_encoder(train, movies, _config(tmp_path, tiny_model, max_steps=1))
    view = TextView(model=str(final), user_mode="text", history_items=7, show_progress=False)
    with caplog.at_level(logging.WARNING, logger="llmrec.retrieval.text"):
        view.fit([], movies)
    assert "fine-tuned on text rendered with other settings" in caplog.text
    assert "history_items" in caplog.text
