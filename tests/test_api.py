"""``from llmrec import ...``: the notebook entry points, imported lazily (``import llmrec``
stays light), used end to end on the tiny dataset and model as the README shows them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import llmrec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HEAVY = ("torch", "pandas", "numpy", "transformers", "datasets", "pyarrow")


def test_import_llmrec_is_light_and_names_are_lazy() -> None:
    code = (
        "import sys, llmrec; "
        f"print([m for m in {HEAVY!r} if m in sys.modules]); "
        "llmrec.open_dataset; print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]


def test_public_names() -> None:
    assert set(llmrec.__all__) == {"__version__", *llmrec._LAZY}
    for name in llmrec.__all__:
        assert getattr(llmrec, name) is not None, name
        assert name in dir(llmrec)
    from llmrec.data import open_dataset
    from llmrec.ranking.recommend import load_pipeline
    from llmrec.retrieval.registry import create

    assert llmrec.open_dataset is open_dataset and llmrec.load_pipeline is load_pipeline
    assert llmrec.create_recommender is create
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        llmrec.nope  # noqa: B018
    with pytest.raises(ImportError):
        exec("from llmrec import nope", {})


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from llmrec.cli.main import main

    from .llm_fakes import make_dataset

    root = tmp_path_factory.mktemp("api")
    make_dataset().save(root / "data")
    assert main(["retrieve", "build", "--data", str(root / "data"), "--out",
                 str(root / "retriever"), "--views", "pop,cooc"]) == 0  # fmt: skip
    return {"data": root / "data", "retriever": root / "retriever"}


def test_open_split_fit_evaluate(saved: dict[str, Path]) -> None:
    data = llmrec.open_dataset(saved["data"])
    split = llmrec.make_split(data)
    model = llmrec.create_recommender("pop").fit(split.train, data.catalog, split.valid)
    result = llmrec.evaluate(model, data, split.test, progress=False)
    assert 0.0 <= result.metrics["NDCG@10"] <= 1.0
    assert "pop" in llmrec.format_table([result])


def test_load_pipeline_and_recommend(saved: dict[str, Path], tiny_llm_dir: str) -> None:
    data = llmrec.open_dataset(saved["data"])
    pipe = llmrec.load_pipeline(
        saved["retriever"], data, base_model=tiny_llm_dir, device="cpu", dtype="float32"
    )
    history = data.sequence("u3")
    assert history == next(s for s in data.sequences() if s.user_id == "u3")
    recs = llmrec.recommend(pipe, history, k=3, reasons="template")
    assert len(recs) == 3 and all(r.item_id in data.catalog for r in recs)
    assert not {r.item_id for r in recs} & set(history.item_ids)
    assert all(r.reason is not None and r.reason.text for r in recs)
    # item ids alone: an ad-hoc history (no ratings or times), ranked as the pipeline ranks it
    by_ids = llmrec.recommend(pipe, list(history.item_ids), k=3, reasons="none")
    adhoc = llmrec.UserSequence(
        "adhoc", history.item_ids, tuple(float(n) for n in range(len(history.item_ids)))
    )
    assert by_ids == pipe.recommend(adhoc, k=3, reasons="none")
    assert all(r.reason is None for r in by_ids)
    with pytest.raises(ValueError, match="not in the catalogue: \\['nope'\\]"):
        llmrec.recommend(pipe, ["nope"])
    with pytest.raises(TypeError, match="not one string"):
        llmrec.recommend(pipe, history.item_ids[0])
    with pytest.raises(ValueError, match="user 'ghost' has no interactions"):
        data.sequence("ghost")
