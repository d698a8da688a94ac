"""The baseline registry: names, creation, loading, errors; importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from llmrec import baselines
from llmrec.baselines.markov import MarkovConfig, MarkovRecommender
from llmrec.baselines.popularity import PopularityRecommender


def test_available_names() -> None:
    assert baselines.available() == ["pop", "markov", "sasrec"]


def test_create_and_config() -> None:
    assert isinstance(baselines.create("pop"), PopularityRecommender)
    model = baselines.create("markov", backoff=0.5)
    assert isinstance(model, MarkovRecommender)
    assert model.config == MarkovConfig(backoff=0.5)
    assert baselines.config_class("markov") is MarkovConfig


def test_unknown_name_lists_the_valid_ones(tmp_path, make_catalog) -> None:
    for call in (
        lambda: baselines.create("bpr"),
        lambda: baselines.config_class("bpr"),
        lambda: baselines.load("bpr", tmp_path, make_catalog(2)),
    ):
        with pytest.raises(ValueError, match=r"unknown baseline 'bpr'.*'pop', 'markov', 'sasrec'"):
            call()


def test_unknown_or_bad_setting() -> None:
    with pytest.raises(ValueError, match=r"unknown config field.*'smoothing'.*'backoff'"):
        baselines.create("markov", smoothing=1.0)
    with pytest.raises(ValueError, match="hidden_sise"):
        baselines.create("sasrec", hidden_sise=32)
    with pytest.raises(ValueError, match="dropout"):
        baselines.create("sasrec", dropout=2.0)


def test_load_by_name(tmp_path, make_catalog, seq) -> None:
    catalog = make_catalog(3)
    model = baselines.create("markov").fit([seq("a", [0, 1, 2])], catalog)
    model.save(tmp_path / "m")

    again = baselines.load("markov", tmp_path / "m", catalog)

    np.testing.assert_array_equal(again.score([seq("x", [1])]), model.score([seq("x", [1])]))
    with pytest.raises(ValueError, match="'markov' model, not 'pop'"):
        baselines.load("pop", tmp_path / "m", catalog)
    with pytest.raises(FileNotFoundError, match="no model.json"):
        baselines.load("pop", tmp_path / "nothing", catalog)


def test_import_does_not_load_torch() -> None:
    code = (
        "import sys\n"
        "from llmrec import baselines\n"
        "baselines.create('pop'); baselines.create('markov')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
