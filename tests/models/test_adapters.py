"""PEFT adapters on the tiny Llama: training steps, AdaLoRA rank allocation, save/load/merge."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from llmrec.finetune.collate import RankCollator
from llmrec.finetune.examples import RankRow
from llmrec.finetune.losses import ranking_loss
from llmrec.models.adapters import (
    META_FILE,
    AdapterConfig,
    AdapterRecord,
    adalora_callback,
    adalora_ranks,
    attach_adapter,
    load_adapters,
    merge_adapter,
    quiet_adalora_rank_patterns,
    read_adapter_record,
    save_adapter,
    trainable_parameters,
)
from llmrec.models.loader import QuantizationConfig, load_model
from llmrec.prompts import PromptBuilder, PromptConfig
from llmrec.ranking.scorer import LLMScorer

from ..llm_fakes import ITEM_IDS, make_sequence

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = PromptConfig(max_history=3, history_token_budget=40)


@pytest.fixture(scope="module")
def builder(movies, tokenizer) -> PromptBuilder:  # noqa: ANN001
    return PromptBuilder(movies, tokenizer, SMALL)


@pytest.fixture(scope="module")
def rows(builder) -> list[RankRow]:  # noqa: ANN001
    """Four short ranking rows (4 candidates each), as build_examples makes them."""
    out = []
    for u in range(4):
        history = make_sequence(f"u{u}", ITEM_IDS[u : u + 3])
        cands = ITEM_IDS[10 + 4 * u : 14 + 4 * u]
        prompt = builder.listwise(history, cands, target=cands[u % 4])
        out.append(
            RankRow(
                text=prompt.text,
                labels=tuple(prompt.labels),
                target=prompt.labels.index(prompt.target_label),
                ranks=tuple(range(1, len(prompt.labels) + 1)),
            )
        )
    return out


@pytest.fixture(scope="module")
def batch(rows, tokenizer) -> dict:  # noqa: ANN001
    return RankCollator(tokenizer)(rows)


@pytest.fixture(scope="module")
def eval_prompts(builder):  # noqa: ANN001, ANN201
    return [
        builder.listwise(make_sequence(f"v{u}", ITEM_IDS[20 + u : 23 + u]), ITEM_IDS[30:36])
        for u in range(3)
    ]


def train_steps(model, batch: dict, steps: int, lr: float = 1e-2, after_step=None) -> list[float]:  # noqa: ANN001
    """A few AdamW steps of the ranking loss; returns the losses."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        loss = ranking_loss(model, batch)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step(step)
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def snapshot(model) -> dict[str, tuple[bool, torch.Tensor]]:  # noqa: ANN001
    return {n: (p.requires_grad, p.detach().clone()) for n, p in model.named_parameters()}


def scores(model, tokenizer, builder, prompts) -> list[np.ndarray]:  # noqa: ANN001
    model.eval()
    return LLMScorer(model, tokenizer, builder, batch_size=4).score(prompts)


def _assert_only_trainable_changed(before, model, expect_names: str) -> None:  # noqa: ANN001
    after = dict(model.named_parameters())
    trainable = [n for n, (grad, _) in before.items() if grad]
    frozen = [n for n, (grad, _) in before.items() if not grad]
    assert trainable and frozen
    assert all(expect_names in n for n in trainable), trainable[:3]
    for name in trainable:
        assert not torch.equal(before[name][1], after[name].detach()), f"{name} did not train"
    for name in frozen:
        assert torch.equal(before[name][1], after[name].detach()), f"{name} changed"


def test_lora_trains_only_its_own_parameters(fresh_llm, batch) -> None:  # noqa: ANN001
    model = attach_adapter(fresh_llm.model, AdapterConfig(method="lora", r=4, alpha=8))
    trainable, total = trainable_parameters(model)
    assert 0 < trainable < total // 5
    before = snapshot(model)
    losses = train_steps(model, batch, steps=3)
    assert all(np.isfinite(losses))
    _assert_only_trainable_changed(before, model, "lora_")
    # every linear layer of every decoder block is adapted ("all-linear")
    adapted = {n.split(".lora_A")[0] for n, _ in model.named_parameters() if ".lora_A." in n}
    assert len(adapted) == 2 * 7  # q, k, v, o, gate, up, down in each of 2 layers


def test_lora_on_the_top_layer_only(fresh_llm, batch) -> None:  # noqa: ANN001
    config = AdapterConfig(method="lora", r=4, layers=1)
    model = attach_adapter(fresh_llm.model, config)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".layers.1." in n for n in names)
    before = snapshot(model)
    train_steps(model, batch, steps=2)
    _assert_only_trainable_changed(before, model, ".layers.1.")


def test_adalora_trains_only_its_own_parameters(fresh_llm, batch) -> None:  # noqa: ANN001
    config = AdapterConfig(method="adalora", init_r=4, target_r=2, tinit=1, tfinal=1, delta_t=1)
    model = attach_adapter(fresh_llm.model, config, total_steps=10)
    before = snapshot(model)
    train_steps(model, batch, steps=3)
    _assert_only_trainable_changed(before, model, "lora_")
    assert any(".lora_E." in n for n, (grad, _) in before.items() if grad)


def test_prefix_tuning_trains_only_the_prefix(fresh_llm, batch) -> None:  # noqa: ANN001
    model = attach_adapter(fresh_llm.model, AdapterConfig(method="prefix", num_virtual_tokens=4))
    trainable, _ = trainable_parameters(model)
    # 4 virtual tokens x 2 layers x (key + value) x (2 kv heads x 16 dims) under GQA
    assert trainable == 4 * 2 * 2 * 32
    before = snapshot(model)
    losses = train_steps(model, batch, steps=3, lr=5e-2)
    assert all(np.isfinite(losses))
    _assert_only_trainable_changed(before, model, "prompt_encoder")


def test_adalora_allocation_lowers_the_total_rank(fresh_llm, batch) -> None:  # noqa: ANN001
    config = AdapterConfig(method="adalora", init_r=4, target_r=1, tinit=1, tfinal=1, delta_t=1)
    total_steps = 8
    torch.manual_seed(0)
    model = attach_adapter(fresh_llm.model, config, total_steps=total_steps)
    callback = adalora_callback()
    initial = adalora_ranks(model)
    n = len(initial)
    assert n == 2 * 7

    def allocate(step: int) -> None:  # what the Trainer does after each optimizer step
        state = SimpleNamespace(global_step=step)
        callback.on_optimizer_step(None, state, None, model=model)

    train_steps(model, batch, steps=total_steps, lr=1e-2, after_step=allocate)
    final = adalora_ranks(model)
    assert set(final) == set(initial)
    assert sum(final.values()) < n * config.init_r
    assert sum(final.values()) <= n * config.target_r  # pruned to the target budget ...
    assert max(final.values()) > config.target_r  # ... which went where it mattered most
    assert min(final.values()) >= 0 and max(final.values()) <= config.init_r


def test_qlora_one_step(tiny_llm_dir, batch) -> None:  # noqa: ANN001
    if importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("bitsandbytes is not installed: QLoRA needs it (pip install 'llmrec[quant]')")
    loaded = load_model(
        tiny_llm_dir, device="cpu", dtype="float32", quantization=QuantizationConfig(bits=4)
    )
    assert getattr(loaded.model, "is_loaded_in_4bit", False)
    model = attach_adapter(loaded.model, AdapterConfig(method="qlora", r=4))
    before = snapshot(model)
    losses = train_steps(model, batch, steps=1)
    assert np.isfinite(losses[0])
    changed = [
        n
        for n, p in model.named_parameters()
        if before[n][0] and not torch.equal(before[n][1], p.detach())
    ]
    assert changed and all("lora_" in n for n in changed)


def test_qlora_needs_a_quantized_base(fresh_llm) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="QLoRA needs a base model loaded with quantization"):
        attach_adapter(fresh_llm.model, AdapterConfig(method="qlora"))


# --------------------------------------------------------------------------- save / load / merge
def _record(method: str = "lora") -> AdapterRecord:
    return AdapterRecord(
        method=method,
        adapter=AdapterConfig(method=method).to_dict(),  # type: ignore[arg-type]
        base_model="tiny",
        prompt=SMALL.to_dict(),
        templates={"listwise": "rank_listwise@v1"},
        data_fingerprint="data123",
        catalog_fingerprint="cat456",
    )


def _trained_lora(tiny_llm_dir: str, batch: dict, seed: int):  # noqa: ANN202
    torch.manual_seed(seed)
    base = load_model(tiny_llm_dir, device="cpu", dtype="float32").model
    model = attach_adapter(base, AdapterConfig(method="lora", r=4, dropout=0.0))
    train_steps(model, batch, steps=2, lr=3e-2)
    return model


def test_save_load_round_trip_and_switching(
    tiny_llm, tiny_llm_dir, builder, batch, eval_prompts, tmp_path: Path
) -> None:  # noqa: ANN001
    tok = tiny_llm.tokenizer
    first = _trained_lora(tiny_llm_dir, batch, seed=0)
    second = _trained_lora(tiny_llm_dir, batch, seed=1)
    s_first = scores(first, tok, builder, eval_prompts)
    s_second = scores(second, tok, builder, eval_prompts)
    s_base = scores(tiny_llm.model, tok, builder, eval_prompts)
    assert not np.allclose(s_first[0], s_base[0], atol=1e-4)  # training did something

    save_adapter(first, tmp_path / "a", _record())
    save_adapter(second, tmp_path / "b", _record())
    assert (tmp_path / "a" / "adapter_config.json").is_file()
    record = read_adapter_record(tmp_path / "a")
    assert record.method == "lora" and record.catalog_fingerprint == "cat456"
    assert record.prompt == SMALL.to_dict() and record.templates["listwise"] == "rank_listwise@v1"
    assert PromptConfig.from_dict(record.prompt) == SMALL

    base = load_model(tiny_llm_dir, device="cpu", dtype="float32").model
    both = load_adapters(base, {"a": tmp_path / "a", "b": tmp_path / "b"})
    assert both.active_adapter == "a"
    for got, want in zip(scores(both, tok, builder, eval_prompts), s_first, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    both.set_adapter("b")
    switched = scores(both, tok, builder, eval_prompts)
    for got, want in zip(switched, s_second, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(switched[0], s_first[0], atol=1e-4)


@pytest.mark.parametrize("method", ["adalora", "prefix"])
def test_round_trip_of_other_methods(
    method, tiny_llm, tiny_llm_dir, builder, batch, eval_prompts, tmp_path: Path
) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    base = load_model(tiny_llm_dir, device="cpu", dtype="float32").model
    config = AdapterConfig(  # type: ignore[arg-type]
        method=method, init_r=4, target_r=1, tinit=1, tfinal=1, delta_t=1, num_virtual_tokens=4
    )
    model = attach_adapter(base, config, total_steps=6)
    callback = adalora_callback()

    def allocate(step: int) -> None:
        callback.on_optimizer_step(None, SimpleNamespace(global_step=step), None, model=model)

    train_steps(model, batch, steps=6, lr=3e-2, after_step=allocate)
    if method == "adalora":  # pruned: some matrices keep fewer ranks than others
        assert len(set(adalora_ranks(model).values())) > 1
    in_memory = scores(model, tiny_llm.tokenizer, builder, eval_prompts)
    base_scores = scores(tiny_llm.model, tiny_llm.tokenizer, builder, eval_prompts)
    assert not np.allclose(in_memory[0], base_scores[0], atol=1e-4)  # the adapter does something
    save_adapter(model, tmp_path / method, _record(method))
    fresh = load_model(tiny_llm_dir, device="cpu", dtype="float32").model
    # (peft warns when an adapter's name is part of "prefix_tuning_", so not "prefix"); no
    # RuntimeWarning either: peft's check of rank_pattern keys misreads AdaLoRA's pruning masks
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        loaded = load_adapters(fresh, {"mine": tmp_path / method})
    for got, want in zip(
        scores(loaded, tiny_llm.tokenizer, builder, eval_prompts), in_memory, strict=True
    ):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("method", ["lora", "adalora"])
def test_merge_keeps_scores_and_prefix_refuses(
    method, tiny_llm, tiny_llm_dir, builder, batch, eval_prompts
) -> None:  # noqa: ANN001
    tok = tiny_llm.tokenizer
    if method == "lora":
        model = _trained_lora(tiny_llm_dir, batch, seed=0)
    else:
        torch.manual_seed(0)
        base = load_model(tiny_llm_dir, device="cpu", dtype="float32").model
        model = attach_adapter(base, AdapterConfig(method="adalora", init_r=4), total_steps=10)
        train_steps(model, batch, steps=2, lr=3e-2)
    unmerged = scores(model, tok, builder, eval_prompts)
    assert not np.allclose(unmerged[0], scores(tiny_llm.model, tok, builder, eval_prompts)[0])
    merged = merge_adapter(model, method)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    for got, want in zip(scores(merged, tok, builder, eval_prompts), unmerged, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    with pytest.raises(ValueError, match="prefix adapters cannot be merged"):
        merge_adapter(object(), "prefix")


def test_only_adalora_rank_pattern_alarms_are_silenced() -> None:
    head = "The following rank_pattern keys did not match any targeted module and were ignored: "
    mask = "model.layers.2.mlp.up_proj.lora_E"
    keys = [f"['{mask}']", f"['{mask}.default']"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_adalora_rank_patterns():
            # AdaLoRA's masks, saved and live; then a LoRA user's typo, which must still warn
            for listed in [*keys, "['^q_proj']"]:
                warnings.warn(f"{head}{listed}.", RuntimeWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == [head + "['^q_proj']."]


def test_read_adapter_record_errors(tmp_path: Path, tiny_llm_dir) -> None:  # noqa: ANN001
    with pytest.raises(FileNotFoundError, match="holds no adapter"):
        read_adapter_record(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=f"without llmrec's record \\({META_FILE}\\)"):
        read_adapter_record(tmp_path)
    base = load_model(tiny_llm_dir, device="cpu", dtype="float32").model
    with pytest.raises(FileNotFoundError, match="without llmrec's record"):
        load_adapters(base, {"x": tmp_path})
    with pytest.raises(ValueError, match="no adapters"):
        load_adapters(base, {})


# --------------------------------------------------------------------------- config
def test_adapter_config_round_trip_and_validation() -> None:
    config = AdapterConfig(
        method="qlora", target_modules=("q_proj", "v_proj"), quantization=QuantizationConfig(bits=8)
    )
    assert AdapterConfig.from_dict(config.to_dict()) == config
    assert config.quantized and not AdapterConfig().quantized
    with pytest.raises(ValueError, match="unknown adapter settings"):
        AdapterConfig.from_dict({"rank": 4})
    with pytest.raises(ValueError, match="method must be one of"):
        AdapterConfig(method="ia3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target_r"):
        AdapterConfig(method="adalora", init_r=2, target_r=4)
    with pytest.raises(ValueError, match="gradient checkpointing"):
        AdapterConfig(method="prefix", gradient_checkpointing=True)
    with pytest.raises(ValueError, match="total number of training steps"):
        AdapterConfig(method="adalora").to_peft(num_layers=2)
    short = AdapterConfig(method="adalora", tinit=5, tfinal=10, delta_t=1).to_peft(2, 12)
    assert short.tinit + short.tfinal < short.total_step  # a budgeting phase is kept


def test_writes_text_only_for_adapters_trained_on_reasons(tmp_path) -> None:  # noqa: ANN001
    import json

    from llmrec.models.adapters import META_FILE, writes_text

    def adapter(folder, training, recipe=None):  # noqa: ANN001, ANN202
        (folder / "adapter").mkdir(parents=True)
        record = {"method": "lora", "adapter": {}, "base_model": "m", "prompt": {},
                  "templates": {}, "training": training}  # fmt: skip
        (folder / "adapter" / META_FILE).write_text(json.dumps(record))
        if recipe is not None:
            (folder / "recipe.yaml").write_text(recipe)
        return folder / "adapter"

    assert writes_text(adapter(tmp_path / "a", {"reason_fraction": 0.3}))
    assert not writes_text(adapter(tmp_path / "b", {"reason_fraction": 0.0}))
    # a record that does not say: peft's default (it writes); the record is the only source,
    # a recipe file beside the adapter is not read
    assert writes_text(adapter(tmp_path / "c", {}, "examples:\n  reason_fraction: 0.0\n"))
    assert writes_text(adapter(tmp_path / "f", {}))
