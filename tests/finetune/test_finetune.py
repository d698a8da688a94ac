"""Supervised examples and an end-to-end fine-tuning run on the tiny model (a few seconds)."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec.data.splits import leave_one_out
from llmrec.finetune.callbacks import ELAPSED_FILE
from llmrec.finetune.collate import RankCollator
from llmrec.finetune.curves import CURVE_FILE
from llmrec.finetune.examples import (
    ExampleConfig,
    RankRow,
    ReasonRow,
    build_examples,
    candidate_lists,
    shifted_cases,
    training_cases,
)
from llmrec.finetune.losses import ranking_loss
from llmrec.finetune.recipe import Recipe, RetrievalConfig, TrainingConfig, load_recipe
from llmrec.finetune.residual import fit_residual_weight, with_residual_prior
from llmrec.finetune.run import planned_steps
from llmrec.finetune.summary import SUMMARY_FILE, TrainingSummary, read_training_summary
from llmrec.finetune.trainer import finetune
from llmrec.models.adapters import AdapterConfig, load_adapters, read_adapter_record
from llmrec.models.identity import weights_fingerprint
from llmrec.models.loader import load_model
from llmrec.prompts import PromptBuilder, PromptConfig
from llmrec.ranking.reasons import ReasonFacts
from llmrec.ranking.scorer import LLMScorer
from llmrec.recommender import Recommender

from ..llm_fakes import assert_png

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_PROMPT = PromptConfig(max_history=4, history_token_budget=60, item_max_chars=40)
SMALL_EXAMPLES = ExampleConfig(
    num_candidates=5, hard_negatives=2, prefixes_per_user=2, max_examples=8, seed=0
)
#: training.json's keys, in the order the file has always had them (AdaLoRA adds adalora_ranks
#: before processes, the last one added)
SUMMARY_KEYS = [
    "method", "base_model", "dtype", "device", "quantization", "trainable_parameters",
    "total_parameters", "training_rows", "steps", "planned_steps", "train_seconds",
    "seconds_per_step", "wall_seconds", "peak_memory_mb", "adapter_bytes", "train_loss",
    "best_checkpoint", "residual_weight", "validation_users", "validation_retriever",
    "validation_zero_shot", "validation_final", "resumed_from", "train_seconds_complete",
    "adapter", "processes",
]  # fmt: skip


class Popular(Recommender):
    """Scores items by a fixed popularity vector: a deterministic stand-in retriever."""

    name = "fixed-pop"

    def fit(self, train, catalog, valid=None):  # noqa: ANN001, ANN201
        self.catalog = catalog
        counts = np.zeros(len(catalog))
        for seq in train:
            for item in seq.item_ids:
                counts[catalog.index(item)] += 1
        self.counts = counts
        return self

    def score(self, histories):  # noqa: ANN001, ANN201
        return np.tile(self.counts, (len(histories), 1))

    def save(self, path):  # noqa: ANN001, ANN201
        raise NotImplementedError

    @classmethod
    def load(cls, path, catalog):  # noqa: ANN001, ANN206
        raise NotImplementedError


# --------------------------------------------------------------------------- examples
def test_training_cases_take_the_longest_prefix_and_subsample(tiny_dataset) -> None:  # noqa: ANN001
    split = leave_one_out(tiny_dataset)
    config = ExampleConfig(prefixes_per_user=2, min_history=3)
    cases = training_cases(split.train, config)
    by_user: dict[str, list] = {}
    for case in cases:
        by_user.setdefault(case.user_id, []).append(case)
    for seq in split.train:
        if len(seq) <= 3:
            assert seq.user_id not in by_user
            continue
        mine = by_user[seq.user_id]
        assert len(mine) == min(2, len(seq) - 3)  # cuts 3 .. len-1
        assert mine[-1].history.item_ids == seq.item_ids[:-1]  # the longest prefix
        assert all(c.target == seq.item_ids[len(c.history)] for c in mine)
        assert all(len(c.history) >= 3 for c in mine)
    capped = training_cases(split.train, ExampleConfig(max_examples=8))
    assert len(capped) == 8
    assert capped == training_cases(split.train, ExampleConfig(max_examples=8))  # seeded


def test_shifted_cases_come_after_what_the_example_retriever_sees(tiny_dataset) -> None:  # noqa: ANN001
    split = leave_one_out(tiny_dataset)
    config = ExampleConfig(source="shifted", shift=2, min_history=3)
    exclude = {split.valid[0].user_id}
    cut_train, cases = shifted_cases(split.train, split.valid, config, exclude)
    assert [s.user_id for s in cut_train] == [s.user_id for s in split.train]
    valid = {c.user_id: c for c in split.valid}
    for full, cut in zip(split.train, cut_train, strict=True):
        mine = [c for c in cases if c.user_id == full.user_id]
        if full.user_id in exclude:
            assert cut.item_ids == full.item_ids and not mine  # early-stopping users give none
            continue
        n = len(full)
        start = max(3, n - 2)
        assert cut.item_ids == full.item_ids[: min(start, n)]
        targets = [c.target for c in mine]
        # the cut-off training items, then the validation target: none seen by the retriever
        assert targets == [*full.item_ids[start:], valid[full.user_id].target]
        assert all(len(case.history) >= len(cut) for case in mine)
    with pytest.raises(ValueError, match="shift"):
        ExampleConfig(source="shifted", shift=0)


def test_example_config_validation() -> None:
    with pytest.raises(ValueError, match="leave room for the target"):
        ExampleConfig(num_candidates=3, hard_negatives=3)
    with pytest.raises(ValueError, match="num_candidates"):
        ExampleConfig(num_candidates=27)
    with pytest.raises(ValueError, match="reason_fraction"):
        ExampleConfig(reason_fraction=1.5)
    with pytest.raises(ValueError, match="unknown example settings"):
        ExampleConfig.from_dict({"negatives": 3})


def test_candidate_lists_hold_target_hard_negatives_and_random_items(tiny_dataset) -> None:  # noqa: ANN001
    split = leave_one_out(tiny_dataset)
    catalog = tiny_dataset.catalog
    retriever = Popular().fit(split.train, catalog)
    cases = training_cases(split.train, SMALL_EXAMPLES)
    lists = candidate_lists(cases, catalog, retriever, SMALL_EXAMPLES, progress=False)
    top = [catalog.ids[j] for j in np.argsort(-retriever.counts, kind="stable")]
    for case, cands in zip(cases, lists, strict=True):
        assert case.target in cands and len(cands) == 5 == len(set(cands))
        assert not set(cands) & set(case.history.item_ids)
        blocked = {*case.history.item_ids, case.target}
        hard = [i for i in top if i not in blocked][:2]
        assert set(hard) <= set(cands)  # the hard negatives
        # listed in the retriever's order, so evidence never gives the target away
        counts = [retriever.counts[catalog.index(i)] for i in cands]
        assert counts == sorted(counts, reverse=True)
    again = candidate_lists(cases, catalog, retriever, SMALL_EXAMPLES, progress=False)
    assert again == lists


def test_build_examples_rank_and_reason_rows(tiny_dataset, tokenizer) -> None:  # noqa: ANN001
    split = leave_one_out(tiny_dataset)
    catalog = tiny_dataset.catalog
    builder = PromptBuilder(catalog, tokenizer, SMALL_PROMPT, tiny_dataset.profiles())
    cases = training_cases(split.train, SMALL_EXAMPLES)
    lists = candidate_lists(cases, catalog, None, SMALL_EXAMPLES, progress=False)
    config = ExampleConfig(**{**SMALL_EXAMPLES.to_dict(), "reason_fraction": 1.0})
    rows = build_examples(cases, lists, builder, config, ReasonFacts(catalog), progress=False)
    rank = [r for r in rows if isinstance(r, RankRow)]
    reason = [r for r in rows if isinstance(r, ReasonRow)]
    assert len(rank) == len(reason) == len(cases)
    targets = set()
    for row, case, cands in zip(rank, cases, lists, strict=True):
        assert row.labels == ("A", "B", "C", "D", "E")
        label = row.labels[row.target]
        assert f"({label}) {builder.item_text(case.target)}" in row.text
        assert all(f") {builder.item_text(c)}\n" in row.text for c in cands)
        assert sorted(row.ranks) == [1, 2, 3, 4, 5] and row.prior is None
        targets.add(row.target)
    assert len(targets) > 1  # the answer's position moves
    for row in reason:
        assert row.answer and row.text.endswith("<|im_start|>assistant\n")
    batch = RankCollator(tokenizer)(rank[:2] + reason[:1])
    assert batch["kind"].tolist() == [1, 1, 0]
    assert (batch["lm_labels"][:2] == -100).all() and (batch["lm_labels"][2] != -100).any()
    assert batch["attention_mask"][:, -1].all()  # left padded: the last position is real


def test_one_forward_loss_equals_the_two_pass_loss(fresh_llm, tiny_dataset) -> None:  # noqa: ANN001
    """A multi-process run computes a mixed batch's loss in one forward pass (DDP needs the same
    number of passes on every process): the loss and its gradient are the two passes' ones."""
    split = leave_one_out(tiny_dataset)
    catalog = tiny_dataset.catalog
    tokenizer = fresh_llm.tokenizer
    builder = PromptBuilder(catalog, tokenizer, SMALL_PROMPT, tiny_dataset.profiles())
    cases = training_cases(split.train, SMALL_EXAMPLES)[:2]
    lists = candidate_lists(cases, catalog, None, SMALL_EXAMPLES, progress=False)
    config = ExampleConfig(**{**SMALL_EXAMPLES.to_dict(), "reason_fraction": 1.0})
    rows = build_examples(cases, lists, builder, config, ReasonFacts(catalog), progress=False)
    batch = RankCollator(tokenizer)(rows)
    assert set(batch["kind"].tolist()) == {0, 1}
    weight = fresh_llm.model.get_input_embeddings().weight
    losses, grads = [], []
    for one in (False, True):
        loss = ranking_loss(fresh_llm.model, batch, one_forward=one)
        (grad,) = torch.autograd.grad(loss, weight)
        losses.append(float(loss.detach()))
        grads.append(grad)
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert torch.allclose(grads[1], grads[0], atol=1e-6)


def test_planned_steps_count_the_rows_of_every_process() -> None:
    """Epochs over the rows: with N processes each optimizer step takes N batches."""
    cfg = TrainingConfig(epochs=2, batch_size=4)
    assert planned_steps(40, cfg) == 20
    assert planned_steps(40, cfg, processes=2) == 10
    assert planned_steps(41, cfg, processes=2) == 12  # a partial last step per epoch
    assert planned_steps(40, TrainingConfig(max_steps=7), processes=4) == 7  # as asked


def test_training_rows_refuse_inconsistent_fields() -> None:
    row = RankRow("prompt", ("A", "B", "C"), target=2, ranks=(3, 1, 2))
    assert row.with_prior([0.5, -0.5, 0.0]).prior == (0.5, -0.5, 0.0)
    assert row.prior is None  # rows are frozen: with_prior returns a new one
    with pytest.raises(ValueError, match="target must index labels"):
        RankRow("prompt", ("A", "B"), target=2, ranks=(1, 2))
    with pytest.raises(ValueError, match="one rank per label"):
        RankRow("prompt", ("A", "B"), target=0, ranks=(1,))
    with pytest.raises(ValueError, match="one value per label"):
        row.with_prior([1.0])
    with pytest.raises(ValueError, match="at least 2 labels"):
        RankRow("prompt", ("A",), target=0, ranks=(1,))
    with pytest.raises(ValueError, match="non-empty answer"):
        ReasonRow("prompt", "")


def test_training_summary_round_trips_and_refuses_unknown_keys() -> None:
    summary = TrainingSummary(**{k: None for k in SUMMARY_KEYS})  # type: ignore[arg-type]
    assert list(summary.to_dict()) == SUMMARY_KEYS  # no adalora_ranks key for other methods
    assert TrainingSummary.from_dict(summary.to_dict()) == summary
    with pytest.raises(ValueError, match="unknown training summary keys"):
        TrainingSummary.from_dict({**summary.to_dict(), "stpes": 2})


# --------------------------------------------------------------------------- end to end
def _recipe(model_dir: str, method: str = "lora") -> Recipe:
    return Recipe(
        model=model_dir,
        dtype="float32",
        adapter=AdapterConfig(method=method, r=4, alpha=8, init_r=4, target_r=2, delta_t=1),  # type: ignore[arg-type]
        prompt=SMALL_PROMPT,
        examples=SMALL_EXAMPLES,
        training=TrainingConfig(
            max_steps=2,
            eval_steps=1,
            eval_users=5,
            batch_size=2,
            logging_steps=1,
            tensorboard=False,
            lr=1e-2,
            warmup=0.0,  # with warmup the first step has lr 0: checkpoint 1 would be untrained
        ),
        retrieval=RetrievalConfig(views=("pop",)),
    )


def _check_run(out: Path, summary: TrainingSummary, method: str) -> None:
    assert summary.method == method and summary.steps == 2
    assert summary.training_rows == 8 and summary.validation_users == 5
    assert summary.device == "cpu" and summary.dtype == "float32"
    assert 0 < summary.trainable_parameters < summary.total_parameters
    for part in (summary.validation_zero_shot, summary.validation_final):
        assert part is not None and 0.0 <= part["NDCG@10"] <= 1.0
    assert 0.0 <= summary.validation_retriever["NDCG@10"] <= 1.0
    written = json.loads((out / SUMMARY_FILE).read_text())
    assert written == summary.to_dict() and written["steps"] == 2
    assert list(written) == SUMMARY_KEYS  # the file's keys, in order, as bench/llm.py reads them
    assert read_training_summary(out) == summary
    assert (out / "recipe.yaml").is_file()
    if importlib.util.find_spec("matplotlib") is not None:  # the train extra's; else skipped
        assert_png(out / CURVE_FILE)
    record = read_adapter_record(out / "adapter")
    assert record.method == method
    assert PromptConfig.from_dict(record.prompt) == SMALL_PROMPT
    assert record.templates["listwise"] == "rank_listwise@v1"
    assert record.data_fingerprint and record.catalog_fingerprint
    # the base by its identity: a plain folder has no Hub id, so it is named by path + weights
    assert record.base is not None and record.base["id"] is None
    assert record.base["fingerprint"] == weights_fingerprint(record.base["path"])
    assert str(Path(record.base_model).resolve()) == record.base["path"]


def test_finetune_end_to_end_with_a_given_retriever(tiny_llm_dir, tiny_dataset, tmp_path) -> None:  # noqa: ANN001
    split = leave_one_out(tiny_dataset)
    retriever = Popular().fit(split.train, tiny_dataset.catalog)
    out = tmp_path / "run"
    recipe = _recipe(tiny_llm_dir)
    summary = finetune(recipe, tiny_dataset, out, retriever, progress=False)
    _check_run(out, summary, "lora")
    assert load_recipe(out / "recipe.yaml") == recipe  # the run's recipe is written faithfully
    assert record_matches(out, tiny_dataset)
    # the saved adapter is trained: it scores differently from the base model
    loaded = load_model(tiny_llm_dir, device="cpu", dtype="float32")
    builder = PromptBuilder(tiny_dataset.catalog, loaded.tokenizer, SMALL_PROMPT)
    prompt = builder.listwise(split.valid[0].history, tiny_dataset.catalog.ids[30:35])
    (base,) = LLMScorer(loaded.model, loaded.tokenizer, builder).score([prompt])
    tuned_model = load_adapters(loaded.model, {"tuned": out / "adapter"})
    (tuned,) = LLMScorer(tuned_model, loaded.tokenizer, builder).score([prompt])
    assert not np.allclose(base, tuned, atol=1e-5)


def record_matches(out: Path, dataset) -> bool:  # noqa: ANN001
    record = read_adapter_record(out / "adapter")
    return (
        record.data_fingerprint == dataset.fingerprint()
        and record.catalog_fingerprint == dataset.catalog.fingerprint()
    )


def test_finetune_adalora_reallocates_ranks_through_the_trainer(
    tiny_llm_dir, tiny_dataset, tmp_path
) -> None:  # noqa: ANN001
    split = leave_one_out(tiny_dataset)
    retriever = Popular().fit(split.train, tiny_dataset.catalog)
    recipe = _recipe(tiny_llm_dir, "adalora")
    recipe = Recipe(
        **{
            **recipe.__dict__,
            "training": TrainingConfig(
                **{**recipe.training.__dict__, "max_steps": 6, "eval_steps": 6}
            ),
        }
    )
    summary = finetune(recipe, tiny_dataset, tmp_path / "ada", retriever, progress=False)
    ranks = summary.adalora_ranks
    assert ranks is not None and ranks.matrices == 14
    assert 0 < ranks.total_rank < ranks.initial_total_rank == 14 * 4
    written = json.loads((tmp_path / "ada" / SUMMARY_FILE).read_text())
    assert written["adalora_ranks"] == {"matrices": 14, "total_rank": ranks.total_rank,
                                        "initial_total_rank": 56}  # fmt: skip
    # the pruned adapter loads back and scores (some matrices may have kept no rank at all)
    loaded = load_model(tiny_llm_dir, device="cpu", dtype="float32")
    model = load_adapters(loaded.model, {"ada": tmp_path / "ada" / "adapter"})
    builder = PromptBuilder(tiny_dataset.catalog, loaded.tokenizer, SMALL_PROMPT)
    case = split.valid[0]
    prompt = builder.listwise(case.history, tiny_dataset.catalog.ids[30:35])
    (scores,) = LLMScorer(model, loaded.tokenizer, builder).score([prompt])
    assert np.isfinite(scores).all() and np.exp(scores).sum() == pytest.approx(1, abs=1e-5)


def test_llmrec_finetune_command(tiny_llm_dir, tiny_dataset, tmp_path, capsys, monkeypatch) -> None:  # noqa: ANN001, E501
    from llmrec.cli.main import main

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    data = tmp_path / "data"
    tiny_dataset.save(data)
    out = tmp_path / "cli-run"
    code = main(
        [
            "finetune",
            "--recipe",
            str(Path(__file__).resolve().parents[2] / "finetune" / "prefix.yaml"),
            "--data",
            str(data),
            "--out",
            str(out),
            "--set",
            f"model={tiny_llm_dir}",
            "--set",
            "dtype=float32",
            "--set",
            "adapter.num_virtual_tokens=4",
            "--set",
            "training.max_steps=2",
            "--set",
            "training.eval_steps=1",
            "--set",
            "training.eval_users=5",
            "--set",
            "training.batch_size=2",
            "--set",
            "examples.num_candidates=5",
            "--set",
            "examples.hard_negatives=2",
            "--set",
            "examples.max_examples=8",
            "--set",
            "retrieval.views=[pop]",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "fine-tuning a prefix adapter" in printed and "adapter written to" in printed
    summary = read_training_summary(out)
    assert summary.method == "prefix" and summary.steps == 2
    assert read_adapter_record(out / "adapter").method == "prefix"
    # trained only to rank: its text is written by the base (writes_text)
    assert read_adapter_record(out / "adapter").training["reason_fraction"] == 0.0
    # training curves, the zero-shot evaluation's included, land in the run's folder only
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert list(cwd.iterdir()) == []
    # the final evaluation's too (the callback reopens its writer after training)
    assert not (out / "checkpoints" / "runs").exists()


def test_finetune_on_validation_targets_keeps_the_early_stopping_users_out(
    tiny_llm_dir, tiny_dataset, tmp_path
) -> None:  # noqa: ANN001
    from dataclasses import replace

    from llmrec.ranking.tuning import tuning_cases

    split = leave_one_out(tiny_dataset)
    retriever = Popular().fit(split.train, tiny_dataset.catalog)
    out = tmp_path / "run"
    base = _recipe(tiny_llm_dir)
    recipe = replace(
        base,
        examples=replace(base.examples, source="valid", max_examples=None),
        prompt=replace(base.prompt, include_evidence=True),
    )
    summary = finetune(recipe, tiny_dataset, out, retriever, progress=False)
    heldout = read_adapter_record(out / "adapter").training["heldout_users"]
    assert len(heldout) == 5 == summary.validation_users
    # every other validation user became a training example, the held-out ones did not
    assert summary.training_rows == len(split.valid) - 5
    tune = tuning_cases(split.valid, out / "adapter")
    assert sorted(c.user_id for c in tune) == sorted(heldout)
    # an adapter trained on training prefixes may be tuned on every validation user
    other = tmp_path / "train-source"
    finetune(base, tiny_dataset, other, retriever, progress=False)
    assert len(tuning_cases(split.valid, other / "adapter")) == len(split.valid)


def test_finetune_resumes_from_the_last_checkpoint(tiny_llm_dir, tiny_dataset, tmp_path) -> None:  # noqa: ANN001
    from dataclasses import replace

    split = leave_one_out(tiny_dataset)
    retriever = Popular().fit(split.train, tiny_dataset.catalog)
    out = tmp_path / "run"
    recipe = _recipe(tiny_llm_dir)
    first = finetune(recipe, tiny_dataset, out, retriever, progress=False)
    elapsed = out / "checkpoints" / "checkpoint-2" / ELAPSED_FILE
    recorded = json.loads(elapsed.read_text())
    assert recorded["step"] == 2 and 0 < recorded["train_seconds"] <= first.train_seconds + 0.1
    # the resumed run adds its own time to what the checkpoint says the first run spent
    elapsed.write_text(json.dumps({"train_seconds": 1000.0, "step": 2}))
    longer = replace(recipe, training=replace(recipe.training, max_steps=3))
    summary = finetune(longer, tiny_dataset, out, retriever, resume=True, progress=False)
    assert summary.resumed_from and summary.resumed_from.endswith("checkpoint-2")
    assert summary.steps == 3 and summary.validation_zero_shot is None
    assert 1000.0 < summary.train_seconds < 1000.0 + first.train_seconds * 10
    assert summary.train_seconds_complete is True
    # a checkpoint from before times were recorded: the summary says its time is partial
    (out / "checkpoints" / "checkpoint-3" / ELAPSED_FILE).unlink()
    again = replace(recipe, training=replace(recipe.training, max_steps=4))
    summary = finetune(again, tiny_dataset, out, retriever, resume=True, progress=False)
    assert summary.train_seconds < 1000.0 and summary.train_seconds_complete is False


def test_require_retrieved_keeps_only_cases_the_retriever_recalls(tiny_dataset) -> None:  # noqa: ANN001
    from dataclasses import replace

    split = leave_one_out(tiny_dataset)
    catalog = tiny_dataset.catalog
    retriever = Popular().fit(split.train, catalog)
    cases = training_cases(split.train, SMALL_EXAMPLES)
    config = replace(SMALL_EXAMPLES, require_retrieved=True, hard_negatives=4)
    lists = candidate_lists(cases, catalog, retriever, config, progress=False)
    assert any(c is None for c in lists) and any(c is not None for c in lists)
    order = [catalog.ids[j] for j in np.argsort(-retriever.counts, kind="stable")]
    for case, cands in zip(cases, lists, strict=True):
        top = [i for i in order if i not in case.history.item_ids][:5]
        if cands is None:
            assert case.target not in top
        else:  # exactly the retriever's top 5 (history excluded), which holds the target
            assert set(cands) == set(top) and case.target in cands
    with pytest.raises(ValueError, match="needs a retriever"):
        candidate_lists(cases, catalog, None, config, progress=False)


def test_finetune_shifted_source_fits_its_retriever_once(
    tiny_llm_dir, tiny_dataset, tmp_path, monkeypatch
) -> None:  # noqa: ANN001
    from dataclasses import replace

    import llmrec.retrieval.saved as saved_module

    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path / "cache"))
    split = leave_one_out(tiny_dataset)
    retriever = Popular().fit(split.train, tiny_dataset.catalog)
    base = _recipe(tiny_llm_dir)
    recipe = replace(
        base,
        examples=replace(base.examples, source="shifted", shift=2, hard_negatives=4,
                         max_examples=None),
    )  # fmt: skip
    fitted: list[int] = []
    real_fit = saved_module.fit_retriever

    def counting_fit(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        fitted.append(len(args[0]))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(saved_module, "fit_retriever", counting_fit)
    summary = finetune(recipe, tiny_dataset, tmp_path / "a", retriever, progress=False)
    assert fitted == [len(split.train)]  # the cut sequences, one per user
    heldout = set(read_adapter_record(tmp_path / "a" / "adapter").training["heldout_users"])
    _, cases = shifted_cases(split.train, split.valid, recipe.examples, heldout)
    assert 0 < summary.training_rows <= len(cases)
    (cached,) = (tmp_path / "cache" / "example-retrievers").iterdir()
    assert saved_module.read_manifest(cached)["views"] == ["pop"]  # a retriever folder
    # a second adapter on the same data and settings reuses the cached retriever
    again = finetune(recipe, tiny_dataset, tmp_path / "b", retriever, progress=False)
    assert fitted == [len(split.train)]
    assert again.training_rows == summary.training_rows


# --------------------------------------------------------------------------- residual training
def _rank_rows(target_ranks: list[int], n: int = 5) -> list[RankRow]:
    return [
        RankRow("prompt", tuple("ABCDE")[:n], target=r - 1, ranks=tuple(range(1, n + 1)))
        for r in target_ranks
    ]


def test_residual_weight_follows_how_often_the_retriever_is_right() -> None:
    always_first = fit_residual_weight(_rank_rows([1] * 20))
    uniform = fit_residual_weight(_rank_rows([1, 2, 3, 4, 5] * 4))
    mostly_first = fit_residual_weight(_rank_rows([1] * 10 + [2, 3, 4, 5, 2, 3, 4, 5, 2, 3]))
    assert always_first == 8.0  # the grid's top: no finite weight is sure enough
    assert uniform == 0.0
    assert 0.0 < mostly_first < 8.0
    reason = ReasonRow("x", "y")
    rows = with_residual_prior([*_rank_rows([2, 3]), reason], 2.0)
    prior = np.array(rows[0].prior)
    assert np.all(np.diff(prior) < 0) and abs(prior.sum()) < 1e-9  # rank 1 highest, centred
    assert rows[2] is reason  # reason rows carry no prior
    with pytest.raises(ValueError, match="no rank rows"):
        fit_residual_weight([reason])


def _model_and_rows(model_dir: str, dataset, n: int):  # noqa: ANN001, ANN202
    loaded = load_model(model_dir, device="cpu", dtype="float32")
    split = leave_one_out(dataset)
    builder = PromptBuilder(dataset.catalog, loaded.tokenizer, SMALL_PROMPT)
    cases = training_cases(split.train, SMALL_EXAMPLES)[:n]
    lists = candidate_lists(cases, dataset.catalog, None, SMALL_EXAMPLES, progress=False)
    return loaded, build_examples(cases, lists, builder, SMALL_EXAMPLES, progress=False)


def _sure_of(rows: list[RankRow], shift: int) -> list[RankRow]:
    """The rows with a prior sure of the candidate ``shift`` labels after the target."""
    out = []
    for row in rows:
        pick = (row.target + shift) % len(row.labels)
        out.append(row.with_prior([50.0 if i == pick else 0.0 for i in range(len(row.labels))]))
    return out


def test_residual_loss_reads_llm_scores_plus_the_prior(tiny_llm_dir, tiny_dataset) -> None:  # noqa: ANN001
    loaded, rows = _model_and_rows(tiny_llm_dir, tiny_dataset, 2)
    collate = RankCollator(loaded.tokenizer)

    def loss(batch_rows: list) -> float:  # noqa: ANN001
        return float(ranking_loss(loaded.model, collate(batch_rows)).detach())

    plain = loss(rows)
    sure = loss(_sure_of(rows, 0))  # a prior that is sure of the target: the loss all but vanishes
    wrong = loss(_sure_of(rows, 1))  # and one sure of a wrong candidate: the loss explodes
    assert sure < 0.01 < plain < wrong


def test_residual_recipe_needs_retrieved_candidates() -> None:
    with pytest.raises(ValueError, match="require_retrieved"):
        Recipe.from_dict({"training": {"residual": True}})
    recipe = Recipe.from_dict(
        {"training": {"residual": True}, "examples": {"require_retrieved": True}}
    )
    assert recipe.training.residual


def test_finetune_residual_ranks_fused_at_the_trained_weight(
    tiny_llm_dir, tiny_dataset, tmp_path
) -> None:  # noqa: ANN001
    from dataclasses import replace

    from llmrec.ranking.settings import read_ranker_settings

    split = leave_one_out(tiny_dataset)
    retriever = Popular().fit(split.train, tiny_dataset.catalog)
    base = _recipe(tiny_llm_dir)
    recipe = replace(
        base,
        examples=replace(base.examples, hard_negatives=4, require_retrieved=True),
        training=replace(base.training, residual=True),
    )
    summary = finetune(recipe, tiny_dataset, tmp_path / "run", retriever, progress=False)
    weight = summary.residual_weight
    assert weight is not None and 0.0 <= weight <= 8.0
    adapter = tmp_path / "run" / "adapter"
    assert read_adapter_record(adapter).training["residual_weight"] == weight
    assert read_ranker_settings(adapter).fusion_weight == weight


def test_residual_scale_shrinks_the_llms_say(tiny_llm_dir, tiny_dataset) -> None:  # noqa: ANN001
    loaded, plain = _model_and_rows(tiny_llm_dir, tiny_dataset, 3)
    rows = [row.with_prior([0.0] * len(row.labels)) for row in plain]
    losses = [
        float(ranking_loss(loaded.model, RankCollator(loaded.tokenizer, scale=s)(rows)).detach())
        for s in (1.0, 1e-4)
    ]
    # at a tiny scale every candidate is as likely as the prior (here flat) makes it
    assert abs(losses[1] - np.log(5)) < 1e-3 and abs(losses[0] - np.log(5)) > 1e-3
    assert "prior" not in RankCollator(loaded.tokenizer)(plain)  # no prior: a plain ranker
    with pytest.raises(ValueError, match="residual_scale"):
        TrainingConfig(residual_scale=0.0)


def test_adalora_best_checkpoint_from_before_pruning_is_reloaded_with_its_ranks(
    tiny_llm_dir, tiny_dataset, tmp_path, monkeypatch
) -> None:  # noqa: ANN001
    """The best validation score comes first, while AdaLoRA still holds more rank than at the
    end: loading that checkpoint into the pruned live adapter used to fail on shapes."""
    from dataclasses import replace

    from llmrec.finetune.validation import Validation

    scores = iter([0.9, 0.8, 0.5, 0.4, 0.3, 0.2, 0.1])  # zero-shot, steps 2, 4, 6, final

    def falling(self, scorer):  # noqa: ANN001, ANN202
        return {"NDCG@10": next(scores)}

    monkeypatch.setattr(Validation, "evaluate", falling)
    split = leave_one_out(tiny_dataset)
    retriever = Popular().fit(split.train, tiny_dataset.catalog)
    base = _recipe(tiny_llm_dir, "adalora")
    recipe = replace(base, training=replace(base.training, max_steps=6, eval_steps=2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = finetune(recipe, tiny_dataset, tmp_path / "ada", retriever, progress=False)
    # peft's false "rank_pattern keys ... were ignored" when the best checkpoint is reloaded
    assert not [w for w in caught if "rank_pattern" in str(w.message)]
    best = Path(summary.best_checkpoint)
    assert best.name == "checkpoint-2"
    saved = json.loads((tmp_path / "ada" / "adapter" / "adapter_config.json").read_text())
    at_best = json.loads((best / "adapter_config.json").read_text())
    last = json.loads((best.parent / "checkpoint-6" / "adapter_config.json").read_text())
    assert saved["rank_pattern"] == at_best["rank_pattern"] != last["rank_pattern"]
    # what was saved scores like the best checkpoint loaded on its own
    builder = PromptBuilder(tiny_dataset.catalog, load_model(tiny_llm_dir).tokenizer, SMALL_PROMPT)
    prompt = builder.listwise(split.valid[0].history, tiny_dataset.catalog.ids[30:35])
    got = []
    for folder in (tmp_path / "ada" / "adapter", best):
        from peft import PeftModel

        loaded = load_model(tiny_llm_dir, device="cpu", dtype="float32")
        model = PeftModel.from_pretrained(loaded.model, str(folder))
        got.append(LLMScorer(model, loaded.tokenizer, builder).score([prompt])[0])
    np.testing.assert_allclose(got[0], got[1], atol=1e-5)
