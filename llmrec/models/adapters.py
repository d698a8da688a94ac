"""PEFT adapters from one typed config: LoRA, AdaLoRA, prefix tuning, and QLoRA.

- ``lora``: low-rank updates of the chosen linear layers (optionally only the top ``layers``
  decoder blocks: gradients then stop there, which makes CPU training much cheaper);
- ``adalora``: LoRA in SVD form whose rank budget is re-allocated during training from ``init_r``
  down to ``target_r`` per matrix on average. peft needs ``update_and_allocate(step)`` after every
  optimizer step, which the HF Trainer does not call: :func:`adalora_callback` does;
- ``prefix``: trainable key/value prefixes (``num_virtual_tokens``) at every layer; cannot be
  merged, cannot run with gradient checkpointing, and vLLM cannot serve it;
- ``qlora``: LoRA on a base quantized to 4-bit NF4 by bitsandbytes, prepared with
  ``prepare_model_for_kbit_training``.

An adapter folder is peft's standard layout (``adapter_config.json`` + weights) plus
``llmrec_adapter.json``, which records the base model (by its portable identity:
:mod:`llmrec.models.identity`), the adapter method, the prompt settings and
template versions, and the fingerprints of the data and catalogue it was trained on.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from llmrec.models.loader import QuantizationConfig
from llmrec.validation import check_number, reject_unknown

METHODS = ("lora", "adalora", "prefix", "qlora")
META_FILE = "llmrec_adapter.json"
MERGEABLE = ("lora", "adalora", "qlora")


@dataclass(frozen=True)
class AdapterConfig:
    """Everything that defines an adapter. Fields that do not apply to a method are ignored."""

    method: Literal["lora", "adalora", "prefix", "qlora"] = "lora"
    # LoRA family (lora, adalora, qlora)
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] | str = "all-linear"
    #: Adapt only the top N decoder layers (``None``: all). Backward stops at the lowest adapted
    #: layer, so this cuts training time roughly in proportion.
    layers: int | None = None
    # AdaLoRA: average rank starts at init_r and is pruned to target_r between tinit and
    # (total - tfinal) steps, re-allocating every delta_t steps.
    init_r: int = 12
    target_r: int = 4
    tinit: int = 0
    tfinal: int = 0
    delta_t: int = 5
    beta1: float = 0.85
    beta2: float = 0.85
    orth_reg_weight: float = 0.5
    # prefix tuning
    num_virtual_tokens: int = 16
    prefix_projection: bool = False
    # QLoRA: the base model's quantization
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"adapter method must be one of {METHODS}, got {self.method!r}")
        check_number("r", self.r, minimum=1)
        check_number("alpha", self.alpha, minimum=1)
        check_number("init_r", self.init_r, minimum=1)
        check_number("target_r", self.target_r, minimum=1)
        check_number("num_virtual_tokens", self.num_virtual_tokens, minimum=1)
        check_number("delta_t", self.delta_t, minimum=1)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.target_r > self.init_r:
            raise ValueError(f"target_r ({self.target_r}) must not exceed init_r ({self.init_r})")
        if self.layers is not None:
            check_number("layers", self.layers, minimum=1)
        if self.method == "prefix" and self.gradient_checkpointing:
            raise ValueError("prefix tuning cannot be combined with gradient checkpointing")

    @property
    def quantized(self) -> bool:
        return self.method == "qlora"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if isinstance(self.target_modules, tuple):
            out["target_modules"] = list(self.target_modules)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> AdapterConfig:
        reject_unknown(cls, raw, "adapter")
        values = dict(raw)
        if isinstance(values.get("target_modules"), list):
            values["target_modules"] = tuple(values["target_modules"])
        if isinstance(values.get("quantization"), dict):
            values["quantization"] = QuantizationConfig(**values["quantization"])
        return cls(**values)

    def to_peft(
        self, num_layers: int, total_steps: int | None = None, linear_names: Sequence[str] = ()
    ) -> Any:
        """The peft config for a model with ``num_layers`` decoder blocks.

        ``linear_names``: the model's linear sub-module names, which replace ``"all-linear"``
        when only some layers are adapted (peft needs explicit names then)."""
        from peft import AdaLoraConfig, LoraConfig, PrefixTuningConfig, TaskType

        if self.method == "prefix":
            return PrefixTuningConfig(
                task_type=TaskType.CAUSAL_LM,
                num_virtual_tokens=self.num_virtual_tokens,
                prefix_projection=self.prefix_projection,
            )
        target = (
            list(self.target_modules)
            if isinstance(self.target_modules, tuple)
            else self.target_modules
        )
        layers = None
        if self.layers is not None:
            first = max(0, num_layers - int(self.layers))
            layers = list(range(first, num_layers))
            if target == "all-linear":
                if not linear_names:
                    raise ValueError("adapting some layers with all-linear needs the layer names")
                target = sorted(set(linear_names))
        common = {
            "task_type": TaskType.CAUSAL_LM,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": target,
            "layers_to_transform": layers,
        }
        if self.method == "adalora":
            if not total_steps:
                raise ValueError("AdaLoRA needs the total number of training steps")
            # The Trainer reports steps 0 .. total-1 and peft applies the final allocation only
            # after step total - tfinal, so tfinal must be at least 2 for it to happen at all.
            tfinal = max(2, self.tfinal)
            if self.tinit + tfinal >= total_steps:  # keep a budgeting phase in short runs
                tfinal = max(0, total_steps - self.tinit - max(2, self.delta_t))
            return AdaLoraConfig(
                init_r=self.init_r,
                target_r=self.target_r,
                tinit=self.tinit,
                tfinal=tfinal,
                deltaT=self.delta_t,
                beta1=self.beta1,
                beta2=self.beta2,
                orth_reg_weight=self.orth_reg_weight,
                total_step=int(total_steps),
                **common,
            )
        return LoraConfig(r=self.r, **common)


def num_decoder_layers(model: Any) -> int:
    config = getattr(model, "config", None)
    n = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    if not n:
        raise ValueError("cannot tell how many decoder layers this model has")
    return int(n)


def attach_adapter(
    model: Any, config: AdapterConfig, total_steps: int | None = None, name: str = "default"
) -> Any:
    """Wrap ``model`` in a trainable peft model for ``config``."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if config.quantized:
        if not getattr(model, "is_loaded_in_4bit", False) and not getattr(
            model, "is_loaded_in_8bit", False
        ):
            raise ValueError("QLoRA needs a base model loaded with quantization (bits 4 or 8)")
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_config = config.to_peft(num_decoder_layers(model), total_steps, linear_names(model))
    return get_peft_model(model, peft_config, adapter_name=name)


def linear_names(model: Any) -> list[str]:
    """Short names of the linear layers inside the decoder blocks (not the output head)."""
    import torch

    names = set()
    for full, module in model.named_modules():
        is_linear = isinstance(module, torch.nn.Linear) or "Linear" in type(module).__name__
        if is_linear and ".layers." in f".{full}" and "lm_head" not in full:
            names.add(full.rsplit(".", 1)[-1])
    return sorted(names)


def trainable_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return int(trainable), int(total)


# --------------------------------------------------------------------------- AdaLoRA
def adalora_callback() -> Any:
    """A TrainerCallback that calls AdaLoRA's rank allocator after every optimizer step, before
    the gradients are zeroed (transformers is imported only here)."""
    from transformers import TrainerCallback

    class _AdaLoraCallback(TrainerCallback):
        def on_optimizer_step(self, args, state, control, model=None, **kwargs):  # noqa: D401
            if model is not None:
                target = getattr(model, "base_model", model)
                if hasattr(target, "update_and_allocate"):
                    target.update_and_allocate(state.global_step)
            return control

    return _AdaLoraCallback()


def adalora_ranks(model: Any) -> dict[str, int]:
    """The current rank of every AdaLoRA matrix (non-zero entries of its ``lora_E`` mask)."""
    ranks = {}
    for name, module in model.named_modules():
        e = getattr(module, "lora_E", None)
        if e is None or not hasattr(e, "items"):
            continue
        for adapter, param in e.items():
            ranks[f"{name}.{adapter}"] = int((param.detach() != 0).sum().item())
    return ranks


# --------------------------------------------------------------------------- save / load
@dataclass
class AdapterRecord:
    """What ``llmrec_adapter.json`` holds."""

    method: str
    adapter: dict[str, Any]
    #: The base's portable name: its Hub id when it has one, else what the recipe named.
    base_model: str
    prompt: dict[str, Any]
    templates: dict[str, str]
    data_fingerprint: str | None = None
    catalog_fingerprint: str | None = None
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    training: dict[str, Any] = field(default_factory=dict)
    #: Set on a converted adapter (``llmrec.models.convert.adalora_to_lora``):
    #: the original method, adapter settings, source folder and kept ranks.
    converted_from: dict[str, Any] | None = None
    #: The base's identity (:class:`llmrec.models.identity.BaseIdentity`: Hub id, alias,
    #: revision, weights fingerprint, folder as a hint); None in records written before it.
    base: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("converted_from", "base"):
            if out[key] is None:
                del out[key]
        return out

    def resolved_base(self, what: str = "the adapter") -> str:
        """The base model to load on this machine (:func:`llmrec.models.identity.resolve_base`)."""
        from llmrec.models.identity import resolve_base

        return resolve_base(self.base_model, self.base, what)


def write_adapter_record(folder: str | os.PathLike[str], record: AdapterRecord) -> Path:
    """Write ``record`` as the folder's ``llmrec_adapter.json`` (the only writer of that file;
    inside :func:`save_adapter`'s or a converter's atomic folder)."""
    path = Path(folder) / META_FILE
    path.write_text(json.dumps(record.to_dict(), indent=2) + "\n")
    return path


def save_adapter(model: Any, folder: str | os.PathLike[str], record: AdapterRecord) -> Path:
    """Write the adapter in peft's format plus ``llmrec_adapter.json`` (atomically)."""
    from llmrec.io import atomic_dir

    with atomic_dir(folder) as tmp:
        model.save_pretrained(str(tmp))
        write_adapter_record(tmp, record)
    return Path(folder)


def read_adapter_record(folder: str | os.PathLike[str]) -> AdapterRecord:
    path = Path(folder) / META_FILE
    if not path.is_file():
        if (Path(folder) / "adapter_config.json").is_file():
            raise FileNotFoundError(
                f"{folder} is a peft adapter without llmrec's record ({META_FILE}); llmrec cannot "
                "tell which prompts it was trained with"
            )
        raise FileNotFoundError(f"{folder} holds no adapter (no adapter_config.json)")
    raw = json.loads(path.read_text())
    known = {f.name for f in fields(AdapterRecord)}
    return AdapterRecord(**{k: v for k, v in raw.items() if k in known})


def writes_text(folder: str | os.PathLike[str]) -> bool:
    """Whether reasons (the only free text the pipeline generates) are written by this adapter.

    Only an adapter trained on reason examples (``examples.reason_fraction`` > 0) has learned to
    write. One trained only to put probability on candidate labels can forget how: the residual
    LoRA of docs/llm.md answers a reason prompt with "M, M, M, ...". Its text comes from the base
    model; it still ranks. An adapter whose record does not say how it was trained writes, as any
    peft adapter would.
    """
    fraction = (read_adapter_record(folder).training or {}).get("reason_fraction")
    return fraction is None or float(fraction) > 0


#: peft's check of pattern keys (huggingface/peft#3588) reads every ``rank_pattern`` key as a module
#: name, as LoRA's per-module ranks are. AdaLoRA's keys name the pruning mask of a ``...lora_E``
#: parameter, which peft's AdaLoRA applies itself when it loads the weights
#: (``resize_modules_by_rank_pattern``), so each reload warned that the ranks "were ignored" while
#: they were not. Only keys of that AdaLoRA form are silenced; LoRA's patterns still warn.
_ADALORA_PATTERN_ALARM = (
    r"The following rank_pattern keys did not match any targeted module and were ignored: "
    r"\['[^']*\.lora_E[.']"
)


@contextlib.contextmanager
def quiet_adalora_rank_patterns() -> Iterator[None]:
    """Load peft adapters without its false alarm about AdaLoRA rank patterns."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_ADALORA_PATTERN_ALARM, category=RuntimeWarning)
        yield


def load_adapters(model: Any, adapters: dict[str, str | os.PathLike[str]]) -> Any:
    """Attach several saved adapters to one base model, by name; the first is active."""
    from peft import PeftModel

    if not adapters:
        raise ValueError("no adapters to load")
    peft_model = None
    for name, folder in adapters.items():
        read_adapter_record(folder)  # fail early with a clear message
        with quiet_adalora_rank_patterns():
            if peft_model is None:
                peft_model = PeftModel.from_pretrained(model, str(folder), adapter_name=name)
            else:
                peft_model.load_adapter(str(folder), adapter_name=name)
    first = next(iter(adapters))
    peft_model.set_adapter(first)
    peft_model.eval()
    return peft_model


def merge_adapter(peft_model: Any, method: str) -> Any:
    """Fold a LoRA/AdaLoRA adapter into the base weights (a plain model comes back)."""
    if method not in MERGEABLE:
        raise ValueError(f"{method} adapters cannot be merged into the base weights")
    return peft_model.merge_and_unload()
