"""Helpers of the serving tests: LoRA and AdaLoRA adapters with non-trivial weights on the tiny
model, and the service built over them (``make_service``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from llmrec.models.adapters import AdapterConfig, AdapterRecord, attach_adapter, save_adapter
from llmrec.models.loader import load_model
from llmrec.prompts import PromptConfig

if TYPE_CHECKING:
    from llmrec.serving.service import RecService

SMALL = PromptConfig(max_history=3, history_token_budget=40)

INIT_R = 6


#: AdaLoRA ranks kept by layer, cycling: all, uneven, one, none
KEEP = (6, 3, 1, 0)


def fresh_model(model_dir: str):  # noqa: ANN201
    """The tiny model freshly loaded in fp32 on the CPU (peft wraps models in place)."""
    return load_model(model_dir, device="cpu", dtype="float32").model


def adapter_record(
    method: str, prompt: PromptConfig = SMALL, base_model: str = ""
) -> AdapterRecord:
    return AdapterRecord(
        method=method,
        adapter=AdapterConfig(method=method, init_r=INIT_R, target_r=2).to_dict(),
        base_model=base_model,
        prompt=prompt.to_dict(),
        templates={},
    )


def perturb_and_prune(peft_model, seed: int = 0) -> dict[str, int]:  # noqa: ANN001
    """Random A, B, E in every AdaLoRA layer, then a rank pattern keeping KEEP[i % 4] of the 6
    ranks (at random positions, their E zeroed as peft's allocator does), and one more singular
    value zeroed outside the pattern. Returns the rank each layer should keep."""
    gen = torch.Generator().manual_seed(seed)
    model = peft_model.base_model.model
    layers = [n for n, m in model.named_modules() if hasattr(m, "lora_E") and "default" in m.lora_E]
    pattern, expected = {}, {}
    with torch.no_grad():
        for i, name in enumerate(layers):
            module = model.get_submodule(name)
            for part in ("lora_A", "lora_B"):
                weight = getattr(module, part)["default"]
                weight.copy_(torch.randn(weight.shape, generator=gen) * 0.05)
            module.lora_E["default"].copy_(torch.randn(INIT_R, 1, generator=gen))
            keep = KEEP[i % len(KEEP)]
            kept = set(torch.randperm(INIT_R, generator=gen)[:keep].tolist())
            mask = [j in kept for j in range(INIT_R)]
            module.lora_E["default"][[not m for m in mask]] = 0.0
            pattern[f"{name}.lora_E"] = mask
            expected[name] = keep
        first = model.get_submodule(layers[0])
        first.lora_E["default"][2] = 0.0  # exactly 0 without being in the pattern: dropped too
        expected[layers[0]] = KEEP[0] - 1
    peft_model.peft_config["default"].rank_pattern = pattern
    return expected


def make_adalora_adapter(
    model_dir: str,
    folder: Path,
    prompt: PromptConfig = SMALL,
    base_model: str = "",
    layers: int | None = None,
) -> tuple[Path, dict[str, int], object]:
    """A saved AdaLoRA adapter with random weights and uneven pruned ranks: (folder, the rank
    each layer keeps, the peft model it was saved from)."""
    config = AdapterConfig(method="adalora", init_r=INIT_R, target_r=2, dropout=0.0, layers=layers)
    peft_model = attach_adapter(fresh_model(model_dir), config, total_steps=20)
    expected = perturb_and_prune(peft_model)
    saved = save_adapter(peft_model, folder, adapter_record("adalora", prompt, base_model))
    return saved, expected, peft_model


def make_lora_adapter(
    model_dir: str, folder: Path, prompt: PromptConfig = SMALL, base_model: str = "", seed: int = 1
) -> Path:
    """A saved LoRA adapter (r 4, q/v projections) with random A and B."""
    config = AdapterConfig(
        method="lora", r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj")
    )
    peft_model = attach_adapter(fresh_model(model_dir), config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    return save_adapter(peft_model, folder, adapter_record("lora", prompt, base_model))


def make_service(parts, **overrides) -> RecService:  # noqa: ANN001
    """A service over the ``parts`` fixture (tiny model, LoRA adapter, data, retriever) with the
    test settings, changed by ``overrides`` (:class:`ServeConfig` fields)."""
    from llmrec.ranking.backends.transformers import TransformersBackend
    from llmrec.serving.batching import Batcher
    from llmrec.serving.config import Batching, Limits, ServeConfig
    from llmrec.serving.service import RecService

    model_dir, adapter_dir, dataset, retriever = parts
    config = ServeConfig(
        base_model=model_dir,
        adapters={"tiny-lora": adapter_dir},
        reasons="template",
        device="cpu",
        dtype="float32",
        num_candidates=8,
        limits=Limits(max_k=10, timeout_s=60),
        batching=Batching(max_batch=4, wait_ms=20),
    )
    config = replace(config, **overrides)
    backend = TransformersBackend(config.backend_config(), dataset)
    return RecService(config, dataset, retriever, Batcher(backend.models(), config.batching))
