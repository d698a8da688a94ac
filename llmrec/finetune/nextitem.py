"""Train the next-item LLM (:mod:`llmrec.nextitem`) with transformers' Trainer.

:func:`train_nextitem` runs a ``family: nextitem`` recipe, one step per function below: split the
data (leave-one-out), fit the event vocabulary, cut the training sequences into windows, start the
item-ID embeddings from a SASRec fitted on the same training data (``id_init: sasrec``), compute
every item's text vector with the base LLM (cached in the run folder), keep the LLM's first
layers and attach the adapter (LoRA, AdaLoRA, prefix tuning or QLoRA), then train with
cross-entropy at every position, validation NDCG@10 under full ranking for early stopping,
checkpoints (``--resume`` continues from the last one), TensorBoard curves and
``OUT/training-curve.png`` (:mod:`~llmrec.finetune.curves`). The best model is written to
``OUT/model`` (:class:`~llmrec.nextitem.recommender.NextItemRecommender`) with a
summary in ``OUT/training.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.baselines._common import item_counts, ndcg_hr_at_k
from llmrec.data.catalog import Catalog
from llmrec.data.dataset import RecDataset
from llmrec.data.records import EvalCase, UserSequence
from llmrec.data.render import ItemTextRenderer
from llmrec.data.splits import Split, leave_one_out
from llmrec.finetune import processes
from llmrec.finetune.callbacks import training_callbacks
from llmrec.finetune.curves import CURVE_FILE, write_training_curve
from llmrec.finetune.losses import orthogonal_penalty
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
from llmrec.finetune.summary import SUMMARY_FILE, peak_memory_mb
from llmrec.io import atomic_write_text
from llmrec.models.adapters import adalora_ranks, attach_adapter
from llmrec.models.identity import describe_base, portable_name
from llmrec.models.loader import load_model
from llmrec.nextitem.config import NextItemConfig
from llmrec.nextitem.features import (
    EventVocab,
    encode_events,
    left_pad,
    shuffle_ties,
    training_windows,
    window_priors,
)
from llmrec.nextitem.recommender import NextItemRecommender

logger = logging.getLogger(__name__)

MODEL_DIR = "model"
TEXT_CACHE = "item_text.npy"
SASREC_DIR = "sasrec"


@dataclass
class NextItemSummary:
    """What ``training.json`` holds for a next-item run."""

    family: str
    method: str
    base_model: str
    layers: int | None
    dtype: str
    device: str
    trainable_parameters: int
    total_parameters: int
    windows: int
    targets: int
    steps: int
    planned_steps: int
    train_seconds: float
    seconds_per_step: float
    #: SASRec fitted for the ID start (0 when not used or reused)
    sasrec_seconds: float
    text_seconds: float
    wall_seconds: float
    peak_memory_mb: float
    train_loss: float
    best_checkpoint: str | None
    validation_users: int
    validation_sasrec: dict[str, float] | None
    validation_zero_shot: dict[str, float] | None
    validation_final: dict[str, float] | None
    resumed_from: str | None
    model: str
    #: AdaLoRA only: where the rank budget ended up
    adalora_ranks: dict[str, int] | None = None
    #: processes that trained together (``accelerate launch --num_processes``)
    processes: int = 1
    #: runs joined into the saved model (``training.members``); with more than one, the counts
    #: above are sums over the runs (peak memory: the largest run's; total parameters: one
    #: run's) and ``validation_final`` is the ensemble's
    members: int = 1
    #: each member run's final validation metrics (``OUT/members/<i>/training.json``)
    member_validation: list[dict[str, float] | None] | None = None

    def write(self, folder: Path) -> Path:
        path = Path(folder) / SUMMARY_FILE
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")
        return path


# --------------------------------------------------------------------------- data
def encode_all(
    sequences: Sequence[UserSequence], catalog: Catalog, vocab: EventVocab
) -> list[np.ndarray]:
    return [encode_events(s, catalog, vocab) for s in sequences]


class WindowCollator:
    """Left-pads a list of event windows into ``{"events": LongTensor (B, W, 5)}``; windows
    given as ``{"events": ..., "prior": ...}`` also yield ``"prior"`` (B, P), the item tokens
    read before each window, right-padded with 0. With ``shuffle_ties`` (a seed), each batch's
    runs of near-simultaneous events are put in a fresh random order
    (:func:`~llmrec.nextitem.features.shuffle_ties`)."""

    def __init__(self, shuffle_ties: int | None = None) -> None:
        self._rng = None if shuffle_ties is None else np.random.default_rng(shuffle_ties)

    def _events(self, windows: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self._rng is None:
            return list(windows)
        return [shuffle_ties(w, self._rng) for w in windows]

    def __call__(self, windows: Sequence[Any]) -> dict[str, Any]:
        import torch

        if windows and isinstance(windows[0], dict):
            priors = [w["prior"] for w in windows]
            events = self._events([w["events"] for w in windows])
            prior = np.zeros((len(priors), max(1, max(len(p) for p in priors))), dtype=np.int64)
            for row, items in enumerate(priors):
                prior[row, : len(items)] = items
            width = max(len(w) for w in events)
            return {
                "events": torch.from_numpy(left_pad(events, width)),
                "prior": torch.from_numpy(prior),
            }
        events = self._events(windows)
        width = max(len(w) for w in events)
        return {"events": torch.from_numpy(left_pad(events, width))}


def validation_metrics(model: NextItemRecommender, cases: Sequence[EvalCase]) -> dict[str, float]:
    """NDCG@10 and HR@10 under full ranking (history items excluded) on ``cases``."""
    if not cases:
        return {}
    scores = model.score([c.history for c in cases])  # (V, N)
    ndcg, hr = ndcg_hr_at_k(scores, cases, model._require_fitted(), k=10)
    return {"NDCG@10": ndcg, "HR@10": hr}


def shared_validation_metrics(
    model: NextItemRecommender, cases: Sequence[EvalCase]
) -> dict[str, float]:
    """:func:`validation_metrics` with the cases split across the processes of a multi-process
    run (each scores its share; every process gets the means over all of them)."""
    if not processes.distributed():
        return validation_metrics(model, cases)
    mine = [cases[i] for i in processes.shard(len(cases))]
    local = validation_metrics(model, mine)
    parts = processes.gather((len(mine), local))
    n = sum(count for count, _ in parts)
    if not n:
        return {}
    keys = next(m for count, m in parts if count)
    return {k: sum(count * m[k] for count, m in parts if count) / n for k in keys}


# --------------------------------------------------------------------------- starts
def sasrec_item_vectors(
    train: Sequence[UserSequence],
    valid: Sequence[EvalCase],
    catalog: Catalog,
    dim: int,
    out: Path,
    progress: bool,
    sasrec: Any | None = None,
) -> tuple[np.ndarray, float, dict[str, float]]:
    """SASRec item embeddings (N, dim) to start the ID vectors from, the seconds spent fitting
    (0 when a fitted one was given or saved in ``out`` by an earlier run) and its validation
    metrics. The fit is saved in ``out/sasrec`` so a resumed run does not repeat it."""
    from llmrec.baselines.sasrec import SASRecRecommender

    seconds = 0.0
    folder = out / SASREC_DIR
    if sasrec is None and (folder / "model.json").is_file():
        try:
            sasrec = SASRecRecommender.load(folder, catalog)
            logger.info("reusing the SASRec fitted earlier in %s", folder)
        except ValueError as exc:
            logger.warning("cannot reuse %s (%s): fitting SASRec again", folder, exc)
            sasrec = None
    if sasrec is None:
        logger.info("fitting SASRec (hidden %d) for the item-ID start", dim)
        start = time.perf_counter()
        sasrec = SASRecRecommender(hidden_size=dim, progress=progress).fit(train, catalog, valid)
        seconds = time.perf_counter() - start
        sasrec.save(folder)
    weights = sasrec.net.item_emb.weight.detach().float().cpu().numpy()[1:]  # (N, d)
    if weights.shape[1] != dim:
        raise ValueError(
            f"the SASRec given has hidden size {weights.shape[1]}, but nextitem.id_dim is {dim}; "
            "set nextitem.id_dim to it"
        )
    scores = sasrec.score([c.history for c in valid])
    ndcg, hr = ndcg_hr_at_k(scores, valid, catalog, k=10)
    return weights, seconds, {"NDCG@10": ndcg, "HR@10": hr}


def cooccurrence_item_vectors(
    train: Sequence[UserSequence], catalog: Catalog, dim: int, seed: int = 0
) -> np.ndarray:
    """Input and output item vectors (2, N, dim) whose inner products approximate the items'
    co-occurrence within 5 events (the ``cooc`` retrieval view's cosine-normalised matrix
    ``M ~ U S V^T``): ``U S^1/2`` and ``V S^1/2`` from its top ``dim`` singular triplets (separate,
    because ``M`` has negative eigenvalues), scaled to the entry size a fitted SASRec's item
    embeddings have (RMS 0.1). Items seen in no pair get zeros."""
    import torch

    from llmrec.retrieval.simple import Cooccurrence

    matrix = Cooccurrence().fit(train, catalog).matrix
    assert matrix is not None
    n = len(catalog)
    rows = np.repeat(np.arange(n), np.diff(matrix.indptr))  # (nnz,)
    sparse = torch.sparse_coo_tensor(
        np.stack([rows, matrix.indices]), matrix.data, (n, n), dtype=torch.float64,
        check_invariants=True,
    ).coalesce()  # fmt: skip
    rank = min(dim, n)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # svd_lowrank draws a random start
    try:
        u, s, v = torch.svd_lowrank(sparse, q=rank, niter=6)  # (N, rank), (rank,), (N, rank)
    finally:
        torch.random.set_rng_state(generator_state)
    vectors = np.zeros((2, n, dim), dtype=np.float64)
    vectors[0, :, :rank] = (u * s.sqrt()).numpy()
    vectors[1, :, :rank] = (v * s.sqrt()).numpy()
    rms = float(np.sqrt((vectors**2).mean()))
    return (vectors * (0.1 / rms if rms > 0 else 1.0)).astype(np.float32)


def cached_text_vectors(
    loaded: Any, catalog: Catalog, config: NextItemConfig, out: Path, progress: bool
) -> tuple[np.ndarray, float]:
    """Every item's text vector from the full base model, and the seconds it took (0 when read
    from ``out``'s cache, which is keyed by model, template and item texts)."""
    from llmrec.nextitem.features import item_text_vectors

    renderer = ItemTextRenderer(config.text_template, config.text_max_chars)
    texts = renderer.render_many(list(catalog))
    key = hashlib.sha256(
        json.dumps([loaded.name, str(loaded.dtype), texts]).encode("utf-8")
    ).hexdigest()[:16]
    path = out / TEXT_CACHE
    key_path = out / (TEXT_CACHE + ".key")
    if path.is_file() and key_path.is_file() and key_path.read_text().strip() == key:
        return np.load(path, allow_pickle=False), 0.0
    start = time.perf_counter()
    vectors = item_text_vectors(loaded.model, loaded.tokenizer, texts, progress=progress)
    seconds = time.perf_counter() - start
    tmp = out / (TEXT_CACHE + ".tmp.npy")
    np.save(tmp, vectors, allow_pickle=False)
    tmp.replace(path)
    atomic_write_text(key_path, key + "\n")
    return vectors, seconds


# --------------------------------------------------------------------------- the Trainer
def make_nextitem_trainer_class() -> type:
    import torch
    from transformers import Trainer

    class NextItemTrainer(Trainer):
        """Trainer with the every-position loss, full-ranking validation, two learning rates
        (adapter; item tower and head) and checkpoints holding only what is trained."""

        def __init__(
            self, *args, recommender=None, valid_cases=(), head_lr=None, orth_reg_weight=0.0,
            **kwargs,
        ):  # fmt: skip
            super().__init__(*args, **kwargs)
            self.recommender = recommender
            self.valid_cases = list(valid_cases)
            self.head_lr = head_lr
            self.orth_reg_weight = orth_reg_weight

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # through forward(): in a multi-process run ``model`` is the DistributedDataParallel
            # wrapper, which synchronises the gradients of what its forward computed
            loss = model(events=inputs["events"], prior=inputs.get("prior"))["loss"]
            if self.orth_reg_weight:
                net = self.accelerator.unwrap_model(model)
                penalty = orthogonal_penalty(net.backbone, self.orth_reg_weight)
                if penalty is not None:
                    loss = loss + penalty
            return (loss, None) if return_outputs else loss

        def create_optimizer(self, model=None):
            if self.optimizer is None:
                net = self.model
                body, head = [], []
                for name, param in net.named_parameters():
                    if param.requires_grad:
                        (body if name.startswith("backbone.") else head).append(param)
                lr = self.args.learning_rate
                groups = [{"params": head, "lr": self.head_lr or lr}]
                if body:
                    groups.append({"params": body, "lr": lr})
                self.optimizer = torch.optim.AdamW(
                    groups, lr=lr, weight_decay=self.args.weight_decay
                )
            return self.optimizer

        def _save(self, output_dir=None, state_dict=None):
            net = self.model
            trained = {n for n, p in net.named_parameters() if p.requires_grad}
            state = {
                k: v.detach().cpu().contiguous()
                for k, v in net.state_dict().items()
                if not k.startswith("backbone.") or k in trained
            }
            return super()._save(output_dir, state_dict=state)

        def _issue_warnings_after_load(self, load_result):
            """A checkpoint holds only what is trained: the frozen base is "missing" by design;
            a missing trained tensor or an unexpected one means it belongs to another model."""
            trained = {n for n, p in self.model.named_parameters() if p.requires_grad}
            missing = [k for k in load_result.missing_keys if k in trained]
            if missing or load_result.unexpected_keys:
                raise ValueError(
                    f"the checkpoint does not fit this model: missing {missing[:5]}, "
                    f"unexpected {list(load_result.unexpected_keys)[:5]}"
                )

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            start = time.perf_counter()
            raw = shared_validation_metrics(self.recommender, self.valid_cases)
            return report_evaluation(self, raw, metric_key_prefix, time.perf_counter() - start)

    return NextItemTrainer


# --------------------------------------------------------------------------- the whole run
def train_nextitem(
    recipe: Any,
    dataset: RecDataset,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    sasrec: Any | None = None,
    split: Split | None = None,
) -> NextItemSummary:
    """Train the next-item LLM as ``recipe`` (``family: nextitem``) says; writes ``OUT/model``
    and ``OUT/training.json`` and returns the summary. ``sasrec``: an already fitted SASRec
    (same training split) to take the ID start from instead of fitting one. ``split``: the
    training/validation split (default: leave-one-out of ``dataset``; e.g. a cold-start split
    with items held out of training)."""
    from llmrec.nextitem.network import (
        ItemTokenLM,
        keep_first_layers,
        token_embedding_rms,
        trainable_parameters,
    )

    if recipe.training.members > 1:
        return _train_members(recipe, dataset, out, resume, progress, sasrec, split)
    started = time.perf_counter()
    processes.init()  # launched with accelerate: join the other processes
    out = Path(out)
    cfg: NextItemConfig = recipe.nextitem
    tcfg = recipe.training
    catalog = dataset.catalog
    split = split or leave_one_out(dataset)
    eval_cases = _validation_cases(split, tcfg)
    # the vocabulary, the training windows and the SASRec start: made once, by the main
    # process, and handed to the others
    data = processes.on_main(_prepare, recipe, dataset, split, out, progress, sasrec)
    vocab, windows, counts = data.vocab, data.windows, data.counts
    quant = recipe.adapter.quantization if recipe.adapter.quantized else None
    with processes.main_first():  # the default model is fetched and converted once
        loaded = load_model(recipe.model, device=_device(), dtype=recipe.dtype, quantization=quant)
    text, text_seconds = (None, 0.0)
    if cfg.text:  # the main process computes them (or reads its cache) for all
        text, text_seconds = processes.on_main(
            cached_text_vectors, loaded, catalog, cfg, out, progress
        )
    # the adapter's and the item head's random starts follow training.seed (the Trainer seeds
    # only once it exists, after they were drawn): same seed, same start; seeds differ for real
    seed_everything(tcfg.seed)
    rms = token_embedding_rms(loaded.model)
    backbone = keep_first_layers(loaded.model, cfg.layers)
    total_steps = planned_steps(len(windows), tcfg, processes.world_size())
    adapter = replace(recipe.adapter, layers=None)  # every kept layer is adapted
    backbone = attach_adapter(backbone, adapter, total_steps=total_steps)
    net = ItemTokenLM(
        backbone, len(catalog), cfg, vocab, known=counts > 0, text_vectors=text,
        id_vectors=data.id_vectors, item_counts=counts, embed_rms=rms,
    ).to(loaded.device)  # fmt: skip
    processes.sync_trainable(net)
    trainable, total = trainable_parameters(net)
    logger.info(
        "next-item LLM: %d windows, %d layers kept, %s adapter, %d trainable of %d parameters",
        len(windows), cfg.layers or backbone.config.num_hidden_layers, recipe.adapter.method,
        trainable, total,
    )  # fmt: skip
    base = describe_base(recipe.model)  # the Hub id, weights fingerprint and folder
    record = {
        "base_model": portable_name(recipe.model, base),
        "base": base.to_dict(),
        "dtype": recipe.dtype,
        "method": recipe.adapter.method,
        "adapter": adapter.to_dict(),
        "quantization": quant.to_dict() if quant else None,
        "data_fingerprint": dataset.fingerprint(),
    }
    recommender = NextItemRecommender(net, catalog, vocab, cfg, record)
    checkpoint, before = processes.on_main(_resume_point, out, resume)
    args = training_arguments(tcfg, loaded, out, total_steps, progress)
    adalora = recipe.adapter.method == "adalora"
    trainer = make_nextitem_trainer_class()(
        model=net,
        args=args,
        train_dataset=windows,
        eval_dataset=eval_cases,  # scored by evaluate() below, never batched
        data_collator=WindowCollator(
            shuffle_ties=tcfg.seed + processes.rank() if cfg.shuffle_ties else None
        ),
        callbacks=training_callbacks(tcfg, recipe.adapter.method, out, before or 0.0),
        recommender=recommender,
        valid_cases=eval_cases,
        head_lr=cfg.head_lr,
        orth_reg_weight=recipe.adapter.orth_reg_weight if adalora else 0.0,
    )
    zero_shot = None
    if checkpoint is None:
        zero_shot = trainer.evaluate(metric_key_prefix="zero_shot")
    train_start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    run_seconds = time.perf_counter() - train_start
    final = trainer.evaluate(metric_key_prefix="final")

    def write_outputs() -> NextItemSummary:
        write_training_curve(
            trainer.state.log_history, out / CURVE_FILE, f"next-item LLM, {recipe.adapter.method}"
        )
        recommender.record["training"] = {
            "steps": trainer.state.global_step,
            "best_metric": trainer.state.best_metric,
            "validation_final": strip_prefix(final, "final_"),
        }
        model_dir = recommender.save(out / MODEL_DIR)
        summary = NextItemSummary(
            family="nextitem",
            method=recipe.adapter.method,
            base_model=recipe.model,
            layers=cfg.layers,
            dtype=str(loaded.dtype).replace("torch.", ""),
            device=loaded.device,
            trainable_parameters=trainable,
            total_parameters=total,
            windows=len(windows),
            targets=int(sum(len(w["events"] if isinstance(w, dict) else w) - 1 for w in windows)),
            steps=trainer.state.global_step,
            planned_steps=total_steps,
            train_seconds=round((before or 0.0) + run_seconds, 1),
            seconds_per_step=round(
                run_seconds / max(1, result.global_step - step_of(checkpoint)), 3
            ),
            sasrec_seconds=round(data.sasrec_seconds, 1),
            text_seconds=round(text_seconds, 1),
            wall_seconds=round(time.perf_counter() - started, 1),
            peak_memory_mb=round(peak_memory_mb(loaded.device), 1),
            train_loss=float(result.training_loss),
            best_checkpoint=trainer.state.best_model_checkpoint,
            validation_users=len(eval_cases),
            validation_sasrec=data.sasrec_valid,
            validation_zero_shot=strip_prefix(zero_shot, "zero_shot_"),
            validation_final=strip_prefix(final, "final_"),
            resumed_from=checkpoint,
            model=str(model_dir),
            adalora_ranks=_adalora_summary(net.backbone, recipe.adapter) if adalora else None,
            processes=processes.world_size(),
        )
        summary.write(out)
        return summary

    # only the main process writes; every process returns the summary it wrote
    return processes.on_main(write_outputs)


MEMBERS_DIR = "members"


def _train_members(
    recipe: Any,
    dataset: RecDataset,
    out: str | Path,
    resume: bool,
    progress: bool,
    sasrec: Any | None,
    split: Split | None,
) -> NextItemSummary:
    """``training.members`` runs of ``recipe`` (seeds ``seed``, ``seed + 1``, ...), each a full
    run in ``OUT/members/<i>``, joined into one ensemble in ``OUT/model``. With ``resume``,
    finished members are kept and the first unfinished one continues from its checkpoint."""
    from llmrec.nextitem.ensemble import NextItemEnsemble

    processes.init()
    out = Path(out)
    tcfg = recipe.training
    if processes.is_main():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "recipe.yaml", yaml_text(recipe.to_dict()))
    split = split or leave_one_out(dataset)
    summaries: list[NextItemSummary] = []
    for i in range(tcfg.members):
        member_out = out / MEMBERS_DIR / str(i)
        seed = tcfg.seed + i
        done = _finished_member(member_out) if resume else None
        if done is not None:
            logger.info("member %d/%d (seed %d): finished earlier, kept", i + 1, tcfg.members, seed)
            summaries.append(done)
            continue
        logger.info("member %d/%d: training with seed %d", i + 1, tcfg.members, seed)
        member = replace(recipe, training=replace(tcfg, members=1, seed=seed))
        summaries.append(
            train_nextitem(member, dataset, member_out, resume, progress, sasrec, split)
        )

    def join() -> NextItemSummary:
        folders = [out / MEMBERS_DIR / str(i) / MODEL_DIR for i in range(tcfg.members)]
        ensemble = NextItemEnsemble.from_folders(folders, dataset.catalog)
        final = validation_metrics(ensemble, _validation_cases(split, tcfg))
        logger.info("ensemble of %d runs: validation NDCG@10 %.4f", tcfg.members, final["NDCG@10"])
        model_dir = ensemble.save(out / MODEL_DIR)
        first = summaries[0]
        summary = replace(
            first,
            trainable_parameters=sum(m.trainable_parameters for m in summaries),
            steps=sum(m.steps for m in summaries),
            planned_steps=sum(m.planned_steps for m in summaries),
            train_seconds=round(sum(m.train_seconds for m in summaries), 1),
            seconds_per_step=round(
                sum(m.train_seconds for m in summaries) / max(1, sum(m.steps for m in summaries)),
                3,
            ),
            sasrec_seconds=round(sum(m.sasrec_seconds for m in summaries), 1),
            text_seconds=round(sum(m.text_seconds for m in summaries), 1),
            wall_seconds=round(sum(m.wall_seconds for m in summaries), 1),
            peak_memory_mb=max(m.peak_memory_mb for m in summaries),
            train_loss=float(np.mean([m.train_loss for m in summaries])),
            best_checkpoint=None,
            validation_zero_shot=None,
            validation_final=final,
            resumed_from=None,
            model=str(model_dir),
            members=tcfg.members,
            member_validation=[m.validation_final for m in summaries],
        )
        summary.write(out)
        return summary

    return processes.on_main(join)


def _validation_cases(split: Split, tcfg: Any) -> list[EvalCase]:
    """The validation users every check scores: the first ``eval_users`` of the split."""
    return list(split.valid)[: tcfg.eval_users]


def _finished_member(folder: Path) -> NextItemSummary | None:
    """The summary of a member run that completed (its model and training.json written)."""
    path = folder / SUMMARY_FILE
    if not (path.is_file() and (folder / MODEL_DIR / "model.json").is_file()):
        return None
    try:
        return NextItemSummary(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        logger.warning("%s unreadable (%s): training that member again", path, exc)
        return None


def _device() -> str:
    """Where the model goes: the CPU when the launcher asked for CPU processes, else auto."""
    return "cpu" if processes.launched_on_cpu() else "auto"


@dataclass
class _Prepared:
    """What the main process prepares for all: the event vocabulary, the training windows, the
    item counts and the SASRec start (with its seconds and validation metrics)."""

    vocab: EventVocab
    windows: list[Any]  # event arrays, or {"events", "prior"} with seen_history
    counts: np.ndarray
    id_vectors: np.ndarray | None
    sasrec_seconds: float
    sasrec_valid: dict[str, float] | None


def _prepare(
    recipe: Any, dataset: RecDataset, split: Split, out: Path, progress: bool, sasrec: Any | None
) -> _Prepared:
    """The run folder with the recipe, and what :class:`_Prepared` holds."""
    cfg: NextItemConfig = recipe.nextitem
    catalog = dataset.catalog
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "recipe.yaml", yaml_text(recipe.to_dict()))
    vocab = EventVocab.fit(split.train, cfg.gap_buckets, cfg.time_buckets)
    encoded = encode_all(split.train, catalog, vocab)
    windows: list[Any] = training_windows(encoded, cfg.max_len)
    if not windows:
        raise ValueError("no training sequence has two or more events; nothing to learn")
    if cfg.exclude_seen and cfg.seen_history:  # each window with what was read before it
        priors = window_priors(encoded, cfg.max_len)
        windows = [{"events": w, "prior": p} for w, p in zip(windows, priors, strict=True)]
    counts = item_counts([e[:, 0] - 1 for e in encoded], len(catalog))
    id_vectors, sasrec_seconds, sasrec_valid = None, 0.0, None
    if cfg.id_init == "sasrec":
        id_vectors, sasrec_seconds, sasrec_valid = sasrec_item_vectors(
            split.train, list(split.valid), catalog, cfg.id_dim, out, progress, sasrec
        )
        logger.info("SASRec start: validation NDCG@10 %.4f", sasrec_valid["NDCG@10"])
    elif cfg.id_init == "cooc":
        id_vectors = cooccurrence_item_vectors(split.train, catalog, cfg.id_dim)
    return _Prepared(vocab, windows, counts, id_vectors, sasrec_seconds, sasrec_valid)


def _resume_point(out: Path, resume: bool) -> tuple[str | None, float | None]:
    """:func:`~llmrec.finetune.run.resume_point`; a fresh run removes an earlier run's
    checkpoints (it must not pick its "best" checkpoint among them)."""
    checkpoint, before = resume_point(out, resume)
    stale = out / "checkpoints"
    if checkpoint is None and stale.is_dir() and any(stale.iterdir()):
        logger.warning("not resuming: removing the earlier run's checkpoints in %s", stale)
        shutil.rmtree(stale)
    return checkpoint, before


def _adalora_summary(backbone: Any, adapter: Any) -> dict[str, int]:
    """Matrices adapted, total rank kept and the rank they started with."""
    ranks = adalora_ranks(backbone)
    return {
        "matrices": len(ranks),
        "total_rank": int(sum(ranks.values())),
        "initial_total_rank": len(ranks) * adapter.init_r,
    }
