"""Model backends of the ranking stage: one scorer protocol, transformers and vLLM beside it."""

from __future__ import annotations

from dataclasses import replace

from llmrec.data.dataset import RecDataset
from llmrec.ranking.backends.base import (
    BACKENDS,
    DEFAULT_BASE_MODEL,
    Backend,
    BackendConfig,
    ModelInfo,
    RankModel,
    item_scores,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_BASE_MODEL",
    "Backend",
    "BackendConfig",
    "ModelInfo",
    "RankModel",
    "item_scores",
    "make_backend",
]


def make_backend(config: BackendConfig, dataset: RecDataset) -> Backend:
    """The backend ``config.backend`` names, with its models loaded (vLLM is imported only
    here, and only for ``backend: vllm``). Folders of ``config.adapters`` that hold a next-item
    LLM (:mod:`llmrec.ranking.backends.nextitem`) load beside it; the backend's base model
    writes their reasons."""
    from llmrec.ranking.backends.nextitem import WithNextItemModels, is_nextitem_folder

    nextitem = {n: str(f) for n, f in config.adapters.items() if is_nextitem_folder(f)}
    if not nextitem:
        return _backend(config, dataset)
    listwise = {n: f for n, f in config.adapters.items() if n not in nextitem}
    inner = _backend(replace(config, adapters=listwise, load_base=True), dataset)
    return WithNextItemModels(inner, nextitem, config, dataset.catalog)


def _backend(config: BackendConfig, dataset: RecDataset) -> Backend:
    if config.backend == "vllm":
        from llmrec.ranking.backends.vllm import VLLMBackend

        return VLLMBackend(config, dataset)
    from llmrec.ranking.backends.transformers import TransformersBackend

    return TransformersBackend(config, dataset)
