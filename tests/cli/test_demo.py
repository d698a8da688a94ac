"""``llmrec demo`` drives the library's functions (no argv re-parsing) and reuses artefacts."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmrec.cli import demo


def test_the_retriever_step_builds_all_five_views_fused_by_rrf(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import llmrec.cli.retrieve

    calls = []
    monkeypatch.setattr(
        llmrec.cli.retrieve, "build_retriever", lambda *args, **kw: calls.append(args)
    )
    demo._retriever("the dataset", tmp_path / "retriever")
    ((dataset, data, settings, out),) = calls
    assert (dataset, data, out) == ("the dataset", "ml-100k", tmp_path / "retriever")
    assert list(settings.views) == ["text", "sasrec", "cooc", "recent-pop", "pop"]
    assert settings.method.value == "rrf"


def test_existing_artefacts_are_reused(tmp_path, capsys) -> None:  # noqa: ANN001
    from llmrec.models.adapters import META_FILE
    from llmrec.retrieval.saved import MANIFEST

    (tmp_path / "retriever").mkdir()
    (tmp_path / "retriever" / MANIFEST).write_text("{}")
    demo._retriever(None, tmp_path / "retriever")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / META_FILE).write_text("{}")
    demo._adapter(None, tmp_path / "retriever", adapter, argparse.Namespace(adapter=str(adapter)))
    out = capsys.readouterr().out
    assert "reusing the retriever" in out and "reusing the adapter" in out
    with pytest.raises(FileNotFoundError, match="holds no llmrec adapter"):
        args = argparse.Namespace(adapter=str(tmp_path))
        demo._adapter(None, tmp_path / "retriever", Path(tmp_path), args)


def test_the_adapter_step_fine_tunes_a_short_run(tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    import dataclasses

    import llmrec.finetune.trainer
    import llmrec.retrieval.saved

    summary = {"steps": 7, "train_seconds": 3.0, "adapter": "a", "trainable_parameters": 1,
               "peak_memory_mb": 2.0, "validation_final": {"NDCG@10": 0.5},
               "validation_zero_shot": None, "validation_retriever": {"NDCG@10": 0.25}}  # fmt: skip
    seen = {}

    def fake_finetune(recipe, dataset, out, retriever=None):  # noqa: ANN001, ANN202
        seen.update(recipe=recipe, out=out, retriever=retriever)
        return SimpleNamespace(**summary)  # the fields of a TrainingSummary that are printed

    monkeypatch.setattr(llmrec.finetune.trainer, "finetune", fake_finetune)
    monkeypatch.setattr(llmrec.retrieval.saved, "load_retriever", lambda folder, catalog: folder)
    dataset = argparse.Namespace(catalog=None)
    adapter = tmp_path / "run" / "adapter"
    demo._adapter(dataset, tmp_path / "ret", adapter, argparse.Namespace(adapter=None, steps=7))
    recipe = seen["recipe"]
    assert (recipe.training.max_steps, recipe.training.eval_steps) == (7, 10)
    assert (recipe.training.eval_users, recipe.examples.source) == (50, "valid")
    assert seen["out"] == adapter.parent and seen["retriever"] == tmp_path / "ret"
    out = capsys.readouterr().out
    assert "done: 7 steps in 3 s; validation NDCG@10 0.5000 (zero-shot nan" in out
    assert "retriever alone 0.2500" in out

    # the summary as a dataclass with the same field names reads the same
    from llmrec.cli.llm import print_training_summary

    as_record = dataclasses.make_dataclass("Summary", list(summary))(**summary)
    print_training_summary(as_record, tmp_path)
    assert "done: 7 steps in 3 s" in capsys.readouterr().out


def test_the_demo_serves_the_family_that_ranks_validation_users_better(monkeypatch, capsys) -> None:  # noqa: ANN001
    import llmrec.data
    import llmrec.evaluation
    import llmrec.ranking.recommend

    quality = {"lora": 0.10, "nextitem": 0.12}
    valid = [SimpleNamespace(user_id=f"u{i}") for i in range(10)]
    monkeypatch.setattr(llmrec.data, "leave_one_out", lambda d: SimpleNamespace(valid=valid))

    def fake_pipeline(retriever, dataset, folder):  # noqa: ANN001, ANN202
        ranker = SimpleNamespace(name=folder, config=SimpleNamespace(fusion_weight=1.0))
        return SimpleNamespace(ranker=ranker)

    def fake_evaluate(ranker, dataset, cases, config, part):  # noqa: ANN001, ANN202
        assert len(cases) == 5 and part == "valid"  # a seeded sample, the same for both
        return SimpleNamespace(metrics={"NDCG@10": quality[ranker.name]})

    monkeypatch.setattr(llmrec.ranking.recommend, "load_pipeline", fake_pipeline)
    monkeypatch.setattr(llmrec.evaluation, "evaluate", fake_evaluate)
    models = {"lora": "lora", "nextitem": "nextitem"}
    assert demo._choose(None, Path("r"), models, 5) == "nextitem"
    out = capsys.readouterr().out
    assert "default model: nextitem (validation NDCG@10 0.1200 against lora 0.1000" in out
    quality["lora"] = 0.2
    assert demo._choose(None, Path("r"), models, 5) == "lora"
