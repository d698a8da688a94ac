"""Fixtures of the serving tests. The LLM-stage fixtures (tiny offline GQA Llama, its tokenizer,
the small movie catalogue) come from ``tests/conftest.py``; the helpers that make LoRA and AdaLoRA
adapters on the tiny model live in ``tests/serving/fakes.py``."""

from __future__ import annotations

import pytest
import torch

from llmrec.data.splits import leave_one_out

from ..llm_fakes import build_tiny_llm, make_dataset


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A tiny model, a saved LoRA adapter on it, the tiny movie data and a fitted retriever."""

    from llmrec.models.adapters import AdapterConfig, AdapterRecord, attach_adapter, save_adapter
    from llmrec.models.loader import load_model
    from llmrec.prompts import PromptConfig
    from llmrec.retrieval import registry

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("serving")
    model_dir = str(build_tiny_llm(root / "tiny"))
    dataset = make_dataset()
    split = leave_one_out(dataset)
    retriever = registry.create("fused", {"method": "rrf"}, views=["cooc", "pop"])
    retriever.fit(split.train, dataset.catalog, split.valid)
    loaded = load_model(model_dir, device="cpu", dtype="float32")
    peft_model = attach_adapter(loaded.model, AdapterConfig(method="lora", r=4), total_steps=10)
    with torch.no_grad():  # a non-zero update, so the adapter ranks differently from the base
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    prompt = PromptConfig(max_history=4, history_token_budget=60, item_max_chars=40)
    record = AdapterRecord(
        method="lora",
        adapter=AdapterConfig(method="lora", r=4).to_dict(),
        base_model=model_dir,
        prompt=prompt.to_dict(),
        templates={},
        catalog_fingerprint=dataset.catalog.fingerprint(),
    )
    adapter_dir = save_adapter(peft_model, root / "adapter", record)
    return model_dir, str(adapter_dir), dataset, retriever
