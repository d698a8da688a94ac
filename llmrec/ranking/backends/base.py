"""What every model backend gives the ranking stage: the scorer protocol and the backend config.

A :class:`RankModel` is one named model (the base, or the base with one adapter): its prompt
builder (the prompt settings its adapter was trained with), its fusion weight, one-pass scoring
of rank prompts and text generation for reasons. A :class:`Backend` builds one per served name
from a :class:`BackendConfig`:

- ``transformers`` (:mod:`llmrec.ranking.backends.transformers`, CPU and GPU): every adapter
  method (LoRA, AdaLoRA, prefix tuning, QLoRA);
- ``vllm`` (:mod:`llmrec.ranking.backends.vllm`, CUDA GPUs): LoRA adapters per request.

Evaluation (:class:`llmrec.ranking.pipeline.LLMRanker`), the recommend pipeline and the service
all score through this protocol, so each backend is written once and every entry point can use
it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from llmrec.data.records import UserSequence
from llmrec.prompts.builder import PromptBuilder, PromptConfig, RankPrompt
from llmrec.validation import check_number

if TYPE_CHECKING:
    from llmrec.ranking.adapter_folder import AdapterFolder

BACKENDS = ("transformers", "vllm")
#: The base model when neither the config nor an adapter's record names one.
DEFAULT_BASE_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class ModelInfo:
    """What a model is: ``GET /v1/models`` shows it, the pipeline fuses with its weight."""

    name: str
    base_model: str
    method: str | None  # None: the base model, zero-shot
    adapter_dir: str | None
    fusion_weight: float
    #: False: reasons are written by the base model, the adapter only ranks
    #: (an adapter trained without reason examples; :func:`llmrec.models.adapters.writes_text`)
    writes_text: bool = True


class RankModel(Protocol):
    """The scorer protocol: what ranking, reasons and serving call on a model."""

    info: ModelInfo
    builder: PromptBuilder

    def score(self, prompts: Sequence[RankPrompt], progress: bool = False) -> list[np.ndarray]:
        """Log-probabilities over each prompt's labels, in the prompt's label order."""

    def generate(
        self,
        texts: Sequence[str],
        max_new_tokens: int,
        min_new_tokens: int = 0,
        sample_seed: int | None = None,
    ) -> list[str]:
        """Continuations of ``texts`` (greedy, or sampled with ``sample_seed``)."""


def item_scores(
    model: RankModel,
    histories: Sequence[UserSequence],
    item_lists: Sequence[Sequence[str]],
    progress: bool = False,
) -> list[np.ndarray]:
    """The model's score of every item of each list after its history, in the list's order
    (float64): the one question evaluation, the recommend pipeline and the service ask a model.

    A listwise model answers with one rank prompt per list (its label log-probabilities, mapped
    back from the prompt's shuffled order); a model that scores items itself (``scores_items``,
    the next-item LLM) answers directly."""
    if getattr(model, "scores_items", False):
        return model.score_items(histories, item_lists, progress)  # type: ignore[attr-defined]
    prompts = [
        model.builder.listwise(history, list(ids))
        for history, ids in zip(histories, item_lists, strict=True)
    ]
    out = []
    for prompt, ids, scores in zip(
        prompts, item_lists, model.score(prompts, progress), strict=True
    ):
        by_item = dict(zip(prompt.item_ids, scores, strict=True))
        out.append(np.array([by_item[i] for i in ids], dtype=np.float64))
    return out


class Backend(Protocol):
    kind: str

    def models(self) -> dict[str, RankModel]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BackendConfig:
    """Which models a backend loads and how."""

    backend: str = "transformers"
    #: Base model (alias, Hugging Face id or folder); adapters name theirs in their record.
    base_model: str = DEFAULT_BASE_MODEL
    #: True: every adapter runs on ``base_model`` (e.g. the same base under another name or
    #: path); False: on the base its record names (``base_model`` when it names none).
    adapters_on_base_model: bool = False
    #: Name of the base model without adapters (zero-shot ranking).
    base_name: str = "base"
    #: Prompt settings of the base model (adapters use the ones they were trained with).
    base_prompt: PromptConfig = field(default_factory=PromptConfig)
    #: Also load the base under ``base_name`` (the service lists it; a pipeline built for one
    #: adapter does not need it).
    load_base: bool = True
    #: Name -> adapter folder.
    adapters: Mapping[str, str] = field(default_factory=dict)
    device: str = "auto"
    #: "auto" (bf16 on GPUs and CPUs with bf16 units, else fp32), "float32", "bfloat16", ...
    dtype: str = "auto"
    #: Prompts in one forward pass at most (transformers).
    batch_size: int = 8
    #: vLLM engine arguments (backend "vllm" only), passed to ``vllm.LLM``.
    vllm: Mapping[str, Any] = field(default_factory=dict)

    def adapter_base(self, recorded: str | None) -> str:
        """The base model an adapter whose record names ``recorded`` runs on."""
        if self.adapters_on_base_model or not recorded:
            return self.base_model
        return recorded

    def base_for(self, adapter: AdapterFolder) -> str:
        """The base model ``adapter`` runs on: ``base_model`` when every adapter runs on it
        (the record's base is then not looked for), else the one its record names, found on
        this machine (:attr:`AdapterFolder.base_model`)."""
        if self.adapters_on_base_model:
            return self.base_model
        return self.adapter_base(adapter.base_model)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(
                f"backend must be one of {BACKENDS}, got {self.backend!r}; use transformers on "
                "CPUs, vllm on CUDA GPUs"
            )
        check_number("batch_size", self.batch_size, minimum=1)
        names = [self.base_name, *self.adapters]
        if len(set(names)) != len(names):
            raise ValueError(f"model names repeat: {names}")
        if not self.load_base and not self.adapters:
            raise ValueError("load_base is false and no adapter is given: there is no model")
