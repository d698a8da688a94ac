"""Model backends of the ranking stage: one scorer protocol, transformers and vLLM beside it."""

from __future__ import annotations

from llmrec.data.dataset import RecDataset
from llmrec.ranking.backends.base import (
    BACKENDS,
    DEFAULT_BASE_MODEL,
    Backend,
    BackendConfig,
    ModelInfo,
    RankModel,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_BASE_MODEL",
    "Backend",
    "BackendConfig",
    "ModelInfo",
    "RankModel",
    "make_backend",
]


def make_backend(config: BackendConfig, dataset: RecDataset) -> Backend:
    """The backend ``config.backend`` names, with its models loaded (vLLM is imported only
    here, and only for ``backend: vllm``)."""
    if config.backend == "vllm":
        from llmrec.ranking.backends.vllm import VLLMBackend

        return VLLMBackend(config, dataset)
    from llmrec.ranking.backends.transformers import TransformersBackend

    return TransformersBackend(config, dataset)
