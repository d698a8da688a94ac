"""Both fine-tuning families on the tiny model, run by ``tests/finetune/test_multiprocess.py``
in two CPU processes (one process group, gloo):

    CUDA_VISIBLE_DEVICES= accelerate launch --multi_gpu --num_processes 2 \\
        tests/finetune/multiprocess_driver.py --llm TINY_LLM --data DATA --out ROOT

Writes ``ROOT/listwise`` and ``ROOT/nextitem`` (the runs) and, per family and process,
``ROOT/probe-<family>-<rank>.json``: the class of the model the Trainer computed the loss with
(DistributedDataParallel when it synchronises gradients), a checksum of the trainable parameters
after each optimizer step, the number of training rows the process saw and the summary it got
back. Not a test module (pytest collects ``test_*.py`` only).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: The listwise recipe cut down to the tiny model (as tests/cli/test_cli_llm.py's parts).
LISTWISE = [
    "dtype=float32", "adapter.layers=1", "training.max_steps=4", "training.eval_steps=2",
    "training.eval_users=6", "training.batch_size=2", "training.warmup=0",
    "training.tensorboard=true", "examples.num_candidates=5", "examples.hard_negatives=4",
    "retrieval.views=[pop,cooc]",
]  # fmt: skip
#: The next-item recipe cut down to the tiny model (as tests/finetune/test_nextitem.py's TINY),
#: with the text part on: its item text vectors must be computed and cached once too.
NEXTITEM = [
    "nextitem.text=true",
    "dtype=float32", "nextitem.layers=1", "nextitem.id_init=random", "nextitem.id_dim=16",
    "nextitem.score_dim=16", "training.batch_size=4", "training.tensorboard=false",
    "training.warmup=0", "training.max_steps=4", "training.eval_steps=2",
    "training.members=1",
]  # fmt: skip


def probing(trainer_class: type, family: str, root: Path) -> type:
    """``trainer_class`` that records what the module docstring says."""
    import torch
    from transformers import TrainerCallback

    from llmrec.finetune import processes

    class Probe(TrainerCallback):
        def __init__(self, record: dict) -> None:
            self.record = record

        def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001, ANN201, ARG002
            with torch.no_grad():
                total = sum(
                    float(p.double().abs().sum()) for p in model.parameters() if p.requires_grad
                )
            self.record["checksums"].append(round(total, 6))

    class Probed(trainer_class):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.record = {"wrapped": None, "checksums": [], "rows_seen": 0}
            self.add_callback(Probe(self.record))

        def compute_loss(self, model, inputs, *args, **kwargs):  # noqa: ANN001, ANN201
            if self.model.training:
                self.record["wrapped"] = type(model).__name__
                first = inputs["events"] if "events" in inputs else inputs["input_ids"]
                self.record["rows_seen"] += int(first.shape[0])
            return super().compute_loss(model, inputs, *args, **kwargs)

        def train(self, *args, **kwargs):  # noqa: ANN201
            try:
                return super().train(*args, **kwargs)
            finally:
                path = root / f"probe-{family}-{processes.rank()}.json"
                path.write_text(json.dumps(self.record) + "\n")

    return Probed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llm", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # two processes on a small machine
    from llmrec.data import open_dataset
    from llmrec.finetune import nextitem, processes, trainer
    from llmrec.finetune.recipe import load_recipe

    root = Path(args.out)
    dataset = open_dataset(args.data)
    listwise_class = trainer.make_trainer_class()
    nextitem_class = nextitem.make_nextitem_trainer_class()
    trainer.make_trainer_class = lambda: probing(listwise_class, "listwise", root)
    nextitem.make_nextitem_trainer_class = lambda: probing(nextitem_class, "nextitem", root)
    for family, recipe_file, overrides in (
        ("listwise", "lora.yaml", LISTWISE),
        ("nextitem", "nextitem-lora.yaml", NEXTITEM),
    ):
        recipe = load_recipe(REPO / "finetune" / recipe_file, [f"model={args.llm}", *overrides])
        summary = trainer.finetune(recipe, dataset, root / family, progress=False)
        probe = root / f"probe-{family}-{processes.rank()}.json"
        record = json.loads(probe.read_text())
        record["summary_steps"] = summary.steps
        record["summary_processes"] = summary.processes
        probe.write_text(json.dumps(record) + "\n")
    processes.barrier()


if __name__ == "__main__":
    main()
