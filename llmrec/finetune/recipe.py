"""Fine-tuning recipes: one YAML file names the model, adapter, prompts, examples and training.

See ``finetune/*.yaml`` for the shipped recipes (LoRA, AdaLoRA, prefix tuning, QLoRA), loaded by
name (``load_recipe("qlora")``) or by path. Any value
can be overridden from the command line with ``--set section.key=value`` (a dotted path into
:class:`Recipe`, read by :mod:`llmrec.overrides`: ``--set training.max_steps=100``,
``--set model=HuggingFaceTB/SmolLM2-360M-Instruct``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import yaml

from llmrec.finetune.examples import ExampleConfig
from llmrec.models.adapters import AdapterConfig
from llmrec.nextitem.config import NextItemConfig
from llmrec.overrides import apply_overrides
from llmrec.prompts.builder import PromptConfig
from llmrec.shipped import RECIPES
from llmrec.validation import check_number, reject_unknown


@dataclass(frozen=True)
class TrainingConfig:
    epochs: float = 1.0
    #: Optimizer steps; ``-1`` trains for ``epochs``.
    max_steps: int = -1
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: float = 0.05
    scheduler: str = "linear"
    eval_steps: int = 50
    #: Validation users scored at every evaluation (pure-LLM NDCG@10 over retrieved candidates).
    eval_users: int = 150
    patience: int = 3
    #: Which weights the run ends with: ``best`` - the checkpoint with the best validation
    #: NDCG@10 (early stopping after ``patience`` checks without gain); ``last`` - the weights
    #: the schedule ends on (no early stopping). Picking the best of many checks of a noisy
    #: validation score overrates it; a decayed schedule's last weights are settled.
    keep: str = "best"
    logging_steps: int = 5
    seed: int = 0
    save_total_limit: int = 2
    tensorboard: bool = True
    #: Train the LLM as a correction to the retriever: the loss reads ``llm + w * z(rank)`` over
    #: the candidates (``z``: the retrieval rank standardised over the list, as fusion uses it),
    #: with ``w`` fitted to the training rows before training. The adapter then ranks fused with
    #: that weight; its pure-LLM scores are the correction alone. Needs
    #: ``examples.require_retrieved`` (candidates are the retriever's top list, in its order).
    residual: bool = False
    #: In residual training the LLM's label log-probabilities enter the loss multiplied by this
    #: (the fused weight becomes ``w / residual_scale``). Small values start the adapter as a
    #: tie-breaker of the retriever's order (an untrained model's log-probabilities spread over
    #: several nats, against a prior within about one) and let it earn a larger say.
    residual_scale: float = 1.0
    #: Next-item LLM only: train this many runs, seeded ``seed``, ``seed + 1``, ..., each in
    #: ``OUT/members/<i>``, and write them as one ensemble in ``OUT/model`` (the mean of their
    #: log-probabilities, as ``llmrec ensemble`` builds it). Runs of one recipe that differ
    #: only in their seed make different errors; their mean ranks better (docs/nextitem.md).
    members: int = 1

    def __post_init__(self) -> None:
        check_number("members", self.members, minimum=1)
        check_number("batch_size", self.batch_size, minimum=1)
        check_number("grad_accum", self.grad_accum, minimum=1)
        check_number("eval_steps", self.eval_steps, minimum=1)
        check_number("eval_users", self.eval_users, minimum=1)
        check_number("patience", self.patience, minimum=1)
        if self.keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', got {self.keep!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 < self.residual_scale <= 1:
            raise ValueError(f"residual_scale must be in (0, 1], got {self.residual_scale}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("max_steps must be positive or -1 (train for epochs)")


@dataclass(frozen=True)
class RetrievalConfig:
    """Where candidates come from during fine-tuning (hard negatives, validation)."""

    views: tuple[str, ...] = ("cooc", "sasrec", "recent-pop", "pop")
    fusion: str = "rrf"
    text_model: str | None = None


#: The LLM families a recipe can train: the listwise reranker (prompts with candidate labels)
#: and the next-item LLM (history as item tokens, every position scored over the catalogue).
FAMILIES = ("listwise", "nextitem")


@dataclass(frozen=True)
class Recipe:
    """``family: listwise`` uses the prompt, examples and retrieval sections; ``family:
    nextitem`` uses the nextitem section (:class:`~llmrec.nextitem.config.NextItemConfig`)."""

    model: str = "smollm2-135m-instruct"
    dtype: str = "auto"
    family: str = "listwise"
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    examples: ExampleConfig = field(default_factory=ExampleConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    nextitem: NextItemConfig = field(default_factory=NextItemConfig)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.training.members > 1 and self.family != "nextitem":
            raise ValueError(
                "training.members trains an ensemble of next-item models; the listwise family "
                "trains one adapter (use family: nextitem, or members: 1)"
            )
        if self.training.residual and not self.examples.require_retrieved:
            raise ValueError(
                "training.residual needs examples.require_retrieved: true (the candidates must "
                "be the retriever's top list for its ranks to mean anything)"
            )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["adapter"] = self.adapter.to_dict()
        out["nextitem"] = self.nextitem.to_dict()
        return _plain(out)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "recipe") -> Recipe:
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: a recipe must be a YAML mapping")
        sections = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - sections)
        if unknown:
            raise ValueError(f"{where}: unknown sections {unknown}; known: {sorted(sections)}")
        values: dict[str, Any] = {}
        for key in ("model", "dtype", "family"):
            if key in raw:
                if not isinstance(raw[key], str | int | float) or isinstance(raw[key], bool):
                    raise ValueError(f"{where}: {key} must be a string, got {raw[key]!r}")
                values[key] = str(raw[key])
        for key in sections - {"model", "dtype", "family"}:
            if raw.get(key) is not None and not isinstance(raw[key], Mapping):
                raise ValueError(
                    f"{where}: {key} must be a section of settings (key: value), got {raw[key]!r}"
                )
        try:
            if "adapter" in raw:
                values["adapter"] = AdapterConfig.from_dict(dict(raw["adapter"] or {}))
            if "prompt" in raw:
                values["prompt"] = PromptConfig.from_dict(dict(raw["prompt"] or {}))
            if "nextitem" in raw:
                values["nextitem"] = NextItemConfig.from_dict(dict(raw["nextitem"] or {}))
            if "examples" in raw:
                values["examples"] = ExampleConfig.from_dict(dict(raw["examples"] or {}))
            for name, klass in (("training", TrainingConfig), ("retrieval", RetrievalConfig)):
                if name in raw:
                    section = dict(raw[name] or {})
                    reject_unknown(klass, section, name)
                    if isinstance(section.get("views"), list):
                        section["views"] = tuple(section["views"])
                    values[name] = klass(**section)
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from exc


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


#: YAML 1.1 (PyYAML) reads ``1e-4`` as a string: it wants ``1.0e-4``. Recipes mean a number.
_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _numbers(value: Any) -> Any:
    """``value`` with strings such as ``"1e-4"`` turned into floats, at any depth."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)
    return value


def load_recipe(
    path: str | os.PathLike[str] | None = None, overrides: Sequence[str] | None = None
) -> Recipe:
    """Read a recipe, given by path or by the name of a shipped one (``"lora"``, ``"qlora"``:
    ``finetune/*.yaml``, inside the package too; ``None``: all defaults), and apply ``--set``
    overrides (``section.key=value``, see :mod:`llmrec.overrides`)."""
    raw: dict[str, Any] = {}
    where = "recipe"
    if path is not None:
        where = str(path)
        path = RECIPES.resolve(path)
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: a recipe must be a YAML mapping")
    return apply_overrides(Recipe.from_dict(_numbers(raw), where), overrides or (), "the recipe")
