"""Fine-tune an adapter for listwise ranking (and optionally reasons) with transformers' Trainer.

:func:`finetune` runs the whole recipe, one step per function below: split the data, get a
retriever (a saved one or fitted from the recipe), build typed training rows with the serving
prompt builder (:mod:`~llmrec.finetune.examples`), give them the retriever's prior for a residual
ranker (:mod:`~llmrec.finetune.residual`), attach the adapter, train with the ranking loss
(:mod:`~llmrec.finetune.losses`) and validation NDCG@10 over retrieved candidates
(:mod:`~llmrec.finetune.validation`) for early stopping, keep checkpoints (``--resume`` continues
from the last one), log to TensorBoard (:mod:`~llmrec.finetune.callbacks`), draw
``training-curve.png`` (:mod:`~llmrec.finetune.curves`), and write the adapter atomically with its
llmrec record and a :class:`~llmrec.finetune.summary.TrainingSummary`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrec.data.dataset import RecDataset
from llmrec.data.records import EvalCase
from llmrec.data.splits import Split, leave_one_out
from llmrec.finetune import processes
from llmrec.finetune.callbacks import training_callbacks
from llmrec.finetune.collate import RankCollator
from llmrec.finetune.curves import CURVE_FILE, write_training_curve
from llmrec.finetune.examples import (
    TrainingRow,
    build_examples,
    candidate_lists,
    shifted_cases,
    training_cases,
)
from llmrec.finetune.losses import orthogonal_penalty, ranking_loss
from llmrec.finetune.recipe import Recipe, TrainingConfig
from llmrec.finetune.residual import fit_residual_weight, with_residual_prior
from llmrec.finetune.retrievers import fit_recipe_retriever, shifted_retriever
from llmrec.finetune.run import (
    planned_steps,
    report_evaluation,
    resume_point,
    seed_everything,
    step_of,
    strip_prefix,
    training_arguments,
    yaml_text,
)
from llmrec.finetune.summary import AdaLoRARanks, TrainingSummary, peak_memory_mb
from llmrec.finetune.validation import Validation, build_validation, heldout_cases
from llmrec.io import atomic_write_text
from llmrec.models.adapters import (
    AdapterRecord,
    adalora_ranks,
    attach_adapter,
    quiet_adalora_rank_patterns,
    save_adapter,
    trainable_parameters,
)
from llmrec.models.identity import describe_base, portable_name
from llmrec.models.loader import LoadedModel, load_model
from llmrec.prompts.builder import PromptBuilder
from llmrec.ranking.reasons import ReasonFacts
from llmrec.ranking.scorer import LLMScorer
from llmrec.ranking.settings import RankerSettings, write_ranker_settings
from llmrec.recommender import Recommender

logger = logging.getLogger(__name__)

#: The recipe as the run read it, in its output folder.
RECIPE_FILE = "recipe.yaml"


# --------------------------------------------------------------------------- the Trainer
def make_trainer_class() -> type:
    from transformers import Trainer

    class RecTrainer(Trainer):
        """Trainer with the ranking loss and a ranking evaluation (NDCG@10 on validation)."""

        def __init__(self, *args, validation=None, scorer=None, orth_reg_weight=0.0, **kwargs):
            super().__init__(*args, **kwargs)
            self.validation = validation
            self.scorer = scorer
            self.orth_reg_weight = orth_reg_weight

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # one forward pass per batch in a multi-process run (DistributedDataParallel)
            loss = ranking_loss(model, inputs, one_forward=processes.distributed())
            if self.orth_reg_weight:
                penalty = orthogonal_penalty(model, self.orth_reg_weight)
                if penalty is not None:
                    loss = loss + penalty
            return (loss, None) if return_outputs else loss

        def _load_best_model(self):  # noqa: ANN202
            """AdaLoRA prunes ranks while it trains, so an earlier best checkpoint no longer fits
            the live adapter's shapes (loading it in place fails): rebuild the adapter from the
            checkpoint, whose config carries its rank pattern, on the unwrapped base model."""
            config = getattr(self.model, "peft_config", {}).get("default")
            if getattr(config, "peft_type", None) != "ADALORA":
                return super()._load_best_model()
            from peft import PeftModel

            best = self.state.best_model_checkpoint
            logger.info("reloading the best AdaLoRA checkpoint %s with its own ranks", best)
            base = self.model.unload()
            with quiet_adalora_rank_patterns():
                self.model = PeftModel.from_pretrained(base, best, is_trainable=False)
            self.model_wrapped = self.model
            if self.scorer is not None:
                self.scorer.model = self.model
            return None

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            was_training = self.model.training
            self.model.eval()
            start = time.perf_counter()
            raw = self.validation.evaluate(self.scorer)
            if was_training:
                self.model.train()
            return report_evaluation(self, raw, metric_key_prefix, time.perf_counter() - start)

    return RecTrainer


# --------------------------------------------------------------------------- the whole run
def finetune(
    recipe: Recipe,
    dataset: RecDataset,
    out: str | os.PathLike[str],
    retriever: Recommender | None = None,
    resume: bool = False,
    progress: bool = True,
) -> TrainingSummary:
    """Train an adapter as ``recipe`` says; returns the training summary (also written).

    A ``family: nextitem`` recipe trains the next-item LLM instead
    (:func:`llmrec.finetune.nextitem.train_nextitem`); a given ``retriever``'s SASRec view then
    gives the item-ID start, so SASRec is not fitted twice."""
    if recipe.family == "nextitem":
        from llmrec.finetune.nextitem import train_nextitem

        sasrec = getattr(retriever, "views", {}).get("sasrec") if retriever is not None else None
        return train_nextitem(recipe, dataset, out, resume, progress, sasrec=sasrec)
    started = time.perf_counter()
    processes.init()  # launched with accelerate: join the other processes
    main = processes.is_main()
    out = Path(out)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / RECIPE_FILE, yaml_text(recipe.to_dict()))
    split = leave_one_out(dataset)
    quant = recipe.adapter.quantization if recipe.adapter.quantized else None
    with processes.main_first():  # the default model is fetched and converted once
        loaded = load_model(recipe.model, device=_device(), dtype=recipe.dtype, quantization=quant)
    builder = PromptBuilder(dataset.catalog, loaded.tokenizer, recipe.prompt, dataset.profiles())
    valid_cases = heldout_cases(split.valid, recipe.training)
    # the retriever, the training rows and the validation prompts: made once, by the main
    # process, and handed to the others
    rows, validation, residual_weight = processes.on_main(
        _prepare, recipe, dataset, split, retriever, builder, valid_cases, progress
    )

    total_steps = planned_steps(len(rows), recipe.training, processes.world_size())
    seed_everything(recipe.training.seed)  # the adapter's random start follows the seed
    model = attach_adapter(loaded.model, recipe.adapter, total_steps=total_steps)
    processes.sync_trainable(model)
    trainable, total = trainable_parameters(model)
    logger.info(
        "%s adapter: %d trainable of %d parameters", recipe.adapter.method, trainable, total
    )
    checkpoint, before = processes.on_main(resume_point, out, resume)
    trainer = _make_trainer(
        recipe, loaded, model, builder, rows, validation, out, total_steps, before or 0.0, progress
    )
    run = _train(trainer, checkpoint, before or 0.0)

    def write_outputs() -> TrainingSummary:
        write_training_curve(
            trainer.state.log_history,
            out / CURVE_FILE,
            f"{recipe.adapter.method} adapter (listwise)",
        )
        adapter_dir = _save_adapter(
            trainer, out, recipe, builder, dataset, valid_cases, residual_weight
        )
        summary = TrainingSummary(
            method=recipe.adapter.method,
            base_model=recipe.model,
            dtype=str(loaded.dtype).replace("torch.", ""),
            device=loaded.device,
            quantization=quant.to_dict() if quant else None,
            trainable_parameters=trainable,
            total_parameters=total,
            training_rows=len(rows),
            steps=trainer.state.global_step,
            planned_steps=total_steps,
            train_seconds=round(run.train_seconds, 1),
            seconds_per_step=round(run.seconds_per_step, 2),
            wall_seconds=round(time.perf_counter() - started, 1),
            peak_memory_mb=round(peak_memory_mb(loaded.device), 1),
            adapter_bytes=sum(p.stat().st_size for p in adapter_dir.rglob("*") if p.is_file()),
            train_loss=run.train_loss,
            best_checkpoint=trainer.state.best_model_checkpoint,
            residual_weight=residual_weight,
            validation_users=len(valid_cases),
            validation_retriever=validation.retriever_metrics,
            validation_zero_shot=run.zero_shot,
            validation_final=run.final,
            resumed_from=checkpoint,
            train_seconds_complete=before is not None,
            adapter=str(adapter_dir),
            adalora_ranks=_adalora_ranks(trainer.model, recipe),
            processes=processes.world_size(),
        )
        summary.write(out)
        return summary

    # only the main process writes; every process returns the summary it wrote
    return processes.on_main(write_outputs)


def _device() -> str:
    """Where the model goes: the CPU when the launcher asked for CPU processes, else auto."""
    return "cpu" if processes.launched_on_cpu() else "auto"


def _prepare(
    recipe: Recipe,
    dataset: RecDataset,
    split: Split,
    retriever: Recommender | None,
    builder: PromptBuilder,
    valid_cases: Sequence[EvalCase],
    progress: bool,
) -> tuple[list[TrainingRow], Validation, float | None]:
    """The training rows, the validation prompts and (residual training) the fusion weight, from
    the given retriever or one fitted as the recipe says."""
    if retriever is None:
        logger.info("fitting the retriever (%s)", ",".join(recipe.retrieval.views))
        retriever = fit_recipe_retriever(recipe, split.train, split.valid, dataset.catalog)
    rows = _training_rows(recipe, dataset, split, retriever, builder, valid_cases, progress)
    validation = build_validation(valid_cases, retriever, builder, recipe.examples.num_candidates)
    residual_weight = None
    if recipe.training.residual:
        rows, residual_weight = _residual_rows(rows, recipe.training)
        validation.residual_weight = residual_weight
    logger.info(
        "%d validation users (retriever alone: NDCG@10 %.4f)",
        len(valid_cases), validation.retriever_metrics["NDCG@10"],
    )  # fmt: skip
    return rows, validation, residual_weight


# --------------------------------------------------------------------------- training rows
def _example_cases(
    recipe: Recipe,
    dataset: RecDataset,
    split: Split,
    retriever: Recommender,
    valid_cases: Sequence[EvalCase],
) -> tuple[list[EvalCase], Recommender]:
    """The cases the recipe's example source gives, with the retriever that proposes their
    candidates (the "shifted" source fits its own); the held-out validation users give none."""
    cfg = recipe.examples
    held_out = {c.user_id for c in valid_cases}
    cases = training_cases(split.train, cfg) if cfg.source in ("train", "both") else []
    if cfg.source in ("valid", "both"):
        cases += [c for c in split.valid if c.user_id not in held_out]
    if cfg.source != "shifted":
        return cases, retriever
    cut_train, cases = shifted_cases(split.train, split.valid, cfg, held_out)
    logger.info(
        "fitting a second retriever on the training sequences minus their last %d items "
        "(it proposes the candidates of %d cases it has never seen)", cfg.shift, len(cases),
    )  # fmt: skip
    return cases, shifted_retriever(recipe, dataset, cut_train, valid_cases)


def _training_rows(
    recipe: Recipe,
    dataset: RecDataset,
    split: Split,
    retriever: Recommender,
    builder: PromptBuilder,
    valid_cases: Sequence[EvalCase],
    progress: bool,
) -> list[TrainingRow]:
    """The run's training rows: cases with their candidate lists (those whose target the
    retriever misses dropped when ``require_retrieved``), rendered by ``builder``."""
    cfg = recipe.examples
    cases, example_retriever = _example_cases(recipe, dataset, split, retriever, valid_cases)
    if not cases:
        raise ValueError("no training examples: the sequences are shorter than min_history")
    lists = candidate_lists(cases, dataset.catalog, example_retriever, cfg, progress=progress)
    kept = [i for i, c in enumerate(lists) if c is not None]
    if len(kept) < len(cases):
        logger.info(
            "%d of %d cases kept: the retriever's top %d holds their target",
            len(kept), len(cases), cfg.num_candidates,
        )  # fmt: skip
    cases = [cases[i] for i in kept]
    candidates = [lists[i] for i in kept]
    if not cases:
        raise ValueError("no training examples left: the retriever recalls no target")
    reasons = ReasonFacts(dataset.catalog) if cfg.reason_fraction else None
    rows = build_examples(cases, candidates, builder, cfg, reasons, progress=progress)
    logger.info("%d training rows from %d prefixes", len(rows), len(cases))
    return rows


def _residual_rows(
    rows: Sequence[TrainingRow], training: TrainingConfig
) -> tuple[list[TrainingRow], float]:
    """The rows with the retriever's rank prior, and the weight the adapter then ranks fused at."""
    prior_weight = fit_residual_weight(rows)
    # loss logits: scale * (llm + prior), i.e. scale * llm + prior_weight * z
    residual_weight = prior_weight / training.residual_scale
    logger.info(
        "residual training: the retriever's rank prior fits with weight %.2f; the LLM's "
        "log-probs enter at scale %g, so the adapter ranks fused at weight %.2f (validation "
        "scores that fused ranking)",
        prior_weight, training.residual_scale, residual_weight,
    )  # fmt: skip
    return with_residual_prior(rows, residual_weight), residual_weight


# --------------------------------------------------------------------------- training
def _make_trainer(
    recipe: Recipe,
    loaded: LoadedModel,
    model: Any,
    builder: PromptBuilder,
    rows: list[TrainingRow],
    validation: Validation,
    out: Path,
    total_steps: int,
    elapsed: float,
    progress: bool,
) -> Any:
    """The RecTrainer of the run, its callbacks attached."""
    tcfg = recipe.training
    adalora = recipe.adapter.method == "adalora"
    return make_trainer_class()(
        model=model,
        args=training_arguments(tcfg, loaded, out, total_steps, progress),
        # typed rows, not a datasets.Dataset: with remove_unused_columns=False the DataLoader
        # hands them to the collator as they are
        train_dataset=rows,
        eval_dataset=validation.prompts,
        data_collator=RankCollator(
            loaded.tokenizer, scale=tcfg.residual_scale if tcfg.residual else 1.0
        ),
        callbacks=training_callbacks(tcfg, recipe.adapter.method, out, elapsed),
        validation=validation,
        scorer=LLMScorer(model, loaded.tokenizer, builder, batch_size=tcfg.batch_size),
        orth_reg_weight=recipe.adapter.orth_reg_weight if adalora else 0.0,
    )


@dataclass(frozen=True)
class _Run:
    """What training and the evaluations around it gave."""

    train_seconds: float
    seconds_per_step: float
    train_loss: float
    zero_shot: dict[str, float] | None
    final: dict[str, float] | None


def _train(trainer: Any, checkpoint: str | None, before: float) -> _Run:
    """Evaluate zero-shot (a fresh run only), train from ``checkpoint`` (``before`` training
    seconds recorded in it), evaluate the best model."""
    zero_shot = None
    if checkpoint is None:
        zero_shot = trainer.evaluate(metric_key_prefix="zero_shot")
    train_start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    run_seconds = time.perf_counter() - train_start
    final = trainer.evaluate(metric_key_prefix="final")
    return _Run(
        train_seconds=before + run_seconds,
        # over the steps this process ran: a resumed run repeats none of the earlier ones
        seconds_per_step=run_seconds / max(1, result.global_step - step_of(checkpoint)),
        train_loss=result.training_loss,
        zero_shot=strip_prefix(zero_shot, "zero_shot_"),
        final=strip_prefix(final, "final_"),
    )


# --------------------------------------------------------------------------- outputs
def _save_adapter(
    trainer: Any,
    out: Path,
    recipe: Recipe,
    builder: PromptBuilder,
    dataset: RecDataset,
    valid_cases: Sequence[EvalCase],
    residual_weight: float | None,
) -> Path:
    """Write the trained adapter to ``out/adapter`` with its llmrec record (and, for a residual
    ranker, the fusion weight it ranks at); returns its folder."""
    base = describe_base(recipe.model)  # the Hub id, weights fingerprint and folder
    record = AdapterRecord(
        method=recipe.adapter.method,
        adapter=recipe.adapter.to_dict(),
        base_model=portable_name(recipe.model, base),
        base=base.to_dict(),
        prompt=recipe.prompt.to_dict(),
        templates=builder.template_versions,
        data_fingerprint=dataset.fingerprint(),
        catalog_fingerprint=dataset.catalog.fingerprint(),
        training={
            "steps": trainer.state.global_step,
            "best_metric": trainer.state.best_metric,
            "example_source": recipe.examples.source,
            # validation users never trained on: tune the fusion weight on these
            "heldout_users": [c.user_id for c in valid_cases],
            "residual_weight": residual_weight,
            # 0: trained only to rank; text generation then runs on the base (writes_text)
            "reason_fraction": recipe.examples.reason_fraction,
        },
    )
    adapter_dir = save_adapter(trainer.model, out / "adapter", record)
    if residual_weight is not None:
        # the adapter's scores are a correction to the retriever: rank fused at the trained weight
        write_ranker_settings(adapter_dir, RankerSettings(residual_weight, "residual training"))
    return adapter_dir


def _adalora_ranks(model: Any, recipe: Recipe) -> AdaLoRARanks | None:
    """Where AdaLoRA's rank budget ended up (None for other methods)."""
    if recipe.adapter.method != "adalora":
        return None
    ranks = adalora_ranks(model)
    return AdaLoRARanks(
        matrices=len(ranks),
        total_rank=int(sum(ranks.values())),
        initial_total_rank=len(ranks) * recipe.adapter.init_r,
    )
