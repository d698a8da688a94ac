"""A real multi-process fine-tuning run: ``accelerate launch --multi_gpu --num_processes 2``
with no GPU visible (torchrun starts two CPU processes, gloo; ``--cpu`` would start one process
unless mpirun is installed, see finetune/README.md) runs both families (listwise LoRA adapter,
next-item LLM) on the tiny model through ``tests/finetune/multiprocess_driver.py``; this test
then checks that the processes trained one model together (DistributedDataParallel, every
process holding the same weights after every step, each seeing its own share of the rows), that
the outputs were written once, and that they reload and score (about 20 s on 2 cores).

    python -m pytest -q tests/finetune/test_multiprocess.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmrec.data import open_dataset
from llmrec.data.splits import leave_one_out
from llmrec.finetune.summary import SUMMARY_FILE, read_training_summary
from llmrec.models.adapters import load_adapters
from llmrec.models.loader import load_model
from llmrec.nextitem.recommender import NextItemRecommender
from llmrec.prompts import PromptBuilder
from llmrec.ranking.scorer import LLMScorer

from ..llm_fakes import make_dataset

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("multiprocess_driver.py")
#: What a run folder may hold: each written once, by the main process.
LISTWISE_FILES = {"recipe.yaml", "training.json", "training-curve.png", "adapter", "checkpoints",
                  "tensorboard"}  # fmt: skip
NEXTITEM_FILES = {"recipe.yaml", "training.json", "training-curve.png", "model", "checkpoints",
                  "item_text.npy", "item_text.npy.key"}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def launched(tiny_llm_dir, tmp_path_factory):  # noqa: ANN001, ANN201
    pytest.importorskip("accelerate")
    root = tmp_path_factory.mktemp("multiprocess")
    data = root / "data"
    make_dataset().save(data)
    out = root / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip
    env.pop("WORLD_SIZE", None)
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        str(DRIVER), "--llm", tiny_llm_dir, "--data", str(data), "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-8000:]
    return {"out": out, "data": data, "llm": tiny_llm_dir, "log": done.stderr}


def _probes(out: Path, family: str) -> list[dict]:
    return [json.loads((out / f"probe-{family}-{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.parametrize("family", ["listwise", "nextitem"])
def test_the_processes_train_one_model_together(launched, family) -> None:  # noqa: ANN001
    first, second = _probes(launched["out"], family)
    assert first["wrapped"] == second["wrapped"] == "DistributedDataParallel"
    # the gradients are averaged: both processes hold the same weights after every step
    assert len(first["checksums"]) == 4
    assert first["checksums"] == second["checksums"]
    assert len(set(first["checksums"])) > 1  # and the weights do change
    # each process trains its own share of the batches: 4 steps of batch_size rows each
    batch = 2 if family == "listwise" else 4
    assert first["rows_seen"] == second["rows_seen"] == 4 * batch
    # every process gets the summary the main one wrote
    assert first["summary_steps"] == second["summary_steps"] == 4
    assert first["summary_processes"] == second["summary_processes"] == 2


@pytest.mark.parametrize("family", ["listwise", "nextitem"])
def test_the_outputs_are_written_once(launched, family) -> None:  # noqa: ANN001
    run = launched["out"] / family
    expected = LISTWISE_FILES if family == "listwise" else NEXTITEM_FILES
    assert {p.name for p in run.iterdir()} == expected  # no temporary or per-process leftovers
    summary = json.loads((run / SUMMARY_FILE).read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4
    assert summary["validation_final"] and summary["validation_zero_shot"] is not None
    if family == "listwise":
        assert read_training_summary(run).processes == 2
        # TensorBoard files from the main process only (the name ends with pid.counter)
        events = list((run / "tensorboard").glob("events.out.tfevents.*"))
        assert events and len({p.name.split(".")[-2] for p in events}) == 1
    # the checkpoints hold each process's random state besides the one model
    checkpoints = sorted((run / "checkpoints").iterdir())
    assert checkpoints and all(p.name.startswith("checkpoint-") for p in checkpoints)
    for folder in checkpoints:
        names = {p.name for p in folder.iterdir()}
        assert {"rng_state_0.pth", "rng_state_1.pth", "trainer_state.json"} <= names


def test_the_trained_adapter_reloads_and_scores(launched) -> None:  # noqa: ANN001
    dataset = open_dataset(str(launched["data"]))
    split = leave_one_out(dataset)
    loaded = load_model(launched["llm"], device="cpu", dtype="float32")
    builder = PromptBuilder(dataset.catalog, loaded.tokenizer)
    prompt = builder.listwise(split.valid[0].history, dataset.catalog.ids[30:35])
    (base,) = LLMScorer(loaded.model, loaded.tokenizer, builder).score([prompt])
    model = load_adapters(loaded.model, {"tuned": launched["out"] / "listwise" / "adapter"})
    (tuned,) = LLMScorer(model, loaded.tokenizer, builder).score([prompt])
    assert np.isfinite(tuned).all() and not np.allclose(base, tuned, atol=1e-6)


def test_the_next_item_model_reloads_and_scores(launched) -> None:  # noqa: ANN001
    dataset = open_dataset(str(launched["data"]))
    split = leave_one_out(dataset)
    model = NextItemRecommender.load(launched["out"] / "nextitem" / "model", dataset.catalog)
    scores = model.score([c.history for c in split.valid[:3]])
    assert scores.shape == (3, len(dataset.catalog)) and np.isfinite(scores).any()
