"""The vLLM backend (CUDA GPUs): the base model and every adapter run by one ``vllm.LLM``.

One engine holds the base model; each adapter is a ``LoRARequest`` chosen per call, so requests
for different adapters share the GPU and its batches (multi-LoRA). What it serves:

- ``lora`` adapters as they are;
- ``adalora`` adapters converted once to an equivalent plain LoRA
  (:func:`llmrec.models.convert.adalora_to_lora`) in ``$LLMREC_CACHE/vllm-adapters/``;
- ``qlora`` adapters as plain LoRA on the engine's base model: unquantized unless the serve
  config sets ``vllm: {quantization: bitsandbytes}`` (in-flight 4-bit for the whole engine), so
  the adapter runs on a slightly different base than the NF4 one it was trained on;
- ``prefix`` adapters: refused (vLLM has no prefix tuning); serve them with backend: transformers.

Scoring is the one-pass listwise ranking of :class:`llmrec.ranking.scorer.LLMScorer`: one
generated token per prompt, with vLLM returning the log-probabilities of the label tokens
(``SamplingParams.logprob_token_ids``; on a vLLM without it, the labels are made the only
allowed tokens and their processed log-probabilities read back), renormalised over the labels.
Prompts go in as token ids made by the same tokenizer as the transformers backend, so both
backends see identical tokens. When labels are not single tokens, the model answers one label
under vLLM's structured outputs (``choice``) and the rest follow in label order.

Everything that does not need vLLM (request construction, reading outputs, refusals, engine
arguments) is a small function here, tested with fake objects; ``vllm`` is imported only when
:class:`VLLMBackend` is built.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from llmrec.data.dataset import RecDataset
from llmrec.models.adapters import META_FILE
from llmrec.models.convert import (
    VLLM_LORA_RANKS,
    WEIGHTS_FILE,
    adalora_to_lora,
    read_adapter_config,
    vllm_rank,
)
from llmrec.prompts.builder import LABELS, PromptBuilder, PromptConfig, RankPrompt, label_token_ids
from llmrec.ranking.adapter_folder import open_adapter_folder
from llmrec.ranking.backends.base import BackendConfig, ModelInfo, RankModel

logger = logging.getLogger(__name__)

VLLM_HINT = "pip install 'llmrec[vllm]' (CUDA GPUs only)"
#: A prompt has at most 26 labels; vLLM refuses more log-probabilities than ``max_logprobs``
#: (default 20) per request.
MIN_MAX_LOGPROBS = len(LABELS)
#: Engine arguments the backend sets itself.
RESERVED_ENGINE_ARGS = ("model", "enable_lora")
#: Tokens for a label answered under structured outputs (labels are one or two tokens).
CHOICE_MAX_TOKENS = 8


def import_vllm() -> SimpleNamespace:
    """The vLLM classes the backend uses, or an ImportError naming the extra to install."""
    try:
        import vllm
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest
    except ImportError as exc:
        raise ImportError(
            f"backend: vllm needs vLLM: {VLLM_HINT}; on CPUs use backend: transformers"
        ) from exc
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:  # vLLM < 0.10.2 named it GuidedDecodingParams
        StructuredOutputsParams = None  # noqa: N806
    return SimpleNamespace(
        LLM=LLM,
        SamplingParams=SamplingParams,
        LoRARequest=LoRARequest,
        StructuredOutputsParams=StructuredOutputsParams,
        version=str(getattr(vllm, "__version__", "unknown")),
    )


# --------------------------------------------------------------------------- adapters
@dataclass(frozen=True)
class ServedAdapter:
    """One adapter as vLLM will load it."""

    name: str
    folder: str  # as configured
    lora_path: str  # what vLLM loads: ``folder``, or its LoRA conversion
    method: str
    rank: int
    base_model: str
    prompt: PromptConfig
    fusion_weight: float
    #: False: text is generated without the LoRA (it was trained only to rank)
    writes_text: bool = True


def lora_rank(folder: str | Path) -> int:
    """The LoRA rank vLLM must allow for the adapter in ``folder``; refuses what vLLM cannot
    serve (another peft method, DoRA, saved modules, biases)."""
    config = read_adapter_config(folder)
    peft_type = str(config.get("peft_type", "")).upper()
    problems = []
    if peft_type != "LORA":
        problems.append(f"it is a {peft_type or 'unknown'} adapter, vLLM serves LoRA only")
    if config.get("use_dora"):
        problems.append("DoRA is not served by vLLM")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save={config['modules_to_save']} is not served by vLLM")
    if config.get("bias", "none") != "none":
        problems.append(f"bias={config['bias']!r} is not served by vLLM")
    if problems:
        raise ValueError(f"{folder}: {'; '.join(problems)}; serve it with backend: transformers")
    pattern = config.get("rank_pattern") or {}
    return max([int(config["r"]), *(int(r) for r in pattern.values())])


def converted_adalora(name: str, folder: str | Path, cache_dir: Path) -> Path:
    """The LoRA conversion of an AdaLoRA adapter, made once and kept under ``cache_dir`` by a
    hash of the adapter's files (a retrained adapter gets a new conversion)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for part in ("adapter_config.json", WEIGHTS_FILE, META_FILE):
        if (folder / part).is_file():
            digest.update((folder / part).read_bytes())
    target = cache_dir / f"{name}-{digest.hexdigest()[:16]}"
    if (target / "adapter_config.json").is_file():
        return target
    logger.info("converting AdaLoRA adapter %r (%s) to LoRA for vLLM in %s", name, folder, target)
    return adalora_to_lora(folder, target)


def plan_adapter(
    name: str,
    folder: str,
    config: BackendConfig,
    dataset: RecDataset,
    base_dir: str,
    cache_dir: Path,
) -> ServedAdapter:
    """Check one configured adapter and decide what vLLM loads for it."""
    from llmrec.models.loader import resolve_model

    adapter = open_adapter_folder(folder, dataset.catalog, name)
    base = config.base_for(adapter)
    if base != config.base_model and resolve_model(base) != base_dir:
        raise ValueError(
            f"adapter {name!r} was trained on {base!r}, but the vLLM engine serves one base "
            f"model, {config.base_model!r}; set base_model: {base} or serve it with "
            "backend: transformers"
        )
    method = adapter.method
    if method == "prefix":
        raise ValueError(
            f"adapter {name!r} ({folder}) is prefix-tuned; vLLM serves LoRA adapters only, "
            "serve it with backend: transformers"
        )
    if method == "adalora":
        lora_path = converted_adalora(name, folder, cache_dir)
    elif method in ("lora", "qlora"):
        lora_path = Path(folder)
        if method == "qlora":
            quantized = config.vllm.get("quantization")
            logger.warning(
                "adapter %r is QLoRA (trained on a 4-bit base); vLLM serves its LoRA on the %s "
                "base",
                name,
                f"{quantized}-quantized" if quantized else "unquantized",
            )
    else:
        raise ValueError(f"adapter {name!r}: unknown adapter method {method!r}")
    return ServedAdapter(
        name,
        str(folder),
        str(lora_path),
        method,
        lora_rank(lora_path),
        base,
        adapter.prompt,
        adapter.fusion_weight,
        adapter.writes_text,
    )


# --------------------------------------------------------------------------- engine arguments
def check_device(device: str) -> None:
    if device not in ("auto", "cuda"):
        raise ValueError(
            f"backend: vllm runs on the CUDA GPUs it is given (CUDA_VISIBLE_DEVICES), "
            f"got device {device!r}; use device: auto, or backend: transformers on CPUs"
        )


def max_lora_rank(ranks: Sequence[int], requested: int | None = None) -> int:
    """``max_lora_rank`` for adapters of ``ranks``: the requested value if it is one vLLM
    allows and holds them all, else the smallest allowed value that does."""
    needed = max([1, *ranks])
    if requested is None:
        return vllm_rank(needed)
    if requested not in VLLM_LORA_RANKS:
        raise ValueError(f"vllm.max_lora_rank must be one of {VLLM_LORA_RANKS}, got {requested}")
    if requested < needed:
        raise ValueError(
            f"vllm.max_lora_rank {requested} is below the largest adapter rank {needed}; "
            f"use {vllm_rank(needed)} or leave it out"
        )
    return requested


def engine_kwargs(
    config: BackendConfig,
    base_dir: str,
    adapters: Sequence[ServedAdapter],
    logprob_token_ids: bool,
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM``: the base folder, LoRA settings sized for ``adapters``,
    room for the label log-probabilities, then the serve config's ``vllm`` mapping."""
    extra = dict(config.vllm)
    reserved = [k for k in RESERVED_ENGINE_ARGS if k in extra]
    if reserved:
        raise ValueError(
            f"vllm.{reserved[0]} is set by the backend (the base is base_model, LoRA is on when "
            "adapters are listed); remove it from the serve config"
        )
    kwargs: dict[str, Any] = {"model": base_dir}
    if adapters:
        kwargs["enable_lora"] = True
        kwargs["max_lora_rank"] = max_lora_rank(
            [a.rank for a in adapters], extra.pop("max_lora_rank", None)
        )
        kwargs["max_loras"] = int(extra.pop("max_loras", len(adapters)))
    max_logprobs = int(extra.pop("max_logprobs", MIN_MAX_LOGPROBS))
    if max_logprobs != -1 and max_logprobs < MIN_MAX_LOGPROBS:
        raise ValueError(
            f"vllm.max_logprobs {max_logprobs} cannot hold the log-probabilities of "
            f"{MIN_MAX_LOGPROBS} labels; leave it out or set it to at least {MIN_MAX_LOGPROBS}"
        )
    kwargs["max_logprobs"] = max_logprobs
    if not logprob_token_ids:
        # Fallback scoring reads the top log-probabilities after the allowed-token mask.
        mode = extra.pop("logprobs_mode", "processed_logprobs")
        if mode != "processed_logprobs":
            raise ValueError(
                f"this vLLM has no SamplingParams.logprob_token_ids, so scoring needs "
                f"logprobs_mode processed_logprobs, got vllm.logprobs_mode {mode!r}"
            )
        kwargs["logprobs_mode"] = mode
    kwargs.update(extra)
    return kwargs


# --------------------------------------------------------------------------- requests
def has_logprob_token_ids(sampling_params: Any) -> bool:
    """Whether this vLLM's ``SamplingParams`` takes ``logprob_token_ids`` (added with the
    generative scoring API, vllm-project/vllm#34539)."""
    names = getattr(sampling_params, "__struct_fields__", None)  # a msgspec Struct
    if names is None:
        try:
            names = tuple(inspect.signature(sampling_params).parameters)
        except (TypeError, ValueError):
            names = ()
    return "logprob_token_ids" in names


def scoring_params(
    sampling_params: Callable[..., Any], label_ids: Sequence[int], logprob_token_ids: bool
) -> Any:
    """One greedy token whose log-probabilities come back for exactly the label tokens.

    ``logprobs`` is set to the number of labels as well: vLLM versions that read only
    ``logprobs`` to decide whether to return any need it, and newer ones require it to equal
    ``len(logprob_token_ids)`` when both are given."""
    ids = [int(i) for i in label_ids]
    common = {"max_tokens": 1, "temperature": 0.0, "logprobs": len(ids), "detokenize": False}
    if logprob_token_ids:
        return sampling_params(logprob_token_ids=ids, **common)
    return sampling_params(allowed_token_ids=ids, **common)


def generation_params(
    sampling_params: Callable[..., Any],
    max_new_tokens: int,
    min_new_tokens: int = 0,
    sample_seed: int | None = None,
) -> Any:
    """Greedy, or sampled like LLMScorer.generate (temperature 0.7, top-p 0.9) with a seed."""
    kwargs: dict[str, Any] = {
        "max_tokens": int(max_new_tokens),
        "min_tokens": int(min_new_tokens),
        "temperature": 0.0,
        "skip_special_tokens": True,
    }
    if sample_seed is not None:
        kwargs.update(temperature=0.7, top_p=0.9, seed=int(sample_seed))
    return sampling_params(**kwargs)


def choice_params(
    sampling_params: Callable[..., Any],
    structured: Callable[..., Any] | None,
    labels: Sequence[str],
) -> Any:
    """Greedy answer constrained to exactly one of ``labels`` (vLLM structured outputs)."""
    if structured is None:
        raise RuntimeError(
            "these labels are not single tokens for this tokenizer and this vLLM has no "
            "StructuredOutputsParams to constrain a generated answer; upgrade vLLM or use "
            "backend: transformers"
        )
    return sampling_params(
        max_tokens=CHOICE_MAX_TOKENS,
        temperature=0.0,
        structured_outputs=structured(choice=list(labels)),
    )


def tokens_prompt(tokenizer: Any, text: str) -> dict[str, list[int]]:
    """A vLLM ``TokensPrompt``: the text's ids from our tokenizer, no special tokens added (as
    LLMScorer.encode does), so vLLM cannot add a BOS the transformers backend does not see."""
    return {"prompt_token_ids": list(tokenizer(text, add_special_tokens=False)["input_ids"])}


def label_logprobs(output: Any, label_ids: Sequence[int]) -> np.ndarray:
    """Log-softmax over the label tokens (in ``label_ids`` order) from one ``RequestOutput``.

    vLLM reports ``log p(token)`` over the whole vocabulary at the first generated position
    (``output.outputs[0].logprobs[0]``: token id -> ``Logprob``); renormalising over the labels
    gives exactly ``log_softmax(logits[label_ids])``, what LLMScorer computes."""
    completions = getattr(output, "outputs", None) or []
    positions = completions[0].logprobs if completions else None
    if not positions:
        raise RuntimeError(
            "vLLM returned no log-probabilities for a scoring request (is SamplingParams.logprobs "
            "honoured by this vLLM?)"
        )
    first = positions[0]
    values = []
    for token in label_ids:
        entry = first.get(int(token)) if hasattr(first, "get") else None
        if entry is None:
            raise RuntimeError(
                f"vLLM returned no log-probability for label token {token} (got tokens "
                f"{sorted(first)[:30]}); check vllm.max_logprobs and vllm.logprobs_mode"
            )
        values.append(float(getattr(entry, "logprob", entry)))
    logp = np.asarray(values, dtype=np.float64)
    top = logp.max()
    if not math.isfinite(top):
        raise RuntimeError(f"vLLM gave the labels no finite log-probability: {values}")
    return (logp - top - np.log(np.exp(logp - top).sum())).astype(np.float32)


def answer_text(output: Any) -> str:
    completions = getattr(output, "outputs", None) or []
    return str(completions[0].text) if completions else ""


# --------------------------------------------------------------------------- served models
class VLLMEngine:
    """The shared part: one ``vllm.LLM``, the tokenizer and the request settings."""

    def __init__(self, llm: Any, tokenizer: Any, api: SimpleNamespace) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.api = api
        self.logprob_token_ids = has_logprob_token_ids(api.SamplingParams)
        self._label_ids: dict[tuple[str, ...], dict[str, int] | None] = {}

    def label_ids(self, prompt: RankPrompt) -> list[int] | None:
        """The prompt's label token ids in label order, or None when they are not single
        tokens (cached by label set, like LLMScorer.label_ids)."""
        key = tuple(sorted(prompt.labels))
        if key not in self._label_ids:
            try:
                ids = label_token_ids(self.tokenizer, prompt.text, key)
            except ValueError:
                self._label_ids[key] = None
            else:
                self._label_ids[key] = dict(zip(key, ids, strict=True))
        found = self._label_ids[key]
        return None if found is None else [found[label] for label in prompt.labels]

    def run(self, texts: Sequence[str], params: Any, lora: Any | None) -> list[Any]:
        prompts = [tokens_prompt(self.tokenizer, t) for t in texts]
        return list(self.llm.generate(prompts, params, use_tqdm=False, lora_request=lora))

    def score(
        self, prompts: Sequence[RankPrompt], lora: Any | None, builder: PromptBuilder
    ) -> list[np.ndarray]:
        if not prompts:
            return []
        ids = [self.label_ids(p) for p in prompts]
        if any(i is None for i in ids):
            return self.rank_by_choice(prompts, lora, builder)
        params = [scoring_params(self.api.SamplingParams, i, self.logprob_token_ids) for i in ids]
        outputs = self.run([p.text for p in prompts], params, lora)
        return [label_logprobs(o, i) for o, i in zip(outputs, ids, strict=True)]

    def rank_by_choice(
        self, prompts: Sequence[RankPrompt], lora: Any | None, builder: PromptBuilder
    ) -> list[np.ndarray]:
        """Labels that are not single tokens: one label chosen under structured outputs goes
        first, the others follow in label order; scores as LLMScorer's generative fallback."""
        from llmrec.ranking.scorer import _scores_from_order, parse_ranking

        params = [
            choice_params(self.api.SamplingParams, self.api.StructuredOutputsParams, p.labels)
            for p in prompts
        ]
        outputs = self.run([p.text for p in prompts], params, lora)
        return [
            _scores_from_order(p, parse_ranking(answer_text(o), p, builder))
            for p, o in zip(prompts, outputs, strict=True)
        ]

    def generate(
        self,
        texts: Sequence[str],
        lora: Any | None,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        sample_seed: int | None = None,
    ) -> list[str]:
        if not texts:
            return []
        params = generation_params(
            self.api.SamplingParams, max_new_tokens, min_new_tokens, sample_seed
        )
        return [answer_text(o) for o in self.run(texts, params, lora)]


class VLLMModel:
    """One served name: the shared engine with this name's ``LoRARequest`` (None: the base)."""

    def __init__(
        self, engine: VLLMEngine, info: ModelInfo, builder: PromptBuilder, lora: Any | None
    ) -> None:
        self.engine = engine
        self.info = info
        self.builder = builder
        self.lora = lora

    def score(self, prompts: Sequence[RankPrompt], progress: bool = False) -> list[np.ndarray]:
        return self.engine.score(prompts, self.lora, self.builder)

    def generate(
        self,
        texts: Sequence[str],
        max_new_tokens: int,
        min_new_tokens: int = 0,
        sample_seed: int | None = None,
    ) -> list[str]:
        # an adapter trained only to rank writes with the base (ModelInfo.writes_text)
        lora = self.lora if self.info.writes_text else None
        return self.engine.generate(texts, lora, max_new_tokens, min_new_tokens, sample_seed)


class VLLMBackend:
    """vLLM on CUDA GPUs: the base and each LoRA adapter (AdaLoRA converted) in one engine."""

    kind = "vllm"

    def __init__(self, config: BackendConfig, dataset: RecDataset) -> None:
        from llmrec.fetch import cache_root
        from llmrec.models.loader import load_tokenizer, resolve_model

        api = import_vllm()
        check_device(config.device)
        base_dir = resolve_model(config.base_model)
        cache_dir = cache_root() / "vllm-adapters"
        adapters = [
            plan_adapter(name, folder, config, dataset, base_dir, cache_dir)
            for name, folder in config.adapters.items()
        ]
        tokenizer = load_tokenizer(base_dir)
        logprob_token_ids = has_logprob_token_ids(api.SamplingParams)
        kwargs = engine_kwargs(config, base_dir, adapters, logprob_token_ids)
        logger.info("starting vLLM %s on %s with %d adapters", api.version, base_dir, len(adapters))
        self._engine = VLLMEngine(api.LLM(**kwargs), tokenizer, api)
        self.engine_kwargs = kwargs

        catalog, profiles = dataset.catalog, dataset.profiles()
        base_builder = PromptBuilder(catalog, tokenizer, config.base_prompt, profiles)
        base_info = ModelInfo(config.base_name, config.base_model, None, None, 1.0)
        self._models: dict[str, RankModel] = {}
        if config.load_base:
            self._models[config.base_name] = VLLMModel(self._engine, base_info, base_builder, None)
        for int_id, adapter in enumerate(adapters, start=1):  # vLLM wants ids > 0
            lora = api.LoRARequest(
                lora_name=adapter.name, lora_int_id=int_id, lora_path=adapter.lora_path
            )
            builder = PromptBuilder(catalog, tokenizer, adapter.prompt, profiles)
            info = ModelInfo(
                adapter.name,
                adapter.base_model,
                adapter.method,
                adapter.folder,
                adapter.fusion_weight,
                adapter.writes_text,
            )
            self._models[adapter.name] = VLLMModel(self._engine, info, builder, lora)

    def models(self) -> dict[str, RankModel]:
        return dict(self._models)

    def close(self) -> None:
        self._models.clear()
        self._engine.llm = None  # drop the engine; vLLM frees the GPU when it is collected
