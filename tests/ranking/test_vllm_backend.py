"""The vLLM backend.

On CPU (always): the pure parts with fake objects, and the whole :class:`VLLMBackend` built on a
fake ``vllm`` module whose ``LLM`` runs the tiny transformers model (peft for each
``LoRARequest``), checked against LLMScorer + peft on the same adapters and prompts. That checks
everything of ours (adapter planning, AdaLoRA conversion, engine arguments, requests, token ids,
reading log-probabilities back) but not vLLM itself.

On a CUDA GPU with vLLM installed: the same comparison against the real engine
(``test_real_vllm_matches_transformers``); it skips elsewhere, saying why.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from llmrec.models.adapters import load_adapters
from llmrec.models.convert import VLLM_LORA_RANKS
from llmrec.models.loader import load_model
from llmrec.prompts import PromptBuilder, PromptConfig
from llmrec.ranking.adapter_folder import open_adapter_folder
from llmrec.ranking.backends import BackendConfig
from llmrec.ranking.backends.vllm import (
    VLLMBackend,
    VLLMEngine,
    choice_params,
    engine_kwargs,
    generation_params,
    has_logprob_token_ids,
    import_vllm,
    label_logprobs,
    lora_rank,
    max_lora_rank,
    plan_adapter,
    scoring_params,
    tokens_prompt,
)
from llmrec.ranking.scorer import LLMScorer

from ..llm_fakes import ITEM_IDS, make_sequence
from ..serving.fakes import SMALL, make_adalora_adapter, make_lora_adapter

pytestmark = pytest.mark.usefixtures("one_torch_thread")
#: Prompt settings of the LoRA adapter: differ from the default so that a builder with the wrong
#: settings makes other prompts.
LORA_PROMPT = PromptConfig(max_history=4, history_token_budget=60, seed=7)


# --------------------------------------------------------------------------- fakes of vLLM
class FakeSamplingParams:
    """Accepts only the fields it declares, like vLLM's msgspec ``SamplingParams``."""

    __struct_fields__ = (
        "max_tokens",
        "min_tokens",
        "temperature",
        "top_p",
        "seed",
        "logprobs",
        "logprob_token_ids",
        "allowed_token_ids",
        "detokenize",
        "skip_special_tokens",
        "structured_outputs",
    )

    def __init__(self, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(self.__struct_fields__)
        if unknown:
            raise TypeError(f"unexpected SamplingParams fields {sorted(unknown)}")
        self.kwargs = kwargs
        for name in self.__struct_fields__:
            setattr(self, name, kwargs.get(name))


class OldSamplingParams(FakeSamplingParams):
    """A vLLM from before ``logprob_token_ids``."""

    __struct_fields__ = tuple(
        f for f in FakeSamplingParams.__struct_fields__ if f != "logprob_token_ids"
    )


@dataclass
class FakeLoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


@dataclass
class FakeStructuredOutputsParams:
    choice: list[str] | None = None


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class Completion:
    text: str
    logprobs: list[dict[int, Logprob]] | None = None


@dataclass
class RequestOutput:
    outputs: list[Completion] = field(default_factory=list)


class FakeLLM:
    """``vllm.LLM`` run by transformers + peft on the CPU, with vLLM's request checks."""

    instances: list[FakeLLM] = []

    def __init__(self, model: str, **kwargs: Any) -> None:
        self.model_dir = model
        self.kwargs = kwargs
        self.loaded = load_model(model, device="cpu", dtype="float32")
        self.adapters: dict[int, Any] = {}
        self.calls: list[tuple[list[dict], Any, Any]] = []
        FakeLLM.instances.append(self)

    def _model(self, lora: FakeLoRARequest | None) -> Any:
        if lora is None:
            return self.loaded.model
        assert self.kwargs.get("enable_lora"), "LoRARequest without enable_lora"
        assert lora.lora_int_id > 0
        if lora.lora_int_id not in self.adapters:
            from peft import PeftModel

            config = json.loads((Path(lora.lora_path) / "adapter_config.json").read_text())
            assert config["peft_type"] == "LORA", f"vLLM cannot load {config['peft_type']}"
            assert config["r"] <= self.kwargs["max_lora_rank"]
            base = load_model(self.model_dir, device="cpu", dtype="float32").model
            self.adapters[lora.lora_int_id] = PeftModel.from_pretrained(base, lora.lora_path).eval()
        return self.adapters[lora.lora_int_id]

    def generate(self, prompts, params, *, use_tqdm=True, lora_request=None):  # noqa: ANN001, ANN201
        self.calls.append((prompts, params, lora_request))
        params = params if isinstance(params, list) else [params] * len(prompts)
        assert len(params) == len(prompts)
        model = self._model(lora_request)
        self.answers = [
            self._one(model, p["prompt_token_ids"], sp)
            for p, sp in zip(prompts, params, strict=True)
        ]
        return self.answers

    def _one(self, model: Any, ids: list[int], sp: FakeSamplingParams) -> RequestOutput:
        tokenizer = self.loaded.tokenizer
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        if sp.structured_outputs is not None:
            choices = sp.structured_outputs.choice
            first = [tokenizer(c, add_special_tokens=False)["input_ids"][0] for c in choices]
            return RequestOutput([Completion(choices[int(torch.argmax(logits[first]))])])
        if sp.logprobs is None:
            out = model.generate(
                input_ids=torch.tensor([ids]),
                max_new_tokens=sp.max_tokens,
                min_new_tokens=sp.min_tokens or None,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            return RequestOutput(
                [Completion(tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True))]
            )
        limit = self.kwargs.get("max_logprobs", 20)
        assert limit == -1 or sp.logprobs <= limit, "vLLM: requested logprobs over max_logprobs"
        if getattr(sp, "logprob_token_ids", None) is not None:
            assert sp.logprobs == len(sp.logprob_token_ids), (
                "vLLM: logprobs != len(logprob_token_ids)"
            )
            logp = torch.log_softmax(logits, -1)  # raw log-probabilities
            wanted = list(sp.logprob_token_ids)
        else:  # allowed_token_ids with logprobs_mode processed_logprobs: the top after the mask
            assert self.kwargs.get("logprobs_mode") == "processed_logprobs"
            masked = torch.full_like(logits, float("-inf"))
            masked[sp.allowed_token_ids] = logits[sp.allowed_token_ids]
            logp = torch.log_softmax(masked, -1)
            wanted = torch.topk(logp, sp.logprobs).indices.tolist()
        sampled = int(torch.argmax(logp))
        entries = {int(t): Logprob(float(logp[t])) for t in [*wanted, sampled]}
        return RequestOutput([Completion("", [entries])])


def fake_vllm(sampling_params: type = FakeSamplingParams) -> ModuleType:
    vllm = ModuleType("vllm")
    vllm.__version__ = "0.0-fake"
    vllm.LLM = FakeLLM
    vllm.SamplingParams = sampling_params
    lora, request, sp = (
        ModuleType("vllm.lora"),
        ModuleType("vllm.lora.request"),
        ModuleType("vllm.sampling_params"),
    )
    request.LoRARequest = FakeLoRARequest
    sp.StructuredOutputsParams = FakeStructuredOutputsParams
    vllm.lora, lora.request, vllm.sampling_params = lora, request, sp
    return vllm


def install(monkeypatch: pytest.MonkeyPatch, sampling_params: type = FakeSamplingParams) -> None:
    module = fake_vllm(sampling_params)
    for name, value in [
        ("vllm", module),
        ("vllm.lora", module.lora),
        ("vllm.lora.request", module.lora.request),
        ("vllm.sampling_params", module.sampling_params),
    ]:
        monkeypatch.setitem(sys.modules, name, value)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def adapter_dirs(tmp_path_factory, tiny_llm_dir) -> dict[str, Path]:  # noqa: ANN001
    root = tmp_path_factory.mktemp("adapters")
    lora = make_lora_adapter(tiny_llm_dir, root / "lora", LORA_PROMPT, base_model=tiny_llm_dir)
    ada, _, _ = make_adalora_adapter(tiny_llm_dir, root / "adalora", SMALL, base_model=tiny_llm_dir)
    return {"rec-lora": lora, "rec-ada": ada}


def serve_config(tiny_llm_dir: str, adapters: dict[str, Path], **overrides: Any) -> BackendConfig:
    return BackendConfig(
        backend="vllm",
        base_model=tiny_llm_dir,
        adapters={k: str(v) for k, v in adapters.items()},
        **overrides,
    )


def rank_prompts(builder: PromptBuilder, n: int = 4, k: int = 6) -> list:
    return [
        builder.listwise(
            make_sequence(f"u{u}", ITEM_IDS[u : u + 5]), ITEM_IDS[10 + 2 * u : 10 + 2 * u + k]
        )
        for u in range(n)
    ]


def reference_scores(
    model_dir: str, folder: Path | None, prompts: list, builder: PromptBuilder
) -> list[np.ndarray]:
    """LLMScorer + peft on the adapter folder as trained (AdaLoRA not converted), fp32."""
    loaded = load_model(model_dir, device="cpu", dtype="float32")
    model = loaded.model if folder is None else load_adapters(loaded.model, {"reference": folder})
    return LLMScorer(model, loaded.tokenizer, builder, batch_size=2).score(prompts)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:  # noqa: ANN001
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# --------------------------------------------------------------------------- pure parts
def test_scoring_params_ask_for_the_label_tokens() -> None:
    params = scoring_params(FakeSamplingParams, [17, 5, 9], logprob_token_ids=True)
    assert params.kwargs == {
        "max_tokens": 1,
        "temperature": 0.0,
        "logprobs": 3,
        "logprob_token_ids": [17, 5, 9],
        "detokenize": False,
    }
    old = scoring_params(OldSamplingParams, [17, 5, 9], logprob_token_ids=False)
    assert (
        old.allowed_token_ids == [17, 5, 9]
        and old.logprobs == 3
        and "logprob_token_ids" not in old.kwargs
    )


def test_has_logprob_token_ids() -> None:
    assert has_logprob_token_ids(FakeSamplingParams)
    assert not has_logprob_token_ids(OldSamplingParams)

    def plain(max_tokens: int = 1, logprob_token_ids: list[int] | None = None) -> None: ...

    assert has_logprob_token_ids(plain)  # read from the signature when not a msgspec Struct


def test_generation_params() -> None:
    greedy = generation_params(FakeSamplingParams, 40, 5)
    assert greedy.kwargs == {
        "max_tokens": 40,
        "min_tokens": 5,
        "temperature": 0.0,
        "skip_special_tokens": True,
    }
    sampled = generation_params(FakeSamplingParams, 40, sample_seed=3)
    assert (sampled.temperature, sampled.top_p, sampled.seed) == (0.7, 0.9, 3)


def test_choice_params_use_structured_outputs() -> None:
    params = choice_params(FakeSamplingParams, FakeStructuredOutputsParams, ("B", "A", "C"))
    assert params.structured_outputs.choice == ["B", "A", "C"] and params.temperature == 0.0
    with pytest.raises(RuntimeError, match="StructuredOutputsParams"):
        choice_params(FakeSamplingParams, None, ("A", "B"))


def test_label_logprobs_renormalise_over_labels_in_label_order() -> None:
    lp = {3: -1.0, 8: -2.5, 11: -0.2, 40: -4.0}  # 11: the sampled token, not a label
    output = RequestOutput([Completion("", [{t: Logprob(v) for t, v in lp.items()}])])
    got = label_logprobs(output, [40, 3, 8])
    raw = np.array([-4.0, -1.0, -2.5])
    expected = raw - np.log(np.exp(raw).sum())
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert got.dtype == np.float32 and abs(np.exp(got).sum() - 1) < 1e-6


def test_label_logprobs_refuse_missing_values() -> None:
    output = RequestOutput([Completion("", [{3: Logprob(-1.0)}])])
    with pytest.raises(RuntimeError, match="label token 8"):
        label_logprobs(output, [3, 8])
    with pytest.raises(RuntimeError, match="no log-probabilities"):
        label_logprobs(RequestOutput([Completion("A", None)]), [3])
    with pytest.raises(RuntimeError, match="no finite"):
        label_logprobs(RequestOutput([Completion("", [{3: Logprob(-np.inf)}])]), [3])


def test_tokens_prompt_adds_no_special_tokens(tokenizer) -> None:  # noqa: ANN001
    prompt = tokens_prompt(tokenizer, "Answer with one letter")
    assert prompt == {
        "prompt_token_ids": tokenizer("Answer with one letter", add_special_tokens=False)[
            "input_ids"
        ]
    }
    assert tokenizer.bos_token_id not in prompt["prompt_token_ids"]


@pytest.mark.parametrize(
    ("ranks", "requested", "expected"),
    [([4], None, 8), ([8, 6], None, 8), ([9], None, 16), ([4], 64, 64), ([], None, 1)],
)
def test_max_lora_rank(ranks: list[int], requested: int | None, expected: int) -> None:
    assert max_lora_rank(ranks, requested) == expected
    assert expected in VLLM_LORA_RANKS


def test_max_lora_rank_refusals() -> None:
    with pytest.raises(ValueError, match="must be one of"):
        max_lora_rank([4], 24)
    with pytest.raises(ValueError, match="below the largest adapter rank 16"):
        max_lora_rank([16], 8)


def test_engine_kwargs(tiny_llm_dir: str) -> None:
    adapters = [SimpleNamespace(rank=4), SimpleNamespace(rank=12)]
    config = BackendConfig(
        backend="vllm", vllm={"dtype": "bfloat16", "gpu_memory_utilization": 0.5}
    )
    kwargs = engine_kwargs(config, tiny_llm_dir, adapters, logprob_token_ids=True)
    assert kwargs == {
        "model": tiny_llm_dir,
        "enable_lora": True,
        "max_lora_rank": 16,
        "max_loras": 2,
        "max_logprobs": 26,
        "dtype": "bfloat16",
        "gpu_memory_utilization": 0.5,
    }
    assert "enable_lora" not in engine_kwargs(BackendConfig(backend="vllm"), tiny_llm_dir, [], True)
    old = engine_kwargs(config, tiny_llm_dir, adapters, logprob_token_ids=False)
    assert old["logprobs_mode"] == "processed_logprobs"
    mine = BackendConfig(
        backend="vllm", vllm={"max_loras": 1, "max_lora_rank": 32, "max_logprobs": -1}
    )
    kwargs = engine_kwargs(mine, tiny_llm_dir, adapters, True)
    assert (kwargs["max_loras"], kwargs["max_lora_rank"], kwargs["max_logprobs"]) == (1, 32, -1)


@pytest.mark.parametrize(
    ("vllm", "message"),
    [
        ({"model": "other"}, "vllm.model is set by the backend"),
        ({"enable_lora": False}, "vllm.enable_lora is set by the backend"),
        ({"max_logprobs": 20}, "cannot hold the log-probabilities of 26 labels"),
        ({"max_lora_rank": 8}, "below the largest adapter rank 12"),
    ],
)
def test_engine_kwargs_refusals(tiny_llm_dir: str, vllm: dict, message: str) -> None:
    config = BackendConfig(backend="vllm", vllm=vllm)
    with pytest.raises(ValueError, match=message):
        engine_kwargs(config, tiny_llm_dir, [SimpleNamespace(rank=12)], True)
    with pytest.raises(ValueError, match="logprobs_mode processed_logprobs"):
        engine_kwargs(
            BackendConfig(vllm={"logprobs_mode": "raw_logprobs"}), tiny_llm_dir, [], False
        )


def test_shipped_config_is_valid(tiny_llm_dir: str) -> None:
    from llmrec.serving.config import load_serve_config

    config = load_serve_config(Path(__file__).parents[2] / "serve" / "vllm.yaml")
    assert config.backend == "vllm" and config.default in config.adapters
    kwargs = engine_kwargs(config.backend_config(), tiny_llm_dir, [SimpleNamespace(rank=12)], True)
    assert kwargs["dtype"] == "bfloat16" and kwargs["max_lora_rank"] == 16


def test_missing_vllm_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tiny_llm_dir, tiny_dataset
) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'llmrec\[vllm\]' \(CUDA GPUs only\)"):
        import_vllm()
    with pytest.raises(ImportError, match="backend: transformers"):
        VLLMBackend(BackendConfig(backend="vllm", base_model=tiny_llm_dir), tiny_dataset)


def test_refuses_cpu_device(monkeypatch, tiny_llm_dir, tiny_dataset) -> None:  # noqa: ANN001
    install(monkeypatch)
    with pytest.raises(ValueError, match="backend: transformers on CPUs"):
        VLLMBackend(
            BackendConfig(backend="vllm", base_model=tiny_llm_dir, device="cpu"), tiny_dataset
        )


# --------------------------------------------------------------------------- adapter planning
def copy_with(
    folder: Path, dst: Path, record: dict | None = None, peft: dict | None = None
) -> Path:
    shutil.copytree(folder, dst)
    for name, changes in [("llmrec_adapter.json", record), ("adapter_config.json", peft)]:
        if changes:
            raw = json.loads((dst / name).read_text())
            (dst / name).write_text(json.dumps({**raw, **changes}))
    return dst


def test_plan_refuses_prefix_tuning(adapter_dirs, tmp_path, tiny_llm_dir, tiny_dataset) -> None:  # noqa: ANN001
    prefix = copy_with(adapter_dirs["rec-lora"], tmp_path / "prefix", record={"method": "prefix"})
    config = serve_config(tiny_llm_dir, {"p": prefix})
    with pytest.raises(ValueError, match="prefix-tuned.*backend: transformers"):
        plan_adapter("p", str(prefix), config, tiny_dataset, tiny_llm_dir, tmp_path / "cache")


@pytest.mark.parametrize(
    ("peft", "message"),
    [
        ({"use_dora": True}, "DoRA"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"bias": "lora_only"}, "bias"),
        ({"peft_type": "IA3"}, "IA3 adapter"),
    ],
)
def test_lora_rank_refuses_what_vllm_cannot_load(adapter_dirs, tmp_path, peft, message) -> None:  # noqa: ANN001
    bad = copy_with(adapter_dirs["rec-lora"], tmp_path / "bad", peft=peft)
    with pytest.raises(ValueError, match=f"{message}.*backend: transformers"):
        lora_rank(bad)


def test_lora_rank_reads_rank_patterns(adapter_dirs, tmp_path) -> None:  # noqa: ANN001
    assert lora_rank(adapter_dirs["rec-lora"]) == 4
    patterned = copy_with(
        adapter_dirs["rec-lora"], tmp_path / "pat", peft={"rank_pattern": {"q_proj": 24}}
    )
    assert lora_rank(patterned) == 24


def test_plan_refuses_other_catalogues_and_bases(
    adapter_dirs, tmp_path, tiny_llm_dir, tiny_dataset
) -> None:  # noqa: ANN001
    config = serve_config(tiny_llm_dir, {})
    other = copy_with(
        adapter_dirs["rec-lora"], tmp_path / "other", record={"catalog_fingerprint": "0" * 16}
    )
    with pytest.raises(ValueError, match="another catalogue"):
        plan_adapter("o", str(other), config, tiny_dataset, tiny_llm_dir, tmp_path / "cache")
    elsewhere = shutil.copytree(tiny_llm_dir, tmp_path / "other-base")
    for base in (str(elsewhere), "someone/another-model"):
        moved = copy_with(
            adapter_dirs["rec-lora"], tmp_path / base.replace("/", "-"), record={"base_model": base}
        )
        with pytest.raises(ValueError, match="serves one base model"):
            plan_adapter("m", str(moved), config, tiny_dataset, tiny_llm_dir, tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="llmrec finetune"):
        plan_adapter(
            "x", str(tmp_path / "missing"), config, tiny_dataset, tiny_llm_dir, tmp_path / "cache"
        )


def test_plan_serves_qlora_as_lora(
    adapter_dirs, tmp_path, tiny_llm_dir, tiny_dataset, caplog
) -> None:  # noqa: ANN001
    qlora = copy_with(adapter_dirs["rec-lora"], tmp_path / "qlora", record={"method": "qlora"})
    config = serve_config(tiny_llm_dir, {"q": qlora})
    with caplog.at_level(logging.WARNING, logger="llmrec.ranking.backends.vllm"):
        plan = plan_adapter("q", str(qlora), config, tiny_dataset, tiny_llm_dir, tmp_path / "cache")
    assert plan.lora_path == str(qlora) and plan.method == "qlora" and plan.rank == 4
    assert "unquantized" in caplog.text


def test_plan_converts_adalora_once(adapter_dirs, tmp_path, tiny_llm_dir, tiny_dataset) -> None:  # noqa: ANN001
    config = serve_config(tiny_llm_dir, adapter_dirs)
    ada = str(adapter_dirs["rec-ada"])
    plan = plan_adapter("rec-ada", ada, config, tiny_dataset, tiny_llm_dir, tmp_path / "cache")
    converted = Path(plan.lora_path)
    assert converted.parent == tmp_path / "cache" and converted.name.startswith("rec-ada-")
    assert json.loads((converted / "adapter_config.json").read_text())["peft_type"] == "LORA"
    assert plan.rank == 8 and plan.method == "adalora" and plan.folder == ada
    assert plan.prompt == SMALL
    stamp = (converted / "adapter_model.safetensors").stat().st_mtime_ns
    again = plan_adapter("rec-ada", ada, config, tiny_dataset, tiny_llm_dir, tmp_path / "cache")
    assert again.lora_path == plan.lora_path
    assert (converted / "adapter_model.safetensors").stat().st_mtime_ns == stamp  # reused


# --------------------------------------------------------------------------- the whole backend
@pytest.fixture
def backend(monkeypatch, cache, adapter_dirs, tiny_llm_dir, tiny_dataset):  # noqa: ANN001, ANN201
    FakeLLM.instances.clear()
    install(monkeypatch)
    config = serve_config(tiny_llm_dir, adapter_dirs, vllm={"dtype": "float32"})
    built = VLLMBackend(config, tiny_dataset)
    yield built
    built.close()


def test_backend_starts_one_engine_with_every_lora(backend, tiny_llm_dir, cache) -> None:  # noqa: ANN001
    assert backend.kind == "vllm"
    (llm,) = FakeLLM.instances
    assert llm.model_dir == tiny_llm_dir
    assert llm.kwargs == {
        "enable_lora": True,
        "max_lora_rank": 8,  # LoRA r 4 and the converted AdaLoRA r 8
        "max_loras": 2,
        "max_logprobs": 26,
        "dtype": "float32",
    }
    models = backend.models()
    assert list(models) == ["base", "rec-lora", "rec-ada"]
    assert models["base"].lora is None and models["base"].info.method is None
    requests = [models[n].lora for n in ("rec-lora", "rec-ada")]
    assert [r.lora_int_id for r in requests] == [1, 2] and [r.lora_name for r in requests] == [
        "rec-lora",
        "rec-ada",
    ]
    assert Path(requests[1].lora_path).parent == cache / "vllm-adapters"  # AdaLoRA converted
    assert models["rec-ada"].info.method == "adalora" and models[
        "rec-ada"
    ].info.adapter_dir.endswith("adalora")
    assert (
        models["rec-lora"].builder.config == LORA_PROMPT
        and models["rec-ada"].builder.config == SMALL
    )


@pytest.mark.parametrize("name", ["base", "rec-lora", "rec-ada"])
def test_backend_scores_like_llmscorer_with_peft(backend, adapter_dirs, tiny_llm_dir, name) -> None:  # noqa: ANN001
    """Same answers from both backends: the fake engine runs the *converted* AdaLoRA, the
    reference runs the AdaLoRA folder as trained."""
    model = backend.models()[name]
    prompts = rank_prompts(model.builder)
    got = model.score(prompts)
    folder = adapter_dirs.get(name)
    reference = reference_scores(tiny_llm_dir, folder, prompts, model.builder)
    for g, r, p in zip(got, reference, prompts, strict=True):
        assert g.shape == (len(p.labels),) and g.dtype == np.float32
        np.testing.assert_allclose(g, r, rtol=0, atol=2e-5)
    if folder is not None:  # the adapter changes the answer, so routing to it is checked
        base = reference_scores(tiny_llm_dir, None, prompts, model.builder)
        assert max(np.abs(b - r).max() for b, r in zip(base, reference, strict=True)) > 1e-3
    (llm,) = FakeLLM.instances
    sent, params, lora = llm.calls[-1]
    assert lora is model.lora
    assert [s["prompt_token_ids"] for s in sent] == [
        model.builder.tokenizer(p.text, add_special_tokens=False)["input_ids"] for p in prompts
    ]
    assert all(
        sp.logprob_token_ids and sp.logprobs == len(p.labels)
        for sp, p in zip(params, prompts, strict=True)
    )


def test_backend_prompts_follow_each_adapters_settings(backend) -> None:  # noqa: ANN001
    models = backend.models()
    history = make_sequence("u1", ITEM_IDS[:8])
    texts = {
        n: models[n].builder.listwise(history, ITEM_IDS[20:26]).text
        for n in ("rec-lora", "rec-ada")
    }
    assert texts["rec-lora"] != texts["rec-ada"]


def test_backend_on_a_vllm_without_logprob_token_ids(
    monkeypatch, cache, adapter_dirs, tiny_llm_dir, tiny_dataset
) -> None:  # noqa: ANN001
    FakeLLM.instances.clear()
    install(monkeypatch, OldSamplingParams)
    backend = VLLMBackend(serve_config(tiny_llm_dir, adapter_dirs), tiny_dataset)
    (llm,) = FakeLLM.instances
    assert llm.kwargs["logprobs_mode"] == "processed_logprobs"
    model = backend.models()["rec-lora"]
    prompts = rank_prompts(model.builder, n=2)
    reference = reference_scores(tiny_llm_dir, adapter_dirs["rec-lora"], prompts, model.builder)
    for g, r in zip(model.score(prompts), reference, strict=True):
        np.testing.assert_allclose(g, r, rtol=0, atol=2e-5)


def test_backend_generates_greedy_text_in_order(backend) -> None:  # noqa: ANN001
    model = backend.models()["rec-lora"]
    texts = [p.text for p in rank_prompts(model.builder, n=3)]
    out = model.generate(texts, max_new_tokens=4, min_new_tokens=2)
    (llm,) = FakeLLM.instances
    sent, params, lora = llm.calls[-1]
    assert lora is model.lora and params.max_tokens == 4 and params.min_tokens == 2
    assert len(out) == 3 and all(isinstance(t, str) and t for t in out)
    one = model.generate(texts[2:], max_new_tokens=4, min_new_tokens=2)
    assert one == out[2:]
    assert model.generate([], max_new_tokens=4) == [] and model.score([]) == []


def test_multi_token_labels_fall_back_to_a_structured_choice(backend, monkeypatch) -> None:  # noqa: ANN001
    model = backend.models()["rec-lora"]
    prompts = rank_prompts(model.builder, n=2)
    engine: VLLMEngine = model.engine
    monkeypatch.setattr(engine, "label_ids", lambda prompt: None)  # as if labels were 2 tokens
    scores = model.score(prompts)
    (llm,) = FakeLLM.instances
    _, params, _ = llm.calls[-1]
    assert [sp.structured_outputs.choice for sp in params] == [list(p.labels) for p in prompts]
    for s, p, answer in zip(scores, prompts, llm.answers, strict=True):
        chosen = answer.outputs[0].text
        order = [chosen, *(label for label in p.labels if label != chosen)]
        weights = np.array([1.0 / (order.index(label) + 1) for label in p.labels])
        np.testing.assert_allclose(s, np.log(weights / weights.sum()), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- the real engine
def _real_vllm_reason() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install 'llmrec[vllm]', CUDA GPUs only)"
    if not torch.cuda.is_available():
        return "no CUDA GPU: vLLM's PyPI build runs on CUDA only"
    return None


def gpu_friendly_tiny(src: str, dst: Path) -> str:
    """The tiny model's tokenizer with a vLLM-friendly shape (head dim 64), random weights."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(src)
    small = LlamaConfig.from_pretrained(src)
    config = LlamaConfig(
        vocab_size=small.vocab_size,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=small.bos_token_id,
        eos_token_id=small.eos_token_id,
        pad_token_id=small.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(dst))
    tokenizer.save_pretrained(str(dst))
    return str(dst)


@pytest.mark.skipif(_real_vllm_reason() is not None, reason=str(_real_vllm_reason()))
def test_real_vllm_matches_transformers(tmp_path, monkeypatch, tiny_llm_dir, tiny_dataset) -> None:  # noqa: ANN001
    """Same answers from both backends on a real vLLM engine (bf16) and LLMScorer + peft (fp32):
    the base, a LoRA and a converted AdaLoRA adapter. Never run so far (no GPU where written)."""
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path / "cache"))
    # LLMREC_VLLM_TEST_MODEL: a real model folder instead (e.g. the default model's cached folder)
    base = os.environ.get("LLMREC_VLLM_TEST_MODEL") or gpu_friendly_tiny(
        tiny_llm_dir, tmp_path / "base"
    )
    adapters = {
        "rec-lora": make_lora_adapter(base, tmp_path / "lora", LORA_PROMPT, base_model=base),
        "rec-ada": make_adalora_adapter(base, tmp_path / "ada", SMALL, base_model=base)[0],
    }
    vllm = {
        "dtype": "bfloat16",
        "gpu_memory_utilization": 0.3,
        "enforce_eager": True,
        "max_model_len": 2048,
    }
    backend = VLLMBackend(serve_config(base, adapters, vllm=vllm), tiny_dataset)
    try:
        atol = 0.08  # bf16 weights and activations against fp32
        for name, model in backend.models().items():
            prompts = rank_prompts(model.builder)
            got = model.score(prompts)
            reference = reference_scores(base, adapters.get(name), prompts, model.builder)
            for g, r in zip(got, reference, strict=True):
                np.testing.assert_allclose(g, r, rtol=0, atol=atol)
            if name in adapters:
                plain = reference_scores(base, None, prompts, model.builder)
                assert (
                    max(np.abs(p - r).max() for p, r in zip(plain, reference, strict=True))
                    > 3 * atol
                )
        texts = model.generate([prompts[0].text], max_new_tokens=4)
        assert len(texts) == 1
    finally:
        backend.close()


def test_adapter_settings_are_the_ones_served(backend, adapter_dirs) -> None:  # noqa: ANN001
    for name, folder in adapter_dirs.items():
        adapter = open_adapter_folder(folder)
        assert backend.models()[name].builder.config == adapter.prompt
        assert backend.models()[name].info.fusion_weight == adapter.fusion_weight


def test_a_rank_only_adapter_generates_without_its_lora(backend) -> None:  # noqa: ANN001
    from dataclasses import replace

    model = backend.models()["rec-lora"]
    texts = [p.text for p in rank_prompts(model.builder, n=2)]
    (llm,) = FakeLLM.instances
    model.generate(texts, max_new_tokens=3)
    assert llm.calls[-1][2] is model.lora  # an adapter of unknown training writes
    model.info = replace(model.info, writes_text=False)
    model.generate(texts, max_new_tokens=3)
    assert llm.calls[-1][2] is None  # the base writes
    model.score(rank_prompts(model.builder, n=1))
    assert llm.calls[-1][2] is model.lora  # and the adapter still ranks


def test_evaluation_runs_through_the_vllm_backend_like_transformers(
    monkeypatch, cache, adapter_dirs, tiny_llm_dir, tiny_dataset, tmp_path, capsys
) -> None:  # noqa: ANN001
    """`llmrec evaluate --backend vllm`: the harness scores the pipeline through the same backend
    interface as the server; on the fake engine it ranks exactly as transformers does."""
    from llmrec.cli.main import main
    from llmrec.data import leave_one_out
    from llmrec.evaluation import EvalConfig, evaluate
    from llmrec.ranking.recommend import load_pipeline

    FakeLLM.instances.clear()
    install(monkeypatch)
    data, retriever = tmp_path / "data", tmp_path / "retriever"
    tiny_dataset.save(data)
    assert main(["retrieve", "build", "--data", str(data), "--out", str(retriever),
                 "--views", "pop,cooc"]) == 0  # fmt: skip
    cases = leave_one_out(tiny_dataset).test[:8]
    adapter = adapter_dirs["rec-lora"]
    results = {}
    for backend in ("vllm", "transformers"):
        pipe = load_pipeline(retriever, tiny_dataset, adapter, backend=backend, dtype="float32")
        assert pipe.model.info.method == "lora" and pipe.model.builder.config == LORA_PROMPT
        results[backend] = evaluate(
            pipe.ranker, tiny_dataset, cases, EvalConfig(ks=(1, 5, 10)), progress=False
        )
    (llm,) = FakeLLM.instances  # the vLLM run went through the engine, with the adapter
    assert llm.calls and all(lora is not None for _, _, lora in llm.calls)
    assert results["vllm"].metrics == pytest.approx(results["transformers"].metrics, abs=1e-12)
    code = main(["evaluate", "--model", "llm", "--data", str(data), "--retriever", str(retriever),
                 "--adapter", str(adapter), "--backend", "vllm", "--users", "4",
                 "--fusion-weight", "1"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "llm+retrieval" in out and len(FakeLLM.instances) == 2
