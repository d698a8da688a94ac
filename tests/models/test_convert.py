"""AdaLoRA -> LoRA conversion on the tiny GQA Llama: the converted adapter, loaded by peft as a
plain LoRA, gives the AdaLoRA adapter's logits (fp32), merged or not, with uneven pruned ranks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from llmrec.models.adapters import merge_adapter, read_adapter_record
from llmrec.models.convert import VLLM_LORA_RANKS, adalora_to_lora, vllm_rank
from llmrec.prompts import PromptBuilder

from ..llm_fakes import ITEM_IDS, make_sequence
from ..serving.fakes import INIT_R, SMALL, fresh_model, make_adalora_adapter

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def logits_of(model, batch: dict) -> torch.Tensor:  # noqa: ANN001
    model.eval()
    with torch.inference_mode():
        return model(**batch).logits.float()


@pytest.fixture(scope="module")
def batch(movies, tokenizer) -> dict:  # noqa: ANN001
    builder = PromptBuilder(movies, tokenizer, SMALL)
    texts = [
        builder.listwise(
            make_sequence(f"u{u}", ITEM_IDS[u : u + 3]), ITEM_IDS[20 + u : 26 + u]
        ).text
        for u in range(3)
    ]
    return dict(
        tokenizer(
            texts, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt"
        )
    )


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tiny_llm_dir, batch):  # noqa: ANN001, ANN201
    """(AdaLoRA folder, its LoRA conversion, the rank each layer keeps, the logits of the
    AdaLoRA model it was saved from)."""
    root = tmp_path_factory.mktemp("convert")
    ada_dir, expected, peft_model = make_adalora_adapter(tiny_llm_dir, root / "adalora")
    lora_dir = adalora_to_lora(ada_dir, root / "lora")
    return ada_dir, lora_dir, expected, logits_of(peft_model, batch)


def load_peft(tiny_llm_dir: str, folder: Path):  # noqa: ANN201
    from peft import PeftModel

    return PeftModel.from_pretrained(fresh_model(tiny_llm_dir), str(folder)).eval()


def tensors_of(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


# --------------------------------------------------------------------------- the result
def test_converted_adapter_is_plain_lora(converted) -> None:  # noqa: ANN001
    ada_dir, lora_dir, expected, _ = converted
    config = json.loads((lora_dir / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA"
    assert config["r"] == 8 and config["r"] in VLLM_LORA_RANKS  # largest kept rank 6 -> 8
    assert config["lora_alpha"] == config["r"]
    assert not config["use_dora"] and not config["modules_to_save"] and config["bias"] == "none"
    assert not config.get("rank_pattern") and not config.get("alpha_pattern")
    tensors = tensors_of(lora_dir)
    assert all(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in tensors)
    layers = {k.rsplit(".lora_", 1)[0] for k in tensors}
    ada_layers = {k.rsplit(".lora_", 1)[0] for k in tensors_of(ada_dir)}
    assert layers == ada_layers and len(layers) == len(expected) == 14
    for layer in layers:
        a, b = tensors[f"{layer}.lora_A.weight"], tensors[f"{layer}.lora_B.weight"]
        assert a.shape[0] == 8 and b.shape[1] == 8 and a.dtype == torch.float32


def test_pruned_ranks_are_dropped_and_padded_with_zeros(converted) -> None:  # noqa: ANN001
    _, lora_dir, expected, _ = converted
    ranks = json.loads((lora_dir / "llmrec_adapter.json").read_text())["converted_from"]["ranks"]
    assert {k.removeprefix("base_model.model."): v for k, v in ranks.items()} == expected
    assert sorted(set(expected.values())) == [0, 1, 3, 5, 6]
    tensors = tensors_of(lora_dir)
    for layer, rank in ranks.items():
        a, b = tensors[f"{layer}.lora_A.weight"], tensors[f"{layer}.lora_B.weight"]
        assert torch.count_nonzero(a[rank:]) == 0 and torch.count_nonzero(b[:, rank:]) == 0
        assert torch.all(a[:rank].abs().sum(1) > 0)


def test_delta_weights_equal_adalora(converted, tiny_llm_dir) -> None:  # noqa: ANN001
    ada_dir, lora_dir, _, _ = converted
    ada = load_peft(tiny_llm_dir, ada_dir)
    tensors = tensors_of(lora_dir)
    checked = 0
    for name, module in ada.named_modules():
        if hasattr(module, "lora_E") and "default" in module.lora_E:
            delta = module.get_delta_weight("default")
            a, b = tensors[f"{name}.lora_A.weight"], tensors[f"{name}.lora_B.weight"]
            torch.testing.assert_close(b @ a, delta, atol=1e-6, rtol=1e-5)
            checked += 1
    assert checked == 14


def test_logits_equal_adalora(converted, tiny_llm_dir, batch) -> None:  # noqa: ANN001
    ada_dir, lora_dir, _, trained = converted
    base = logits_of(fresh_model(tiny_llm_dir), batch)
    ada = logits_of(load_peft(tiny_llm_dir, ada_dir), batch)
    lora_model = load_peft(tiny_llm_dir, lora_dir)
    assert lora_model.peft_config["default"].peft_type.value == "LORA"
    lora = logits_of(lora_model, batch)
    assert (ada - base).abs().max() > 0.05  # the adapter matters
    # peft reloads the pruned AdaLoRA as it was in training (ranknum stays init_r)
    torch.testing.assert_close(ada, trained, atol=1e-5, rtol=0)
    torch.testing.assert_close(lora, ada, atol=1e-5, rtol=0)


def test_merged_lora_equals_adalora(converted, tiny_llm_dir, batch) -> None:  # noqa: ANN001
    ada_dir, lora_dir, _, _ = converted
    ada = logits_of(load_peft(tiny_llm_dir, ada_dir), batch)
    merged_lora = merge_adapter(load_peft(tiny_llm_dir, lora_dir), "lora")
    merged_ada = merge_adapter(load_peft(tiny_llm_dir, ada_dir), "adalora")
    assert not hasattr(merged_lora, "peft_config")
    torch.testing.assert_close(logits_of(merged_lora, batch), ada, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        logits_of(merged_lora, batch), logits_of(merged_ada, batch), atol=1e-5, rtol=0
    )


def test_adapting_some_layers_only(tmp_path, tiny_llm_dir, batch) -> None:  # noqa: ANN001
    """``layers: 1`` (peft's layers_to_transform) carries over: the same layers are adapted."""
    ada_dir, expected, _ = make_adalora_adapter(tiny_llm_dir, tmp_path / "ada", layers=1)
    lora_dir = adalora_to_lora(ada_dir, tmp_path / "lora")
    assert all(".layers.1." in name for name in expected) and len(expected) == 7
    config = json.loads((lora_dir / "adapter_config.json").read_text())
    assert config["layers_to_transform"] == [1]
    lora_model = load_peft(tiny_llm_dir, lora_dir)
    adapted = [
        n for n, m in lora_model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A
    ]
    assert sorted(adapted) == sorted(f"base_model.model.{n}" for n in expected)
    ada = logits_of(load_peft(tiny_llm_dir, ada_dir), batch)
    torch.testing.assert_close(logits_of(lora_model, batch), ada, atol=1e-5, rtol=0)


def test_record_says_it_was_converted(converted) -> None:  # noqa: ANN001
    ada_dir, lora_dir, _, _ = converted
    record = read_adapter_record(lora_dir)
    assert record.method == "lora" and record.adapter["method"] == "lora"
    assert record.adapter["r"] == record.adapter["alpha"] == 8
    assert record.prompt == SMALL.to_dict()
    raw = json.loads((lora_dir / "llmrec_adapter.json").read_text())
    assert raw["converted_from"]["method"] == "adalora"
    assert raw["converted_from"]["adapter"]["init_r"] == INIT_R
    assert raw["converted_from"]["source"] == str(ada_dir)
    assert not list(lora_dir.parent.glob(".lora.tmp-*"))  # written through a temporary folder


def test_stored_ranknum_is_used(converted, tmp_path) -> None:  # noqa: ANN001
    """Adapters from older peft store ``ranknum``; it then divides instead of init_r."""
    from safetensors.torch import save_file

    ada_dir, lora_dir, _, _ = converted
    old = tmp_path / "old-adalora"
    shutil.copytree(ada_dir, old)
    tensors = tensors_of(old)
    layers = {k.rsplit(".lora_", 1)[0] for k in tensors}
    tensors |= {f"{layer}.ranknum": torch.tensor([3.0]) for layer in layers}
    save_file(tensors, str(old / "adapter_model.safetensors"))
    again = tensors_of(adalora_to_lora(old, tmp_path / "old-lora"))
    before = tensors_of(lora_dir)
    ratio = (INIT_R + 1e-5) / (3.0 + 1e-5)
    for key, value in again.items():
        expected = before[key] * ratio if ".lora_B." in key else before[key]
        torch.testing.assert_close(value, expected, atol=1e-7, rtol=1e-5)


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("peft_type", ["LORA", "PREFIX_TUNING", "IA3"])
def test_refuses_other_adapters(tmp_path, peft_type: str) -> None:
    src = tmp_path / "adapter"
    src.mkdir()
    (src / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type, "r": 8}))
    with pytest.raises(ValueError, match="converts AdaLoRA adapters only"):
        adalora_to_lora(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_converting_twice_or_in_place(converted, tmp_path) -> None:  # noqa: ANN001
    ada_dir, lora_dir, _, _ = converted
    with pytest.raises(ValueError, match="LORA adapter"):
        adalora_to_lora(lora_dir, tmp_path / "again")
    with pytest.raises(ValueError, match="overwrite its source"):
        adalora_to_lora(ada_dir, ada_dir)
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        adalora_to_lora(tmp_path / "missing", tmp_path / "out")


def test_refuses_weights_that_contradict_the_rank_pattern(converted, tmp_path) -> None:  # noqa: ANN001
    ada_dir, _, _, _ = converted
    bad = tmp_path / "bad"
    shutil.copytree(ada_dir, bad)
    config = json.loads((bad / "adapter_config.json").read_text())
    key = next(k for k, mask in config["rank_pattern"].items() if sum(mask) == 3)
    config["rank_pattern"][key] = [True] * INIT_R
    (bad / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not belong together"):
        adalora_to_lora(bad, tmp_path / "out")


def test_refuses_biases_and_saved_modules(converted, tmp_path) -> None:  # noqa: ANN001
    ada_dir, _, _, _ = converted
    for field, value, message in [
        ("bias", "all", "biases"),
        ("modules_to_save", ["lm_head"], "modules_to_save"),
    ]:
        src = tmp_path / field
        shutil.copytree(ada_dir, src)
        config = json.loads((src / "adapter_config.json").read_text())
        config[field] = value
        (src / "adapter_config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError, match=message):
            adalora_to_lora(src, tmp_path / f"{field}-out")


@pytest.mark.parametrize(("rank", "expected"), [(1, 1), (2, 8), (8, 8), (9, 16), (300, 320)])
def test_vllm_rank(rank: int, expected: int) -> None:
    assert vllm_rank(rank) == expected


def test_vllm_rank_too_large() -> None:
    with pytest.raises(ValueError, match="backend: transformers"):
        vllm_rank(513)
