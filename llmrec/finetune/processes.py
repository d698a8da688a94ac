"""One fine-tuning run over several processes (``accelerate launch --num_processes N``).

Both families (:func:`~llmrec.finetune.trainer.finetune`,
:func:`~llmrec.finetune.nextitem.train_nextitem`) use these helpers so that a launched run is one
run, not N copies of it: the main process prepares the data (retriever or SASRec fitting,
training examples, text vectors) and hands the result to the others with :func:`broadcast`; every
process trains its shard of the batches (transformers' Trainer wraps the model in
DistributedDataParallel, which averages the gradients); validation is split across the processes
(:func:`shard`, :func:`gather`) so that every one of them gets the same metrics, hence the same
early stopping and best checkpoint; only the main process writes the output folder.

Started without a launcher (no ``WORLD_SIZE`` above 1 in the environment) every helper is the
single-process identity and nothing distributed is imported or initialised.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

T = TypeVar("T")

#: Seconds a process waits for the others (the main one may fit SASRec, build the examples or
#: compute text vectors meanwhile): ``LLMREC_DIST_TIMEOUT`` overrides the two hours.
DEFAULT_TIMEOUT_S = 7200


def world_size() -> int:
    """Processes of the run: the launcher's ``WORLD_SIZE`` (1 when not launched)."""
    import sys

    if "torch" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def distributed() -> bool:
    return world_size() > 1


def rank() -> int:
    """This process's index among all of the run's (0: the main process)."""
    if not distributed():
        return 0
    init()
    import torch.distributed as dist

    return dist.get_rank()


def is_main() -> bool:
    return rank() == 0


def launched_on_cpu() -> bool:
    """Whether the launcher asked for CPU processes (``accelerate launch --cpu``)."""
    return os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")


def init() -> None:
    """Join the launcher's process group (gloo on CPUs, NCCL on GPUs, through accelerate, which
    also pins each process to its own GPU); a no-op when not launched or already joined."""
    if not distributed():
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    from accelerate import PartialState

    seconds = int(os.environ.get("LLMREC_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    cpu = launched_on_cpu() or not torch.cuda.is_available()
    PartialState(cpu=cpu, timeout=timedelta(seconds=seconds))


def barrier() -> None:
    if distributed():
        init()
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """The main process runs the block first (e.g. fetching and converting the default model
    into the cache), then the others do (reading what it left)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def broadcast(value: T | None) -> T:
    """The main process's ``value`` on every process (pickled; the others pass None)."""
    if not distributed():
        return value  # type: ignore[return-value]
    init()
    import torch.distributed as dist

    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def on_main(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` run by the main process, its result handed to every process; when it
    raises, the others raise too (instead of waiting for a result that never comes)."""
    if not distributed():
        return fn(*args)
    outcome: tuple[bool, Any] | None = None
    if is_main():
        try:
            outcome = (True, fn(*args))
        except BaseException as exc:
            broadcast((False, f"{type(exc).__name__}: {exc}"))
            raise
    ok, value = broadcast(outcome)
    if not ok:
        raise RuntimeError(f"the main process failed: {value}")
    return value


def gather(value: T) -> list[T]:
    """Every process's ``value``, in process order, on every process."""
    if not distributed():
        return [value]
    init()
    import torch.distributed as dist

    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def shard(n: int) -> list[int]:
    """This process's share of ``range(n)`` (every ``world_size()``-th index)."""
    return list(range(rank(), n, world_size()))


def sync_trainable(model: Any) -> None:
    """Give every process the main one's values of ``model``'s trainable parameters (randomly
    initialised adapter and head weights), so that the evaluation before training, split across
    processes, scores one model; DistributedDataParallel would do the same only when it wraps the
    model for training."""
    if not distributed():
        return
    init()
    import torch.distributed as dist

    for param in model.parameters():
        if param.requires_grad:
            dist.broadcast(param.data, src=0)


def merge_sharded(parts: Sequence[Sequence[tuple[int, T]]], n: int) -> list[T]:
    """The ``n`` values of :func:`gather`\\ ed ``(index, value)`` pairs, back in index order."""
    out: list[Any] = [None] * n
    seen = 0
    for part in parts:
        for i, value in part:
            out[i] = value
            seen += 1
    if seen != n:
        raise RuntimeError(f"the processes returned {seen} of {n} validation results")
    return out
