"""The transformers backend (CPU and GPU): every adapter method, adapters switched per call.

One base model is loaded per (base model, adapter method) with its adapters attached by peft and
switched per call (``set_adapter``); the base is served with the adapters disabled. peft cannot
combine adapters of different types on one model, and QLoRA needs a quantized base. Models are
not thread-safe (switching adapters changes shared state): the service calls them only from its
batcher's single worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np

from llmrec.data.dataset import RecDataset
from llmrec.prompts.builder import PromptBuilder, RankPrompt
from llmrec.ranking.adapter_folder import AdapterFolder, open_adapter_folder
from llmrec.ranking.backends.base import BackendConfig, ModelInfo, RankModel

logger = logging.getLogger(__name__)


class TransformersModel:
    """One named model on a (possibly shared) peft model; switches to its adapter per call."""

    def __init__(
        self, info: ModelInfo, builder: PromptBuilder, scorer: Any, adapter: str | None
    ) -> None:
        self.info = info
        self.builder = builder
        #: the :class:`llmrec.ranking.scorer.LLMScorer` doing the work
        self.scorer = scorer
        self.adapter = adapter  # peft adapter name; None: run the base with adapters disabled

    def _active(self) -> Any:
        model = self.scorer.model
        if self.adapter is None:
            disable = getattr(model, "disable_adapter", None)
            return disable() if disable is not None else nullcontext()
        model.set_adapter(self.adapter)
        return nullcontext()

    def score(self, prompts: Sequence[RankPrompt], progress: bool = False) -> list[np.ndarray]:
        with self._active():
            return self.scorer.score(prompts, progress)

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

    def __init__(self, config: BackendConfig, dataset: RecDataset) -> None:
        from llmrec.models.adapters import load_adapters
        from llmrec.models.loader import load_model
        from llmrec.ranking.scorer import LLMScorer

        catalog, profiles = dataset.catalog, dataset.profiles()
        groups: dict[tuple[str, str], dict[str, AdapterFolder]] = {}
        for name, folder in config.adapters.items():
            adapter = open_adapter_folder(folder, catalog, name)
            base = config.base_for(adapter)
            # peft combines adapters of one type only: one base per (base model, method)
            groups.setdefault((base, adapter.method), {})[name] = adapter
        models: dict[str, RankModel] = {}
        base_model = None
        for (base, family), members in groups.items():
            quant = next(iter(members.values())).quantization if family == "qlora" else None
            loaded = load_model(base, device=config.device, dtype=config.dtype, quantization=quant)
            # peft matches adapter names as substrings of parameter names when it reloads a
            # pruned AdaLoRA adapter: a name like "lora" or "mlp" would collide, so peft gets
            # names that cannot occur in a module path (and are no prefix of each other)
            internal = {name: f"llmrec-{i}-" for i, name in enumerate(members)}
            model = load_adapters(loaded.model, {internal[n]: a.path for n, a in members.items()})
            for name, adapter in members.items():
                builder = PromptBuilder(catalog, loaded.tokenizer, adapter.prompt, profiles)
                scorer = LLMScorer(
                    model,
                    loaded.tokenizer,
                    builder,
                    batch_size=config.batch_size,
                    write_with_adapter=adapter.writes_text,
                )
                info = ModelInfo(
                    name,
                    base,
                    adapter.method,
                    str(adapter.path),
                    adapter.fusion_weight,
                    adapter.writes_text,
                )
                models[name] = TransformersModel(info, builder, scorer, internal[name])
                if base_model is None and base == config.base_model and quant is None:
                    base_model = (model, loaded.tokenizer)
            logger.info("loaded %s with %s adapters %s", base, family, sorted(members))
        self._models: dict[str, RankModel] = {}
        if config.load_base:
            if base_model is None:
                loaded = load_model(config.base_model, device=config.device, dtype=config.dtype)
                base_model = (loaded.model, loaded.tokenizer)
            model, tokenizer = base_model
            builder = PromptBuilder(catalog, tokenizer, config.base_prompt, profiles)
            info = ModelInfo(config.base_name, config.base_model, None, None, 1.0)
            scorer = LLMScorer(model, tokenizer, builder, batch_size=config.batch_size)
            self._models[config.base_name] = TransformersModel(info, builder, scorer, None)
        self._models.update(models)

    def models(self) -> dict[str, RankModel]:
        return dict(self._models)

    def close(self) -> None:
        self._models.clear()
