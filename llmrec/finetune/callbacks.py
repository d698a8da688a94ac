"""Trainer callbacks of a fine-tuning run: early stopping, TensorBoard curves, AdaLoRA's rank
allocation and the training time recorded in every checkpoint (so that a resumed run reports the
whole). transformers is imported only inside the functions.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrec.finetune import processes
from llmrec.io import atomic_write_text
from llmrec.models.adapters import adalora_callback

if TYPE_CHECKING:
    from llmrec.finetune.recipe import TrainingConfig

logger = logging.getLogger(__name__)

#: In each checkpoint: the training seconds spent up to it, so a resumed run reports the whole.
ELAPSED_FILE = "llmrec_elapsed.json"
#: TensorBoard event files, under the run's folder: ``tensorboard --logdir OUT/tensorboard``.
TENSORBOARD_DIR = "tensorboard"


def training_callbacks(
    training: TrainingConfig, method: str, out: Path, elapsed: float
) -> list[Any]:
    """The run's callbacks: early stopping on validation NDCG@10 (when the run keeps its best
    checkpoint), TensorBoard curves under
    ``out`` (when asked for and installed; written by the main process only), AdaLoRA's rank
    allocator (``method`` "adalora") and the elapsed-time record, counting from ``elapsed``
    seconds."""
    from transformers import EarlyStoppingCallback

    callbacks: list[Any] = []
    if training.keep == "best":
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training.patience))
    if training.tensorboard and processes.is_main():
        board = tensorboard_callback(out / TENSORBOARD_DIR)
        if board is not None:
            callbacks.append(board)
    if method == "adalora":
        callbacks.append(adalora_callback())
    callbacks.append(elapsed_callback(elapsed))
    return callbacks


def tensorboard_callback(log_dir: Path) -> Any | None:
    """transformers' TensorBoard callback writing to ``log_dir``, or None (with a warning) when
    tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.warning("tensorboard is not installed: no training curves are logged")
        return None
    from transformers.integrations import TensorBoardCallback

    board = TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(log_dir)))
    # the callback closes its writer when training ends and opens another for the final
    # evaluation's log, by default under the checkpoints folder (``checkpoints/runs/...``): keep
    # that one in ``log_dir`` too
    board.logging_dir = str(log_dir)
    return board


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
            if not state.is_world_process_zero:
                return
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
