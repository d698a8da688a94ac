"""The transformers backend: several adapters per base, any served names, the base zero-shot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmrec.models.adapters import load_adapters
from llmrec.models.loader import load_model
from llmrec.prompts import PromptBuilder
from llmrec.ranking.backends import BackendConfig
from llmrec.ranking.backends.transformers import TransformersBackend
from llmrec.ranking.scorer import LLMScorer

from ..llm_fakes import build_tiny_llm, make_dataset
from ..serving.fakes import SMALL, make_adalora_adapter, make_lora_adapter

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("backend")
    model_dir = str(build_tiny_llm(root / "tiny"))
    ada, _, _ = make_adalora_adapter(model_dir, root / "ada", base_model=model_dir)
    lora = make_lora_adapter(model_dir, root / "lora", base_model=model_dir)
    prefix = make_prefix_adapter(model_dir, root / "prefix")
    # served names that peft would mistake for parts of parameter names ("lora", "mlp")
    config = BackendConfig(
        base_model=model_dir,
        adapters={"lora": str(ada), "mlp": str(lora), "pre": str(prefix)},
        device="cpu",
        dtype="float32",
    )
    dataset = make_dataset()
    adapters = {"lora": ada, "mlp": lora, "pre": prefix}
    return model_dir, adapters, dataset, TransformersBackend(config, dataset)


def make_prefix_adapter(model_dir: str, folder):  # noqa: ANN001, ANN201
    from llmrec.models.adapters import AdapterConfig, attach_adapter, save_adapter

    from ..serving.fakes import adapter_record, fresh_model

    peft_model = attach_adapter(
        fresh_model(model_dir), AdapterConfig(method="prefix", num_virtual_tokens=4)
    )
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in peft_model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=gen))
    return save_adapter(peft_model, folder, adapter_record("prefix", base_model=model_dir))


def reference_scores(model_dir: str, adapter, dataset, prompts):  # noqa: ANN001, ANN201
    loaded = load_model(model_dir, device="cpu", dtype="float32")
    model = loaded.model if adapter is None else load_adapters(loaded.model, {"x": adapter})
    builder = PromptBuilder(dataset.catalog, loaded.tokenizer, SMALL, dataset.profiles())
    return LLMScorer(model, loaded.tokenizer, builder).score(prompts)


def test_each_served_name_scores_like_its_adapter_alone(served) -> None:  # noqa: ANN001
    model_dir, adapters, dataset, backend = served
    models = backend.models()
    assert list(models) == ["base", "lora", "mlp", "pre"]
    assert models["pre"].info.method == "prefix"
    assert models["lora"].info.method == "adalora" and models["mlp"].info.method == "lora"
    seqs = dataset.sequences()[:3]
    results = {}
    for name in ("lora", "mlp", "pre", "base", "lora"):  # switching back and forth
        builder = models[name].builder
        prompts = [builder.listwise(s.head(5), list(s.item_ids[5:9]) or ["i1", "i2"]) for s in seqs]
        got = models[name].score(prompts)
        want = reference_scores(model_dir, adapters.get(name), dataset, prompts)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, atol=1e-5)
        results[name] = got
    assert not np.allclose(results["lora"][0], results["base"][0], atol=1e-3)
    assert not np.allclose(results["mlp"][0], results["base"][0], atol=1e-3)
    assert not np.allclose(results["pre"][0], results["base"][0], atol=1e-3)


def test_an_adapter_trained_only_to_rank_writes_with_the_base(served, tmp_path) -> None:  # noqa: ANN001
    import json
    import shutil

    from llmrec.models.adapters import META_FILE

    model_dir, adapters, dataset, _ = served
    ranker = tmp_path / "ranker"
    shutil.copytree(adapters["mlp"], ranker)
    record = json.loads((ranker / META_FILE).read_text())
    record["training"] = {"reason_fraction": 0.0}
    (ranker / META_FILE).write_text(json.dumps(record))
    config = BackendConfig(
        base_model=model_dir,
        adapters={"writer": str(adapters["mlp"]), "ranker": str(ranker)},
        device="cpu",
        dtype="float32",
    )
    models = TransformersBackend(config, dataset).models()
    assert models["writer"].info.writes_text and not models["ranker"].info.writes_text
    seq = dataset.sequences()[0]
    texts = [models["base"].builder.reason(seq.head(4), seq.item_ids[5], []).text]
    written = {name: models[name].generate(texts, 12) for name in ("base", "writer", "ranker")}
    assert written["ranker"] == written["base"]
    assert written["writer"] != written["base"]
    # it still ranks with its adapter
    prompts = [models["ranker"].builder.listwise(seq.head(5), list(seq.item_ids[5:9]))]
    np.testing.assert_allclose(
        models["ranker"].score(prompts)[0], models["writer"].score(prompts)[0]
    )
    assert not np.allclose(models["ranker"].score(prompts)[0], models["base"].score(prompts)[0])
