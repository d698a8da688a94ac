"""The training summary of a fine-tuning run, written as ``OUT/training.json``.

:func:`~llmrec.finetune.trainer.finetune` returns a :class:`TrainingSummary`; its
:meth:`~TrainingSummary.to_dict` is the file's content (``bench/llm.py`` reads the file).
"""

from __future__ import annotations

import json
import os
import resource
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from llmrec.io import atomic_write_text

SUMMARY_FILE = "training.json"


@dataclass(frozen=True)
class AdaLoRARanks:
    """Where AdaLoRA's rank budget ended up: over ``matrices`` adapted matrices, the ranks kept
    (``total_rank``) of the ``initial_total_rank`` it started with."""

    matrices: int
    total_rank: int
    initial_total_rank: int


@dataclass(frozen=True)
class TrainingSummary:
    """What a fine-tuning run trained, how long it took, and how it validated."""

    method: str
    base_model: str
    #: the model's dtype without the ``torch.`` prefix, e.g. "float32"
    dtype: str
    device: str
    #: the base model's quantization settings (QLoRA), None for a full-precision base
    quantization: dict[str, Any] | None
    trainable_parameters: int
    total_parameters: int
    training_rows: int
    steps: int
    planned_steps: int
    #: the whole training time, earlier runs of a resumed one included
    train_seconds: float
    #: over the steps this process ran: a resumed run repeats none of the earlier ones
    seconds_per_step: float
    wall_seconds: float
    peak_memory_mb: float
    adapter_bytes: int
    train_loss: float
    best_checkpoint: str | None
    #: residual training: the weight the adapter ranks fused at (None for a plain ranker)
    residual_weight: float | None
    validation_users: int
    validation_retriever: dict[str, float]
    #: None for a resumed run (the zero-shot evaluation runs before the first step only)
    validation_zero_shot: dict[str, float] | None
    validation_final: dict[str, float] | None
    resumed_from: str | None
    #: False when a resumed checkpoint recorded no time: train_seconds is then a lower bound
    train_seconds_complete: bool
    adapter: str
    #: AdaLoRA only (absent from the file for other methods)
    adalora_ranks: AdaLoRARanks | None = None
    #: processes that trained together (``accelerate launch --num_processes``); the steps are
    #: optimizer steps over all of them, each taking ``processes`` x ``batch_size`` rows
    processes: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The ``training.json`` content (``adalora_ranks`` only for AdaLoRA)."""
        data = asdict(self)
        if self.adalora_ranks is None:
            del data["adalora_ranks"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSummary:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown training summary keys {unknown}; expected some of {sorted(known)}"
            )
        ranks = data.get("adalora_ranks")
        return cls(**{**data, "adalora_ranks": None if ranks is None else AdaLoRARanks(**ranks)})

    def write(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``folder/training.json`` atomically; returns its path."""
        path = Path(folder) / SUMMARY_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def read_training_summary(folder: str | os.PathLike[str]) -> TrainingSummary:
    """The summary a run wrote into ``folder``."""
    path = Path(folder) / SUMMARY_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} holds no {SUMMARY_FILE}: is it an `llmrec finetune --out` folder?"
        )
    return TrainingSummary.from_dict(json.loads(path.read_text()))


def peak_memory_mb(device: str) -> float:
    """Peak memory of this process so far: CUDA allocations on a GPU, resident set on a CPU."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
