"""Loading base models and tokenizers from local folders (no hub, no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llmrec.models.loader import (
    QuantizationConfig,
    cpu_has_bf16,
    load_model,
    load_tokenizer,
    quantized_device_map,
    resolve_device,
    resolve_dtype,
    resolve_model,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_load_model_from_a_local_folder(tiny_llm, tiny_llm_dir) -> None:  # noqa: ANN001
    loaded = tiny_llm
    assert loaded.device == "cpu" and loaded.dtype == torch.float32
    assert loaded.name == tiny_llm_dir and loaded.quantization is None
    assert not loaded.model.training
    config = loaded.model.config
    assert (config.num_attention_heads, config.num_key_value_heads) == (4, 2)  # GQA
    assert config.pad_token_id == loaded.tokenizer.pad_token_id
    tok = loaded.tokenizer
    assert tok.padding_side == "left"
    assert tok.chat_template and "<|im_start|>" in tok.all_special_tokens
    assert len(tok) == config.vocab_size


def test_load_model_in_another_dtype(tiny_llm_dir) -> None:  # noqa: ANN001
    loaded = load_model(tiny_llm_dir, device="cpu", dtype="bfloat16")
    assert loaded.dtype == torch.bfloat16


def test_tokenizer_without_pad_token_gets_eos(tiny_llm, tmp_path: Path) -> None:  # noqa: ANN001
    tok = load_tokenizer(tiny_llm.name)
    tok.pad_token = None
    tok.padding_side = "right"
    tok.save_pretrained(str(tmp_path))
    reloaded = load_tokenizer(str(tmp_path))
    assert reloaded.pad_token == reloaded.eos_token == "<|im_end|>"
    assert reloaded.padding_side == "left"


def test_resolve_model_checks_local_paths(tmp_path: Path, tiny_llm_dir) -> None:  # noqa: ANN001
    assert resolve_model(tiny_llm_dir) == tiny_llm_dir
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "missing.gguf"))
    assert resolve_model("someone/some-model") == "someone/some-model"  # a hub id, untouched


def test_resolve_dtype_and_device() -> None:
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("fp16") is torch.float16
    expected = torch.bfloat16 if cpu_has_bf16() else torch.float32
    assert resolve_dtype("auto", "cpu") is expected
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        resolve_dtype("float8")
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_quantization_config_validation() -> None:
    assert QuantizationConfig().to_dict()["bits"] == 4
    with pytest.raises(ValueError, match="bits must be 4 or 8"):
        QuantizationConfig(bits=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nf4 or fp4"):
        QuantizationConfig(quant_type="int4")  # type: ignore[arg-type]


def test_a_quantized_model_goes_to_this_processs_own_gpu(monkeypatch) -> None:  # noqa: ANN001
    """Under ``accelerate launch`` each process loads its QLoRA base on its own GPU (LOCAL_RANK),
    not all of them on GPU 0; the CPU and an explicit device stay as they are."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert quantized_device_map("cuda") == {"": 0}
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert quantized_device_map("cuda") == {"": 3}
    assert quantized_device_map("cpu") == {"": "cpu"}
    assert quantized_device_map("cuda:1") == {"": "cuda:1"}
