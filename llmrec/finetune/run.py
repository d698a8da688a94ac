"""Plumbing shared by the fine-tuning runs of both LLM families (listwise ranker,
:mod:`~llmrec.finetune.trainer`; next-item LLM, :mod:`~llmrec.finetune.nextitem`): the planned
steps, transformers' TrainingArguments, where ``--resume`` continues from, and small helpers.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from llmrec.finetune.callbacks import elapsed_before
from llmrec.finetune.recipe import TrainingConfig
from llmrec.models.loader import LoadedModel

logger = logging.getLogger(__name__)


def planned_steps(n_rows: int, training: TrainingConfig, processes: int = 1) -> int:
    """Optimizer steps of the run: ``max_steps``, or ``epochs`` over ``n_rows`` when each step
    takes ``batch_size`` x ``grad_accum`` rows on each of ``processes`` processes."""
    if training.max_steps > 0:
        return training.max_steps
    rows_per_step = training.batch_size * training.grad_accum * max(1, processes)
    steps_per_epoch = math.ceil(n_rows / rows_per_step)
    return math.ceil(steps_per_epoch * training.epochs)


def training_arguments(
    training: TrainingConfig, loaded: LoadedModel, out: Path, total_steps: int, progress: bool
) -> Any:
    """transformers' TrainingArguments for the recipe: evaluate and checkpoint every
    ``eval_steps``; end on the best checkpoint by validation NDCG@10 (``keep: best``) or on the
    last weights (``keep: last``)."""
    from transformers import TrainingArguments

    use_cpu = loaded.device == "cpu"
    bf16 = not use_cpu and loaded.dtype.is_floating_point and str(loaded.dtype) == "torch.bfloat16"
    return TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=training.epochs,
        max_steps=total_steps,
        per_device_train_batch_size=training.batch_size,
        gradient_accumulation_steps=training.grad_accum,
        learning_rate=training.lr,
        weight_decay=training.weight_decay,
        warmup_steps=training.warmup,
        lr_scheduler_type=training.scheduler,
        logging_steps=training.logging_steps,
        eval_strategy="steps",
        eval_steps=training.eval_steps,
        save_strategy="steps",
        save_steps=training.eval_steps,
        save_total_limit=training.save_total_limit,
        load_best_model_at_end=training.keep == "best",
        metric_for_best_model="eval_NDCG@10",
        greater_is_better=True,
        seed=training.seed,
        use_cpu=use_cpu,
        bf16=bf16,
        # curves go through our own TensorBoard callback: transformers' would write to
        # ./runs/ of the working directory when the zero-shot evaluation logs before training
        report_to="none",
        remove_unused_columns=False,
        label_names=["target"],
        dataloader_num_workers=0,
        disable_tqdm=not progress,
        max_grad_norm=1.0,
    )


def resume_point(out: Path, resume: bool) -> tuple[str | None, float | None]:
    """With ``resume``, the run's last checkpoint (None, with a warning, when there is none), and
    the training seconds recorded in it (0 without a checkpoint; None, with a warning, when the
    checkpoint recorded none)."""
    checkpoint = None
    if resume:
        from transformers.trainer_utils import get_last_checkpoint

        checkpoint = get_last_checkpoint(str(out / "checkpoints"))
        if checkpoint is None:
            logger.warning(
                "--resume: no checkpoint in %s, starting from scratch", out / "checkpoints"
            )
    before = elapsed_before(checkpoint)
    if before is None:
        logger.warning(
            "%s records no training time: train_seconds will count only the resumed part",
            checkpoint,
        )
    return checkpoint, before


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch before the adapter and heads are drawn: the Trainer seeds
    only when it is built, after them, so without this a run's random start came from whatever
    state torch was in, not from its ``training.seed``."""
    from transformers import set_seed

    set_seed(seed)


def step_of(checkpoint: str | None) -> int:
    return 0 if checkpoint is None else int(Path(checkpoint).name.rsplit("-", 1)[1])


def strip_prefix(metrics: dict[str, float] | None, prefix: str) -> dict[str, float] | None:
    if metrics is None:
        return None
    return {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}


def yaml_text(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def report_evaluation(
    trainer: Any, raw: dict[str, float], prefix: str, seconds: float
) -> dict[str, float]:
    """Log a validation's metrics as ``PREFIX_metric`` (and its runtime) through ``trainer``;
    an ``eval`` report also reaches the callbacks (early stopping, best checkpoint), the
    zero-shot and final reports do not. Both families' Trainers end their evaluate() here."""
    metrics = {f"{prefix}_{k}": float(v) for k, v in raw.items()}
    metrics[f"{prefix}_runtime"] = seconds
    trainer.log(metrics)
    if prefix == "eval":
        trainer.control = trainer.callback_handler.on_evaluate(
            trainer.args, trainer.state, trainer.control, metrics
        )
    return metrics
