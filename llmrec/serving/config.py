"""What ``llmrec serve --config NAME_OR_PATH`` reads (shipped: ``serve/*.yaml``): one typed config
per concern.

The same schema comes from YAML and from Python; unknown keys are errors (a typo must not silently
fall back to a default), and every limit is checked with a message that names the field.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from llmrec.ranking.backends import BACKENDS, DEFAULT_BASE_MODEL, BackendConfig
from llmrec.ranking.reasons import ReasonMode
from llmrec.shipped import SERVE_CONFIGS
from llmrec.validation import check_number, reject_unknown


@dataclass(frozen=True)
class Limits:
    """Request limits: anything over them is refused with a 4xx, never queued."""

    max_k: int = 50
    max_body_bytes: int = 64 * 1024
    max_messages: int = 64
    max_message_chars: int = 4000
    max_history: int = 200
    #: Seconds a request may take before it is answered 504 (its queued work is dropped).
    timeout_s: float = 120.0
    #: Requests in flight at once; more are answered 429 at once instead of piling up.
    max_concurrency: int = 32

    def __post_init__(self) -> None:
        for f in fields(self):
            kind = float if f.name == "timeout_s" else int
            check_number(f.name, getattr(self, f.name), kind=kind, minimum=1)


@dataclass(frozen=True)
class Batching:
    """Dynamic batching of concurrent requests into one forward pass."""

    #: Prompts in one forward pass at most.
    max_batch: int = 8
    #: How long the worker waits for more prompts once one has arrived (milliseconds).
    wait_ms: float = 5.0
    #: Jobs waiting for the model at most; more are answered 429.
    max_queue: int = 256

    def __post_init__(self) -> None:
        check_number("max_batch", self.max_batch, minimum=1)
        check_number("wait_ms", self.wait_ms, kind=float, minimum=0)
        check_number("max_queue", self.max_queue, minimum=1)


@dataclass(frozen=True)
class ServeConfig:
    backend: str = "transformers"
    #: Built-in dataset name or a prepared dataset folder (the catalogue served).
    data: str = "ml-100k"
    #: A folder from ``llmrec retrieve build``.
    retriever: str = "runs/retriever"
    #: Base model (alias, Hugging Face id or folder); adapters name theirs in their record.
    base_model: str = DEFAULT_BASE_MODEL
    #: Served name of the base model (zero-shot ranking).
    base_name: str = "base"
    #: Served name -> adapter folder (``<finetune out>/adapter``).
    adapters: Mapping[str, str] = field(default_factory=dict)
    #: The model a request gets when it names none (default: the first adapter, else the base).
    default_model: str | None = None
    num_candidates: int = 20
    #: Reasons in /v1/recommend with ``explain`` and in chat replies: "generate" (LLM, grounded,
    #: template fallback), "template" (facts only, fast) or "none".
    reasons: ReasonMode = ReasonMode.GENERATE
    device: str = "auto"
    #: "auto" (bf16 on GPUs and CPUs with bf16 units, else fp32), "float32", "bfloat16", ...
    dtype: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8000
    #: Accepted bearer keys: listed here, or read (comma-separated) from this environment variable.
    api_keys: tuple[str, ...] = ()
    api_keys_env: str | None = "LLMREC_API_KEYS"
    #: Seconds uvicorn waits for in-flight requests on shutdown.
    graceful_shutdown_s: float = 30.0
    limits: Limits = field(default_factory=Limits)
    batching: Batching = field(default_factory=Batching)
    #: vLLM engine arguments (backend "vllm" only), passed to ``vllm.LLM``.
    vllm: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.reasons not in ReasonMode.values():
            raise ValueError(f"reasons must be one of {ReasonMode.values()}, got {self.reasons!r}")
        object.__setattr__(self, "reasons", ReasonMode(self.reasons))
        check_number("num_candidates", self.num_candidates, minimum=2, maximum=26)
        check_number("port", self.port, minimum=0, maximum=65535)
        names = [self.base_name, *self.adapters]
        if len(set(names)) != len(names):
            raise ValueError(f"served model names repeat: {names}")
        if self.default_model is not None and self.default_model not in names:
            raise ValueError(f"default_model {self.default_model!r} is not one of {names}")

    def backend_config(self) -> BackendConfig:
        """What the model backend needs of this config."""
        return BackendConfig(
            backend=self.backend,
            base_model=self.base_model,
            base_name=self.base_name,
            adapters=dict(self.adapters),
            device=self.device,
            dtype=self.dtype,
            batch_size=self.batching.max_batch,
            vllm=dict(self.vllm),
        )

    @property
    def model_names(self) -> list[str]:
        return [self.base_name, *self.adapters]

    @property
    def default(self) -> str:
        return self.default_model or next(iter(self.adapters), self.base_name)

    def keys(self) -> frozenset[str]:
        keys = set(self.api_keys)
        if self.api_keys_env and os.environ.get(self.api_keys_env):
            keys.update(k.strip() for k in os.environ[self.api_keys_env].split(",") if k.strip())
        return frozenset(keys)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["api_keys"] = ["***"] * len(self.api_keys)
        out["reasons"] = self.reasons.value
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], base_dir: Path | None = None) -> ServeConfig:
        """From a parsed YAML mapping; relative paths are taken from ``base_dir`` when they exist
        there (the config's folder), else from the working directory."""
        reject_unknown(cls, raw, "serve config")
        values = dict(raw)
        if "limits" in values:
            reject_unknown(Limits, values["limits"] or {}, "limits")
            values["limits"] = Limits(**(values["limits"] or {}))
        if "batching" in values:
            reject_unknown(Batching, values["batching"] or {}, "batching")
            values["batching"] = Batching(**(values["batching"] or {}))
        if isinstance(values.get("api_keys"), list):
            values["api_keys"] = tuple(str(k) for k in values["api_keys"])
        adapters = values.get("adapters") or {}
        if not isinstance(adapters, Mapping):
            raise ValueError("adapters must map a served name to an adapter folder")
        values["adapters"] = {str(k): str(v) for k, v in adapters.items()}
        return cls(**values)


def load_serve_config(
    path: str | os.PathLike[str], overrides: Mapping[str, Any] = ()
) -> ServeConfig:
    """Read a serve YAML, given by path or by the name of a shipped one (``"cpu"``, ``"vllm"``:
    ``serve/*.yaml``, inside the package too); ``overrides`` (top-level keys) win over the file.
    Relative paths inside the config are taken from the working directory."""
    import yaml

    path = SERVE_CONFIGS.resolve(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: a serve config is a mapping of settings")
    raw = {**raw, **dict(overrides)}
    return ServeConfig.from_dict(raw)
