"""Fine-tuning recipes: the shipped files load; overrides apply; typos are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrec.finetune.examples import ExampleConfig
from llmrec.finetune.recipe import Recipe, load_recipe

from ..llm_fakes import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RECIPES = sorted((REPO / "finetune").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipes_load(path: Path) -> None:
    recipe = load_recipe(path)
    family, _, method = path.stem.rpartition("-")
    assert recipe.adapter.method == method
    assert recipe.family == (family or "listwise")
    assert recipe.training.max_steps > 0 or recipe.training.epochs > 0
    assert recipe.examples.num_candidates <= 26
    assert Recipe.from_dict(recipe.to_dict()) == recipe  # to_dict is a faithful round trip


def test_all_four_methods_are_shipped() -> None:
    assert {p.stem for p in RECIPES} >= {"lora", "adalora", "prefix", "qlora"}
    assert load_recipe(REPO / "finetune" / "qlora.yaml").adapter.quantization.bits == 4


def test_overrides() -> None:
    recipe = load_recipe(
        REPO / "finetune" / "lora.yaml",
        [
            "training.max_steps=3",
            "adapter.method=prefix",
            "prompt.profile_fields=[age]",
            "retrieval.views=[pop]",
            "model=/some/folder",
            "examples.max_examples=8",
        ],
    )
    assert recipe.training.max_steps == 3 and isinstance(recipe.training.max_steps, int)
    assert recipe.adapter.method == "prefix"
    assert recipe.prompt.profile_fields == ("age",)
    assert recipe.retrieval.views == ("pop",)
    assert recipe.model == "/some/folder"
    assert recipe.examples.max_examples == 8
    assert recipe.training.lr == load_recipe(REPO / "finetune" / "lora.yaml").training.lr


def test_scientific_notation_is_a_number(tmp_path: Path) -> None:
    # PyYAML reads 1e-4 as a string (YAML 1.1 wants 1.0e-4); recipes mean the number
    assert load_recipe(None, ["training.lr=5e-5"]).training.lr == pytest.approx(5e-5)
    path = tmp_path / "r.yaml"
    path.write_text("adapter:\ntraining:\n  lr: 2e-4\n  weight_decay: 1E-2\n")
    recipe = load_recipe(path, ["adapter.r=4"])
    assert (recipe.training.lr, recipe.training.weight_decay) == (2e-4, 1e-2)
    assert recipe.adapter.r == 4  # an empty section in the file can still be overridden


def test_defaults_without_a_file() -> None:
    recipe = load_recipe(None, ["training.batch_size=2"])
    assert recipe.training.batch_size == 2 and recipe.examples == ExampleConfig()


def test_unknown_sections_and_keys_are_refused() -> None:
    with pytest.raises(
        ValueError, match=r"the recipe has no key 'trainig' \(did you mean training"
    ):
        load_recipe(None, ["trainig.max_steps=3"])
    with pytest.raises(ValueError, match=r"training has no key 'max_step'.*valid keys: batch_size"):
        load_recipe(None, ["training.max_step=3"])
    with pytest.raises(ValueError, match="adapter has no key 'rank'"):
        load_recipe(None, ["adapter.rank=3"])
    with pytest.raises(ValueError, match="prompt has no key 'history'"):
        load_recipe(None, ["prompt.history=3"])
    with pytest.raises(ValueError, match="examples has no key 'negatives'"):
        load_recipe(None, ["examples.negatives=3"])
    with pytest.raises(ValueError, match="retrieval has no key 'view'"):
        load_recipe(None, ["retrieval.view=[pop]"])
    path = REPO / "finetune" / "lora.yaml"
    with pytest.raises(ValueError, match=r"unknown sections \['trainig'\]"):
        Recipe.from_dict({"trainig": {}}, str(path))  # the file's own keys: checked as before


def test_bad_values_and_bad_overrides_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        load_recipe(None, ["training.max_steps"])
    with pytest.raises(ValueError, match="max_steps must be positive"):
        load_recipe(None, ["training.max_steps=0"])
    with pytest.raises(ValueError, match="keep must be 'best' or 'last'"):
        load_recipe(None, ["training.keep=worst"])
    with pytest.raises(ValueError, match="num_candidates"):
        load_recipe(None, ["examples.num_candidates=30"])
    with pytest.raises(ValueError, match="not a section"):
        load_recipe(REPO / "finetune" / "lora.yaml", ["model.name=x"])
    with pytest.raises(ValueError, match="not a section"):
        load_recipe(None, ["model.name=x"])
    with pytest.raises(ValueError, match="adapter is a section of settings"):
        load_recipe(None, ["adapter=lora"])
    with pytest.raises(ValueError, match="training.max_steps expects an integer, got 'many'"):
        load_recipe(None, ["training.max_steps=many"])
    with pytest.raises(ValueError, match="require_retrieved"):
        load_recipe(None, ["training.residual=true"])
    with pytest.raises(FileNotFoundError, match="no recipe at .*nope.yaml"):
        load_recipe(tmp_path / "nope.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        load_recipe(listy)


def test_overrides_are_applied_together() -> None:
    # each alone breaks target_r <= init_r; the config is checked once, on the final values
    recipe = load_recipe(None, ["adapter.target_r=16", "adapter.init_r=20"])
    assert (recipe.adapter.target_r, recipe.adapter.init_r) == (16, 20)
    recipe = load_recipe(
        None, ["training.residual=true", "examples.require_retrieved=true", "model=2"]
    )
    assert recipe.training.residual and recipe.model == "2"
