"""Portable adapters: a record names its base by Hub id + weights fingerprint, the training
folder is only a hint, and the adapter loads on a "machine" that has the base under its Hub id.

The other machine is simulated with the tiny Llama copied into a Hugging Face Hub cache layout
(``models--acme--tiny-llama/snapshots/<revision>`` + ``refs/main``) in a temporary folder that
``HF_HUB_CACHE`` points to, with ``HF_HUB_OFFLINE=1`` so that nothing is looked up online.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("peft")

from llmrec.models.adapters import (  # noqa: E402
    META_FILE,
    AdapterConfig,
    AdapterRecord,
    attach_adapter,
    load_adapters,
    read_adapter_record,
    save_adapter,
)
from llmrec.models.identity import (  # noqa: E402
    DEFAULT_HUB_ID,
    BaseIdentity,
    describe_base,
    resolve_base,
    weights_fingerprint,
)
from llmrec.models.loader import SOURCE_FILE, load_model, load_tokenizer  # noqa: E402
from llmrec.prompts import PromptBuilder, PromptConfig  # noqa: E402
from llmrec.ranking.adapter_folder import open_adapter_folder  # noqa: E402
from llmrec.ranking.backends.base import BackendConfig  # noqa: E402
from llmrec.ranking.backends.transformers import TransformersBackend  # noqa: E402
from llmrec.ranking.scorer import LLMScorer  # noqa: E402

from ..llm_fakes import ITEM_IDS, make_sequence  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAKE_ID = "acme/tiny-llama"
REVISION = "0123456789abcdef0123456789abcdef01234567"
SMALL = PromptConfig(max_history=3, history_token_budget=40)
GONE = "/nonexistent/training-machine/models/tiny-llama"


@pytest.fixture
def hub(tmp_path, monkeypatch, tiny_llm_dir) -> Path:  # noqa: ANN001
    """The tiny Llama under the fake Hub id in a Hub cache of its own; returns the snapshot."""
    cache = tmp_path / "hf-hub"
    repo = cache / ("models--" + FAKE_ID.replace("/", "--"))
    snapshot = repo / "snapshots" / REVISION
    shutil.copytree(tiny_llm_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return snapshot


def _portable(tiny_llm_dir: str, **changes) -> BaseIdentity:  # noqa: ANN003
    """An identity as the training machine wrote it: the id, the weights, a folder not here."""
    values = {"id": FAKE_ID, "fingerprint": weights_fingerprint(tiny_llm_dir), "path": GONE}
    return BaseIdentity(**{**values, **changes})


def _other_weights(src: str, dst: Path) -> Path:
    """A copy of ``src`` with one byte of tensor data changed (another revision of the model)."""
    shutil.copytree(src, dst)
    weights = dst / "model.safetensors"
    data = bytearray(weights.read_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    data[8 + header_len + 3] ^= 0x01
    weights.write_bytes(bytes(data))
    return dst


# --------------------------------------------------------------------------- fingerprint
def test_fingerprint_names_the_weights_not_the_folder(tiny_llm_dir, tmp_path) -> None:  # noqa: ANN001
    first = weights_fingerprint(tiny_llm_dir)
    assert first and first == weights_fingerprint(tiny_llm_dir)
    copy = shutil.copytree(tiny_llm_dir, tmp_path / "copy")
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")  # re-saved
    assert weights_fingerprint(copy) == first
    assert weights_fingerprint(_other_weights(tiny_llm_dir, tmp_path / "other")) != first
    assert weights_fingerprint(tmp_path) is None  # no weights file


# --------------------------------------------------------------------------- describe
def test_describe_a_hub_id_and_a_hub_cache_folder(hub, tiny_llm_dir) -> None:  # noqa: ANN001
    by_id = describe_base(FAKE_ID)
    assert by_id == BaseIdentity(
        id=FAKE_ID,
        fingerprint=weights_fingerprint(tiny_llm_dir),
        path=str(hub),
        alias=None,
        revision=REVISION,
    )
    by_folder = describe_base(str(hub))  # the recipe named the snapshot folder
    assert by_folder.id == FAKE_ID and by_folder.revision == REVISION
    assert by_folder.fingerprint == by_id.fingerprint


def test_describe_a_plain_folder_and_the_default_alias(tiny_llm_dir, tmp_path, monkeypatch) -> None:  # noqa: ANN001, E501
    local = describe_base(tiny_llm_dir)
    assert local.id is None and local.alias is None
    assert local.path == str(Path(tiny_llm_dir).resolve()) and local.fingerprint
    # the default alias: the embedded model (a stand-in already "converted" into the cache)
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path / "cache"))
    default = tmp_path / "cache" / "models" / "SmolLM2-135M-Instruct"
    shutil.copytree(tiny_llm_dir, default)
    old = describe_base("smollm2-135m-instruct")  # converted before SOURCE_FILE named the id
    assert old.id == DEFAULT_HUB_ID and old.alias == "smollm2-135m-instruct"
    assert old.path == str(default.resolve()) and old.fingerprint == local.fingerprint
    (default / SOURCE_FILE).write_text(json.dumps({"hub_id": "acme/smol"}))
    assert describe_base("default").id == "acme/smol"  # what the conversion recorded wins


# --------------------------------------------------------------------------- resolve
def test_resolve_prefers_the_hint_when_it_holds_the_same_weights(
    hub, tiny_llm_dir, tmp_path
) -> None:  # noqa: ANN001, E501
    assert resolve_base(FAKE_ID, _portable(tiny_llm_dir, path=tiny_llm_dir), "a") == tiny_llm_dir
    other = _other_weights(tiny_llm_dir, tmp_path / "other")
    # the hint holds other weights now: the id's snapshot is used instead
    assert resolve_base(FAKE_ID, _portable(tiny_llm_dir, path=str(other)), "a") == str(hub)
    assert resolve_base(FAKE_ID, _portable(tiny_llm_dir), "a") == str(hub)  # hint not here
    # no id: a hint with other weights is still the best there is (with a warning)
    changed = _portable(tiny_llm_dir, id=None, path=str(other))
    assert resolve_base("/gone/too", changed, "a") == str(other)


def test_resolve_warns_when_the_ids_weights_differ(hub, tiny_llm_dir, caplog) -> None:  # noqa: ANN001
    ident = _portable(tiny_llm_dir, fingerprint="0" * 32)
    with caplog.at_level("WARNING", logger="llmrec.models.identity"):
        assert resolve_base(FAKE_ID, ident, "adapter x") == str(hub)
    assert "adapter x was trained on acme/tiny-llama with weights 000" in caplog.text


def test_resolve_errors_name_the_id_and_how_to_provide_it(
    tmp_path, monkeypatch, tiny_llm_dir
) -> None:  # noqa: ANN001, E501
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as err:
        resolve_base(FAKE_ID, _portable(tiny_llm_dir), "adapter /runs/a")
    message = str(err.value)
    assert "adapter /runs/a was trained on acme/tiny-llama" in message
    assert GONE in message and "not on this machine" in message
    assert "hf download acme/tiny-llama" in message and "--llm PATH" in message
    no_id = _portable(tiny_llm_dir, id=None)
    with pytest.raises(FileNotFoundError, match=r"without a Hub id.*--llm PATH"):
        resolve_base(GONE, no_id, "adapter /runs/a")
    # what the recipe named (e.g. a .gguf file; here a folder) is still here: it is used
    assert resolve_base(tiny_llm_dir, no_id, "a") == tiny_llm_dir
    # online, an id not in the cache is left to the loader, which downloads it
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert resolve_base(FAKE_ID, _portable(tiny_llm_dir), "a") == FAKE_ID


def test_records_without_identity_and_the_alias_resolve_as_before(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path / "cache"))  # no default model there
    assert resolve_base("/old/path/model", None, "a") == "/old/path/model"
    assert resolve_base("smollm2-135m-instruct", {}, "a") == "smollm2-135m-instruct"
    alias = BaseIdentity(id=DEFAULT_HUB_ID, fingerprint="f", path=GONE, alias="smollm2-135m")
    assert resolve_base(DEFAULT_HUB_ID, alias.to_dict(), "a") == "smollm2-135m"


# --------------------------------------------------------------------------- end to end
def _saved_adapter(tiny_llm_dir: str, folder: Path, base: BaseIdentity | None) -> Path:
    """A LoRA adapter with non-zero weights (so it changes scores), saved with ``base``."""
    import torch

    torch.manual_seed(0)
    model = load_model(tiny_llm_dir, device="cpu", dtype="float32").model
    model = attach_adapter(model, AdapterConfig(method="lora", r=4, dropout=0.0))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.2)
    record = AdapterRecord(
        method="lora",
        adapter=AdapterConfig(method="lora", r=4, dropout=0.0).to_dict(),
        base_model=base.name if base else tiny_llm_dir,
        prompt=SMALL.to_dict(),
        templates={},
        base=base.to_dict() if base else None,
    )
    return save_adapter(model, folder, record)


def test_an_adapter_loads_on_a_machine_that_has_its_base_under_the_hub_id(
    hub,
    tiny_llm_dir,
    tiny_dataset,
    tmp_path,  # noqa: ANN001
) -> None:
    folder = _saved_adapter(tiny_llm_dir, tmp_path / "adapter", _portable(tiny_llm_dir))
    raw = json.loads((folder / META_FILE).read_text())
    assert raw["base_model"] == FAKE_ID and raw["base"]["path"] == GONE
    opened = open_adapter_folder(folder, tiny_dataset.catalog)
    assert opened.record.base_model == FAKE_ID
    assert opened.base_model == str(hub)  # found under its id; the training folder is gone

    catalog = tiny_dataset.catalog
    config = BackendConfig(
        adapters={"tuned": str(folder)}, load_base=False, device="cpu", dtype="float32"
    )
    model = TransformersBackend(config, tiny_dataset).models()["tuned"]
    assert model.info.base_model == str(hub)
    builder = PromptBuilder(catalog, load_tokenizer(tiny_llm_dir), SMALL)
    prompt = builder.listwise(make_sequence("u", ITEM_IDS[:3]), ITEM_IDS[10:15])
    (got,) = model.score([prompt])
    # the same adapter on the base at its original folder scores the same
    original = load_model(tiny_llm_dir, device="cpu", dtype="float32")
    tuned = load_adapters(original.model, {"t": folder})
    (want,) = LLMScorer(tuned, original.tokenizer, builder).score([prompt])
    np.testing.assert_allclose(got, want, atol=1e-5)
    (plain,) = LLMScorer(load_model(tiny_llm_dir, dtype="float32").model, original.tokenizer,
                         builder).score([prompt])  # fmt: skip
    assert not np.allclose(got, plain, atol=1e-4)  # the adapter is on


def test_a_base_given_by_hand_wins_and_old_records_keep_loading(
    tiny_llm_dir, tiny_dataset, tmp_path, monkeypatch
) -> None:  # noqa: ANN001, E501
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lost = _saved_adapter(tiny_llm_dir, tmp_path / "lost", _portable(tiny_llm_dir))
    opened = open_adapter_folder(lost)  # opening does not look for the base yet
    with pytest.raises(FileNotFoundError, match="--llm PATH"):
        _ = opened.base_model
    by_hand = BackendConfig(base_model=tiny_llm_dir, adapters_on_base_model=True)
    assert by_hand.base_for(open_adapter_folder(lost)) == tiny_llm_dir  # --llm PATH
    # a record written before identities: base_model as it was, no "base" key
    old = _saved_adapter(tiny_llm_dir, tmp_path / "old", None)
    raw = json.loads((old / META_FILE).read_text())
    assert "base" not in raw and raw["base_model"] == tiny_llm_dir
    assert read_adapter_record(old).base is None
    assert open_adapter_folder(old).base_model == tiny_llm_dir
    assert BackendConfig().base_for(open_adapter_folder(old)) == tiny_llm_dir
