"""The model side of the service: served models (the base and each adapter) behind one interface.

A :class:`ServedModel` is what the service needs from one served name: its prompt builder (the
prompt settings its adapter was trained with), its fusion weight, one-pass scoring of rank
prompts and text generation for reasons. A backend builds them:

- :class:`TransformersBackend` (CPU and GPU): one base model per adapter method family with its
  adapters attached by peft and switched per call (``set_adapter``), the base served with the
  adapters disabled. Every adapter method works here (LoRA, AdaLoRA, prefix tuning, QLoRA).
- ``VLLMBackend`` (GPU, :mod:`llmrec.serving.vllm_backend`): LoRA adapters per request.

Models are not thread-safe (switching adapters changes shared state), so the service calls them
only from the batcher's single worker thread (:mod:`llmrec.serving.batching`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from llmrec.data.dataset import RecDataset
from llmrec.prompts.builder import PromptBuilder, PromptConfig, RankPrompt
from llmrec.serving.config import ServeConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """What ``GET /v1/models`` says of a served name."""

    name: str
    base_model: str
    method: str | None  # None: the base model, zero-shot
    adapter_dir: str | None
    fusion_weight: float
    #: False: reasons are written by the base model, the adapter only ranks
    #: (an adapter trained without reason examples; :func:`llmrec.models.adapters.writes_text`)
    writes_text: bool = True


class ServedModel(Protocol):
    info: ModelInfo
    builder: PromptBuilder

    def score(self, prompts: Sequence[RankPrompt]) -> list[np.ndarray]:
        """Log-probabilities over each prompt's labels, in the prompt's label order."""

    def generate(
        self,
        texts: Sequence[str],
        max_new_tokens: int,
        min_new_tokens: int = 0,
        sample_seed: int | None = None,
    ) -> list[str]:
        """Continuations of ``texts`` (greedy, or sampled with ``sample_seed``)."""


class Backend(Protocol):
    kind: str

    def models(self) -> dict[str, ServedModel]: ...

    def close(self) -> None: ...


def adapter_settings(adapter_dir: str) -> tuple[Any, PromptConfig, float]:
    """(record, prompt settings, fusion weight) of a saved adapter."""
    from llmrec.models.adapters import read_adapter_record
    from llmrec.ranking.settings import read_ranker_settings

    record = read_adapter_record(adapter_dir)
    prompt = PromptConfig.from_dict(record.prompt)
    weight = read_ranker_settings(adapter_dir).fusion_weight
    return record, prompt, weight


class _TransformersModel:
    """One served name on a (possibly shared) peft model; switches to its adapter per call."""

    def __init__(
        self, info: ModelInfo, builder: PromptBuilder, scorer: Any, adapter: str | None
    ) -> None:
        self.info = info
        self.builder = builder
        self.scorer = scorer
        self.adapter = adapter  # peft adapter name; None: run the base with adapters disabled

    def _active(self) -> Any:
        model = self.scorer.model
        if self.adapter is None:
            disable = getattr(model, "disable_adapter", None)
            return disable() if disable is not None else nullcontext()
        model.set_adapter(self.adapter)
        return nullcontext()

    def score(self, prompts: Sequence[RankPrompt]) -> list[np.ndarray]:
        with self._active():
            return self.scorer.score(prompts)

    def generate(
        self,
        texts: Sequence[str],
        max_new_tokens: int,
        min_new_tokens: int = 0,
        sample_seed: int | None = None,
    ) -> list[str]:
        with self._active():
            return self.scorer.generate(texts, max_new_tokens, min_new_tokens, sample_seed)


class TransformersBackend:
    """transformers + peft, CPU or GPU. Adapters of one method family share one base model."""

    kind = "transformers"

    def __init__(self, config: ServeConfig, dataset: RecDataset) -> None:
        from llmrec.models.adapters import AdapterConfig, load_adapters, writes_text
        from llmrec.models.loader import load_model
        from llmrec.ranking.scorer import LLMScorer

        catalog = dataset.catalog
        profiles = dataset.profiles()
        batch = config.batching.max_batch
        groups: dict[tuple[str, str], dict[str, tuple[str, Any, PromptConfig, float]]] = {}
        for name, folder in config.adapters.items():
            if not Path(folder).is_dir():
                raise FileNotFoundError(
                    f"adapter {name!r}: no folder {folder} (train one with `llmrec finetune`)"
                )
            record, prompt, weight = adapter_settings(folder)
            if record.catalog_fingerprint and record.catalog_fingerprint != catalog.fingerprint():
                raise ValueError(
                    f"adapter {name!r} ({folder}) was trained on another catalogue than "
                    f"{config.data!r}; fine-tune it on the served data"
                )
            base = record.base_model or config.base_model
            # peft cannot mix prefix tuning with LoRA-type adapters on one model, and QLoRA
            # needs a quantized base: one base per (base model, method family)
            family = {"lora": "lora", "adalora": "adalora"}.get(record.method, record.method)
            groups.setdefault((base, family), {})[name] = (folder, record, prompt, weight)
        self._models: dict[str, ServedModel] = {}
        base_scorer = None
        for (base, family), members in groups.items():
            quant = None
            if family == "qlora":
                first_record = next(iter(members.values()))[1]
                quant = AdapterConfig.from_dict(first_record.adapter).quantization
            loaded = load_model(base, device=config.device, dtype=config.dtype, quantization=quant)
            # peft matches adapter names as substrings of parameter names when it reloads a
            # pruned AdaLoRA adapter: a served name like "lora" or "mlp" would collide, so peft
            # gets names that cannot occur in a module path (and are no prefix of each other)
            internal = {name: f"llmrec-{i}-" for i, name in enumerate(members)}
            model = load_adapters(loaded.model, {internal[n]: m[0] for n, m in members.items()})
            for name, (folder, record, prompt, weight) in members.items():
                builder = PromptBuilder(catalog, loaded.tokenizer, prompt, profiles)
                writes = writes_text(folder)
                scorer = LLMScorer(
                    model, loaded.tokenizer, builder, batch_size=batch, write_with_adapter=writes
                )
                info = ModelInfo(name, base, record.method, str(folder), weight, writes)
                self._models[name] = _TransformersModel(info, builder, scorer, internal[name])
                if base_scorer is None and base == config.base_model and quant is None:
                    base_scorer = (model, loaded.tokenizer)
            logger.info("loaded %s with %s adapters %s", base, family, sorted(members))
        if base_scorer is None:
            loaded = load_model(config.base_model, device=config.device, dtype=config.dtype)
            base_scorer = (loaded.model, loaded.tokenizer)
        model, tokenizer = base_scorer
        builder = PromptBuilder(catalog, tokenizer, PromptConfig(), profiles)
        info = ModelInfo(config.base_name, config.base_model, None, None, 1.0)
        scorer = LLMScorer(model, tokenizer, builder, batch_size=batch)
        self._models = {config.base_name: _TransformersModel(info, builder, scorer, None)} | (
            self._models
        )

    def models(self) -> dict[str, ServedModel]:
        return dict(self._models)

    def close(self) -> None:
        self._models.clear()


def make_backend(config: ServeConfig, dataset: RecDataset) -> Backend:
    if config.backend == "vllm":
        from llmrec.serving.vllm_backend import VLLMBackend

        return VLLMBackend(config, dataset)
    return TransformersBackend(config, dataset)
