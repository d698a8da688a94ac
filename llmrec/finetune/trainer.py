"""Fine-tune an adapter for listwise ranking (and optionally reasons) with transformers' Trainer.

:func:`finetune` runs the whole recipe: split the data, get a retriever (a saved one or fitted
from the recipe), build supervised examples with the serving prompt builder, attach the adapter,
train with validation NDCG@10 over retrieved candidates (the pure LLM, or for a residual ranker
the LLM fused with the retriever's rank at the trained weight) for early stopping, keep
checkpoints (``--resume`` continues from the last one), log to TensorBoard, and write the adapter
atomically with its llmrec record and a training summary.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.data.dataset import RecDataset
from llmrec.data.records import EvalCase
from llmrec.data.splits import leave_one_out
from llmrec.evaluation.metrics import metrics_from_ranks
from llmrec.finetune.examples import (
    build_examples,
    candidate_lists,
    shifted_cases,
    training_cases,
)
from llmrec.finetune.recipe import Recipe
from llmrec.io import atomic_write_text
from llmrec.models.adapters import (
    AdapterRecord,
    adalora_callback,
    adalora_ranks,
    attach_adapter,
    quiet_adalora_rank_patterns,
    save_adapter,
    trainable_parameters,
)
from llmrec.models.loader import load_model
from llmrec.prompts.builder import PromptBuilder, RankPrompt, label_token_ids
from llmrec.ranking.fuse import fuse, rank_prior, ranks_to_scores
from llmrec.ranking.pipeline import candidates_from_scores
from llmrec.ranking.reasons import ReasonFacts
from llmrec.ranking.scorer import LLMScorer
from llmrec.ranking.settings import RankerSettings, write_ranker_settings
from llmrec.recommender import Recommender

logger = logging.getLogger(__name__)

SUMMARY_FILE = "training.json"
#: In each checkpoint: the training seconds spent up to it, so a resumed run reports the whole.
ELAPSED_FILE = "llmrec_elapsed.json"
#: TensorBoard event files, under the run's folder: ``tensorboard --logdir OUT/tensorboard``.
TENSORBOARD_DIR = "tensorboard"


# --------------------------------------------------------------------------- batches
class RankCollator:
    """Tokenize rows into left-padded batches.

    Rank rows carry the candidates' label token ids, the target's position and, for a residual
    ranker, each label's prior (then the batch also holds the loss scale); reason rows carry
    causal-LM labels on the answer tokens only (-100 elsewhere).
    """

    def __init__(self, tokenizer: Any, max_length: int = 2048, scale: float = 1.0) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        #: residual training: the multiplier of (LLM log-probs + prior) in the loss
        self.scale = scale
        self._label_ids: dict[tuple[str, ...], dict[str, int]] = {}

    def label_ids(self, text: str, labels: Sequence[str]) -> list[int]:
        key = tuple(sorted(labels))
        if key not in self._label_ids:
            ids = label_token_ids(self.tokenizer, text, key)
            self._label_ids[key] = dict(zip(key, ids, strict=True))
        return [self._label_ids[key][label] for label in labels]

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        tok = self.tokenizer
        eos = tok.eos_token or ""
        texts, answer_lengths = [], []
        for row in rows:
            if row["kind"] == "reason":
                full = row["text"] + row["answer"] + eos
                n_prompt = len(tok(row["text"], add_special_tokens=False)["input_ids"])
                n_full = len(tok(full, add_special_tokens=False)["input_ids"])
                texts.append(full)
                answer_lengths.append(max(1, n_full - n_prompt))
            else:
                texts.append(row["text"])
                answer_lengths.append(0)
        enc = tok(texts, add_special_tokens=False, padding=True, return_tensors="pt")
        if enc["input_ids"].shape[1] > self.max_length:
            raise ValueError(f"a training prompt is longer than {self.max_length} tokens")
        width = max((len(r.get("labels", [])) for r in rows), default=1) or 1
        label_ids = torch.zeros((len(rows), width), dtype=torch.long)
        label_mask = torch.zeros((len(rows), width), dtype=torch.bool)
        target = torch.zeros(len(rows), dtype=torch.long)
        lm_labels = torch.full_like(enc["input_ids"], -100)
        kind = torch.zeros(len(rows), dtype=torch.long)
        prior = torch.zeros((len(rows), width), dtype=torch.float32)
        for i, row in enumerate(rows):
            if row["kind"] == "rank":
                ids = self.label_ids(row["text"], row["labels"])
                label_ids[i, : len(ids)] = torch.as_tensor(ids)
                label_mask[i, : len(ids)] = True
                target[i] = int(row["target"])
                kind[i] = 1
                if "prior" in row:
                    prior[i, : len(ids)] = torch.as_tensor(row["prior"], dtype=torch.float32)
            else:
                n = answer_lengths[i]
                lm_labels[i, -n:] = enc["input_ids"][i, -n:]
        batch = {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "kind": kind,
            "label_ids": label_ids,
            "label_mask": label_mask,
            "target": target,
            "lm_labels": lm_labels,
        }
        if any("prior" in row for row in rows):
            batch["prior"] = prior
            batch["scale"] = torch.tensor(self.scale)
        return batch


def ranking_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean loss over the batch: listwise cross-entropy for rank rows, LM loss for reason rows."""
    import torch
    import torch.nn.functional as F

    kind = batch["kind"]
    rank = kind == 1
    total = torch.zeros((), device=batch["input_ids"].device)
    n = len(kind)
    if rank.any():
        out = model(
            input_ids=batch["input_ids"][rank],
            attention_mask=batch["attention_mask"][rank],
            logits_to_keep=1,
            use_cache=False,
        )
        logits = out.logits[:, -1, :].float()
        picked = logits.gather(1, batch["label_ids"][rank])
        if "prior" in batch:  # a residual ranker: the LLM corrects the retriever's order
            prior = batch["prior"][rank].to(picked.device)
            picked = (picked + prior) * batch["scale"].to(picked.device)
        picked = picked.masked_fill(~batch["label_mask"][rank], float("-inf"))
        loss = F.cross_entropy(picked, batch["target"][rank])
        total = total + loss * rank.sum() / n
    if (~rank).any():
        out = model(
            input_ids=batch["input_ids"][~rank],
            attention_mask=batch["attention_mask"][~rank],
            labels=batch["lm_labels"][~rank],
            use_cache=False,
        )
        total = total + out.loss.float() * (~rank).sum() / n
    return total


def fit_residual_weight(rows: Sequence[dict[str, Any]], top: float = 8.0) -> float:
    """The weight ``w`` for which ``softmax(w * z(rank))`` best predicts the rank rows' targets
    (maximum likelihood over a 0.01 grid up to ``top``): the retriever's order as a prior, as
    sure of itself as it has earned on these examples."""
    rank_rows = [r for r in rows if r["kind"] == "rank"]
    if not rank_rows:
        raise ValueError("no rank rows to fit the residual weight on")
    grid = np.arange(0.0, top + 1e-9, 0.01)
    loglik = np.zeros_like(grid)
    for row in rank_rows:
        z = rank_prior(row["ranks"])
        logits = grid[:, None] * z[None, :]
        top_logit = logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(logits - top_logit).sum(axis=1)) + top_logit[:, 0]
        loglik += logits[:, int(row["target"])] - lse
    return float(grid[int(np.argmax(loglik))])


def add_residual_prior(rows: list[dict[str, Any]], weight: float) -> None:
    """Give each rank row its prior, ``weight * z(rank)`` per label, for the residual loss."""
    for row in rows:
        if row["kind"] == "rank":
            row["prior"] = (weight * rank_prior(row["ranks"])).tolist()


def orthogonal_penalty(model: Any, weight: float) -> Any:
    """AdaLoRA's orthogonality regulariser on P (lora_A) and Q (lora_B); peft adds it only when
    the model computes the loss itself, which the ranking loss does not."""
    import torch

    terms = []
    for name, param in model.named_parameters():
        if not param.requires_grad or ("lora_A" not in name and "lora_B" not in name):
            continue
        cov = param @ param.T if "lora_A" in name else param.T @ param
        eye = torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype)
        terms.append(torch.linalg.norm(cov - eye, ord="fro"))
    if not terms or not weight:
        return None
    return weight * torch.stack(terms).mean()


# --------------------------------------------------------------------------- validation
@dataclass
class Validation:
    """Fixed validation prompts: retrieved candidates for a subset of validation users."""

    prompts: list[RankPrompt]
    targets: list[str]
    retriever_metrics: dict[str, float]
    #: Each prompt's candidates' retrieval ranks, in the prompt's order.
    retrieval_ranks: list[list[int]] | None = None
    #: A residual ranker is scored fused with the retriever at this weight (0: the pure LLM).
    residual_weight: float = 0.0

    def evaluate(self, scorer: LLMScorer) -> dict[str, float]:
        scores = scorer.score(self.prompts)
        ranks: list[int | None] = []
        for i, (prompt, s, target) in enumerate(
            zip(self.prompts, scores, self.targets, strict=True)
        ):
            if target not in prompt.item_ids:
                ranks.append(None)
                continue
            if self.residual_weight and self.retrieval_ranks is not None:
                ret = ranks_to_scores(self.retrieval_ranks[i])
                s = fuse(np.asarray(s)[None, :], ret, self.residual_weight)[0]
            t = prompt.item_ids.index(target)
            ranks.append(int((s > s[t]).sum()))
        return metrics_from_ranks(ranks, (1, 5, 10, 20))


def build_validation(
    cases: Sequence[EvalCase],
    retriever: Recommender,
    builder: PromptBuilder,
    k: int,
) -> Validation:
    catalog = builder.catalog
    histories = [c.history for c in cases]
    top, _ = candidates_from_scores(retriever.score(histories), histories, catalog, k)
    prompts, ranks, shown_ranks = [], [], []
    for case, row in zip(cases, top, strict=True):
        ids = [catalog.ids[int(i)] for i in row]
        prompt = builder.listwise(case.history, ids, salt="valid")
        prompts.append(prompt)
        shown_ranks.append([ids.index(i) + 1 for i in prompt.item_ids])
        ranks.append(ids.index(case.target) if case.target in ids else None)
    return Validation(
        prompts,
        [c.target for c in cases],
        metrics_from_ranks(ranks, (1, 5, 10, 20)),
        shown_ranks,
    )


def heldout_cases(valid: Sequence[EvalCase], training: Any) -> list[EvalCase]:
    """The validation users kept out of training for early stopping (seeded, ``eval_users``)."""
    cases = list(valid)
    if len(cases) > training.eval_users:
        rng = np.random.default_rng(training.seed)
        pick = np.sort(rng.choice(len(cases), size=training.eval_users, replace=False))
        cases = [cases[i] for i in pick]
    return cases


# --------------------------------------------------------------------------- trainer
def tensorboard_callback(log_dir: Path) -> Any | None:
    """transformers' TensorBoard callback writing to ``log_dir``, or None (with a warning) when
    tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.warning("tensorboard is not installed: no training curves are logged")
        return None
    from transformers.integrations import TensorBoardCallback

    return TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(log_dir)))


def elapsed_callback(before: float) -> Any:
    """A TrainerCallback that writes the training seconds so far (``before`` + this run's) into
    every checkpoint it saves (:data:`ELAPSED_FILE`)."""
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class _Elapsed(TrainerCallback):
        started = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201, ARG002
            self.started = time.perf_counter()

        def on_save(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201, ARG002
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            if folder.is_dir():
                seconds = before + time.perf_counter() - self.started
                payload = {"train_seconds": round(seconds, 1), "step": state.global_step}
                atomic_write_text(folder / ELAPSED_FILE, json.dumps(payload) + "\n")

    return _Elapsed()


def elapsed_before(checkpoint: str | None) -> float | None:
    """Training seconds recorded in ``checkpoint`` (0 without one; None for a checkpoint saved
    before they were recorded)."""
    if checkpoint is None:
        return 0.0
    path = Path(checkpoint) / ELAPSED_FILE
    if not path.is_file():
        return None
    return float(json.loads(path.read_text())["train_seconds"])


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
            loss = ranking_loss(model, inputs)
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
            metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in raw.items()}
            metrics[f"{metric_key_prefix}_runtime"] = time.perf_counter() - start
            self.log(metrics)
            if metric_key_prefix == "eval":  # the before/after reports are not checkpoints
                self.control = self.callback_handler.on_evaluate(
                    self.args, self.state, self.control, metrics
                )
            return metrics

    return RecTrainer


# --------------------------------------------------------------------------- the whole run
def _fit_retriever(
    recipe: Recipe, train: Sequence[Any], valid: Sequence[EvalCase], catalog: Any
) -> Recommender:
    from llmrec.retrieval import registry

    cfg = recipe.retrieval
    views = list(cfg.views)
    view_settings: dict[str, dict[str, Any]] = {}
    if cfg.text_model and "text" in views:
        from llmrec.retrieval.text_finetune import view_settings_for

        view_settings["text"] = view_settings_for(cfg.text_model)
    retriever = registry.create(
        "fused", {"method": cfg.fusion}, views=views, view_settings=view_settings
    )
    retriever.fit(list(train), catalog, list(valid))
    return retriever


def _shifted_retriever(
    recipe: Recipe,
    dataset: RecDataset,
    cut_train: Sequence[Any],
    valid: Sequence[EvalCase],
    catalog: Any,
) -> Recommender:
    """The "shifted" source's retriever, fitted once per (data, retrieval settings, shift,
    held-out users) and cached under ``$LLMREC_CACHE/example-retrievers``: every adapter method
    trained on the same data reuses it."""
    import hashlib

    from llmrec.fetch import cache_root
    from llmrec.retrieval.fusion import FusedRetriever

    key = json.dumps(
        {
            "data": dataset.fingerprint(),
            "retrieval": recipe.retrieval.__dict__,
            "shift": recipe.examples.shift,
            "min_history": recipe.examples.min_history,
            "heldout": sorted(c.user_id for c in valid),
        },
        sort_keys=True,
        default=list,
    )
    folder = cache_root() / "example-retrievers" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if (folder / "fused").is_dir():
        try:
            logger.info("reusing the shifted retriever cached in %s", folder)
            return FusedRetriever.load(folder / "fused", catalog)
        except (OSError, ValueError) as exc:
            logger.warning("cached shifted retriever unusable (%s): fitting it again", exc)
    retriever = _fit_retriever(recipe, cut_train, valid, catalog)
    retriever.save(folder / "fused")
    return retriever


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def finetune(
    recipe: Recipe,
    dataset: RecDataset,
    out: str | os.PathLike[str],
    retriever: Recommender | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train an adapter as ``recipe`` says; returns the training summary (also written)."""
    from transformers import EarlyStoppingCallback, TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "recipe.yaml", _yaml(recipe.to_dict()))
    split = leave_one_out(dataset)
    catalog = dataset.catalog
    cfg, tcfg = recipe.examples, recipe.training
    if retriever is None:
        logger.info("fitting the retriever (%s)", ",".join(recipe.retrieval.views))
        retriever = _fit_retriever(recipe, split.train, split.valid, catalog)

    quant = recipe.adapter.quantization if recipe.adapter.quantized else None
    loaded = load_model(recipe.model, dtype=recipe.dtype, quantization=quant)
    builder = PromptBuilder(catalog, loaded.tokenizer, recipe.prompt, dataset.profiles())

    valid_cases = heldout_cases(split.valid, tcfg)
    held_out = {c.user_id for c in valid_cases}
    example_retriever = retriever
    cases = training_cases(split.train, cfg) if cfg.source in ("train", "both") else []
    if cfg.source in ("valid", "both"):
        cases += [c for c in split.valid if c.user_id not in held_out]
    if cfg.source == "shifted":
        cut_train, cases = shifted_cases(split.train, split.valid, cfg, held_out)
        logger.info(
            "fitting a second retriever on the training sequences minus their last %d items "
            "(it proposes the candidates of %d cases it has never seen)", cfg.shift, len(cases),
        )  # fmt: skip
        example_retriever = _shifted_retriever(recipe, dataset, cut_train, valid_cases, catalog)
    if not cases:
        raise ValueError("no training examples: the sequences are shorter than min_history")
    candidates = candidate_lists(cases, catalog, example_retriever, cfg, progress=progress)
    kept = [i for i, c in enumerate(candidates) if c is not None]
    if len(kept) < len(cases):
        logger.info(
            "%d of %d cases kept: the retriever's top %d holds their target",
            len(kept), len(cases), cfg.num_candidates,
        )  # fmt: skip
        cases = [cases[i] for i in kept]
        candidates = [candidates[i] for i in kept]
    if not cases:
        raise ValueError("no training examples left: the retriever recalls no target")
    reasons = ReasonFacts(catalog) if cfg.reason_fraction else None
    rows = build_examples(cases, candidates, builder, cfg, reasons, progress=progress)
    validation = build_validation(valid_cases, retriever, builder, cfg.num_candidates)
    residual_weight = 0.0
    if tcfg.residual:
        prior_weight = fit_residual_weight(rows)
        # loss logits: scale * (llm + prior), i.e. scale * llm + prior_weight * z
        residual_weight = prior_weight / tcfg.residual_scale
        add_residual_prior(rows, residual_weight)
        validation.residual_weight = residual_weight
        logger.info(
            "residual training: the retriever's rank prior fits with weight %.2f; the LLM's "
            "log-probs enter at scale %g, so the adapter ranks fused at weight %.2f (validation "
            "scores that fused ranking)",
            prior_weight, tcfg.residual_scale, residual_weight,
        )  # fmt: skip
    logger.info(
        "%d training rows from %d prefixes; %d validation users (retriever alone: NDCG@10 %.4f)",
        len(rows),
        len(cases),
        len(valid_cases),
        validation.retriever_metrics["NDCG@10"],
    )

    steps_per_epoch = math.ceil(len(rows) / (tcfg.batch_size * tcfg.grad_accum))
    total_steps = tcfg.max_steps if tcfg.max_steps > 0 else math.ceil(steps_per_epoch * tcfg.epochs)
    model = attach_adapter(loaded.model, recipe.adapter, total_steps=total_steps)
    trainable, total = trainable_parameters(model)
    logger.info(
        "%s adapter: %d trainable of %d parameters", recipe.adapter.method, trainable, total
    )
    scorer = LLMScorer(model, loaded.tokenizer, builder, batch_size=tcfg.batch_size)

    use_cpu = loaded.device == "cpu"
    bf16 = not use_cpu and loaded.dtype.is_floating_point and str(loaded.dtype) == "torch.bfloat16"
    callbacks: list[Any] = [EarlyStoppingCallback(early_stopping_patience=tcfg.patience)]
    if tcfg.tensorboard:
        board = tensorboard_callback(out / TENSORBOARD_DIR)
        if board is not None:
            callbacks.append(board)
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=tcfg.epochs,
        max_steps=total_steps,
        per_device_train_batch_size=tcfg.batch_size,
        gradient_accumulation_steps=tcfg.grad_accum,
        learning_rate=tcfg.lr,
        weight_decay=tcfg.weight_decay,
        warmup_steps=tcfg.warmup,
        lr_scheduler_type=tcfg.scheduler,
        logging_steps=tcfg.logging_steps,
        eval_strategy="steps",
        eval_steps=tcfg.eval_steps,
        save_strategy="steps",
        save_steps=tcfg.eval_steps,
        save_total_limit=tcfg.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="eval_NDCG@10",
        greater_is_better=True,
        seed=tcfg.seed,
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
    if recipe.adapter.method == "adalora":
        callbacks.append(adalora_callback())
    trainer = make_trainer_class()(
        model=model,
        args=args,
        train_dataset=rows,
        eval_dataset=validation.prompts,
        data_collator=RankCollator(
            loaded.tokenizer, scale=tcfg.residual_scale if tcfg.residual else 1.0
        ),
        callbacks=callbacks,
        validation=validation,
        scorer=scorer,
        orth_reg_weight=recipe.adapter.orth_reg_weight
        if recipe.adapter.method == "adalora"
        else 0.0,
    )
    checkpoint = get_last_checkpoint(str(out / "checkpoints")) if resume else None
    if resume and checkpoint is None:
        logger.warning("--resume: no checkpoint in %s, starting from scratch", out / "checkpoints")
    before = elapsed_before(checkpoint)
    if before is None:
        logger.warning(
            "%s records no training time: train_seconds will count only the resumed part",
            checkpoint,
        )
    trainer.add_callback(elapsed_callback(before or 0.0))
    zero_shot = None
    if checkpoint is None:
        zero_shot = trainer.evaluate(metric_key_prefix="zero_shot")
    train_start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    run_seconds = time.perf_counter() - train_start
    train_seconds = (before or 0.0) + run_seconds
    final = trainer.evaluate(metric_key_prefix="final")

    record = AdapterRecord(
        method=recipe.adapter.method,
        adapter=recipe.adapter.to_dict(),
        base_model=recipe.model,
        prompt=recipe.prompt.to_dict(),
        templates=builder.template_versions,
        data_fingerprint=dataset.fingerprint(),
        catalog_fingerprint=catalog.fingerprint(),
        training={
            "steps": trainer.state.global_step,
            "best_metric": trainer.state.best_metric,
            "example_source": cfg.source,
            # validation users never trained on: tune the fusion weight on these
            "heldout_users": [c.user_id for c in valid_cases],
            "residual_weight": residual_weight if tcfg.residual else None,
            # 0: trained only to rank; text generation then runs on the base (writes_text)
            "reason_fraction": cfg.reason_fraction,
        },
    )
    adapter_dir = save_adapter(trainer.model, out / "adapter", record)
    if tcfg.residual:
        # the adapter's scores are a correction to the retriever: rank fused at the trained weight
        write_ranker_settings(adapter_dir, RankerSettings(residual_weight, "residual training"))
    adapter_bytes = sum(p.stat().st_size for p in adapter_dir.rglob("*") if p.is_file())
    summary = {
        "method": recipe.adapter.method,
        "base_model": recipe.model,
        "dtype": str(loaded.dtype).replace("torch.", ""),
        "device": loaded.device,
        "quantization": quant.to_dict() if quant else None,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "training_rows": len(rows),
        "steps": trainer.state.global_step,
        "planned_steps": total_steps,
        "train_seconds": round(train_seconds, 1),
        # over the steps this process ran: a resumed run repeats none of the earlier ones
        "seconds_per_step": round(
            run_seconds / max(1, result.global_step - _step_of(checkpoint)), 2
        ),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "peak_memory_mb": round(peak_memory_mb(loaded.device), 1),
        "adapter_bytes": adapter_bytes,
        "train_loss": result.training_loss,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "residual_weight": residual_weight if tcfg.residual else None,
        "validation_users": len(valid_cases),
        "validation_retriever": validation.retriever_metrics,
        "validation_zero_shot": _strip(zero_shot, "zero_shot_"),
        "validation_final": _strip(final, "final_"),
        "resumed_from": checkpoint,
        # False when a resumed checkpoint recorded no time: train_seconds is then a lower bound
        "train_seconds_complete": before is not None,
        "adapter": str(adapter_dir),
    }
    if recipe.adapter.method == "adalora":
        ranks = adalora_ranks(trainer.model)
        summary["adalora_ranks"] = {
            "matrices": len(ranks),
            "total_rank": int(sum(ranks.values())),
            "initial_total_rank": len(ranks) * recipe.adapter.init_r,
        }
    atomic_write_text(out / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def _step_of(checkpoint: str | None) -> int:
    return 0 if checkpoint is None else int(Path(checkpoint).name.rsplit("-", 1)[1])


def _strip(metrics: dict[str, float] | None, prefix: str) -> dict[str, float] | None:
    if metrics is None:
        return None
    return {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)}


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
