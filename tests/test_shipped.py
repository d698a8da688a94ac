"""The serve configs, recipes and accelerate configs ship inside the package (symlinks to the
top-level folders, the one copy of each) and are found by name as well as by path, in any
working directory. The wheel itself is checked by ``.ci/wheel-smoke``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmrec import shipped
from llmrec.cli.main import build_parser, main
from llmrec.finetune.recipe import load_recipe
from llmrec.serving.config import load_serve_config

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("kind", "folder"),
    [
        (shipped.SERVE_CONFIGS, REPO / "serve"),
        (shipped.RECIPES, REPO / "finetune"),
        (shipped.ACCELERATE_CONFIGS, REPO / "finetune" / "accelerate"),
    ],
    ids=lambda v: getattr(v, "kind", ""),
)
def test_the_package_sees_the_top_level_files_and_no_copy(kind, folder: Path) -> None:  # noqa: ANN001
    assert kind.names() == sorted(p.stem for p in folder.glob("*.yaml"))
    assert kind.folder.resolve() == folder.resolve()  # a symlink, not a second copy
    for name in kind.names():
        assert kind.path(name).read_bytes() == (folder / f"{name}.yaml").read_bytes()


def test_package_data_names_every_shipped_folder() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = data["package-data"]
    assert "_configs/*.yaml" in globs["llmrec.serving"]
    assert {"_recipes/*.yaml", "_recipes/accelerate/*.yaml"} <= set(globs["llmrec.finetune"])


def test_names_work_in_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # not a checkout: serve/cpu.yaml is not here
    assert load_serve_config("cpu").backend == "transformers"
    assert load_serve_config("vllm.yaml").backend == "vllm"
    assert load_recipe("qlora").adapter.quantization.bits == 4
    assert load_recipe("adalora").adapter.method == "adalora"
    assert shipped.find("finetune/accelerate/multi_gpu").name == "multi_gpu.yaml"
    assert shipped.find("serve/cpu.yaml") == shipped.SERVE_CONFIGS.path("cpu")


def test_a_file_wins_over_a_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("cpu").write_text("backend: transformers\nport: 9123\n")
    assert load_serve_config("cpu").port == 9123
    mine = tmp_path / "sub" / "mine.yaml"
    mine.parent.mkdir()
    mine.write_text("training: {max_steps: 7}\n")
    assert load_recipe(mine).training.max_steps == 7
    assert load_recipe(os.path.join("sub", "mine.yaml")).training.max_steps == 7


def test_unknown_names_list_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"unknown serve config 'gpu': .*cpu, cpu-nextitem, vllm"
    ):
        load_serve_config("gpu")
    with pytest.raises(FileNotFoundError, match=r"unknown recipe 'lroa': .*lora.*qlora"):
        load_recipe("lroa")
    with pytest.raises(
        FileNotFoundError, match=r"no serve config at .*nope.yaml.*cpu, cpu-nextitem, vllm"
    ):
        load_serve_config(tmp_path / "nope.yaml")
    with pytest.raises(FileNotFoundError, match=r"shipped: .*finetune/accelerate/cpu.yaml"):
        shipped.find("accelerate/cpu")


def test_cli_defaults_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).config == "cpu"
    assert parser.parse_args(["finetune"]).recipe == "lora"
    assert main(["serve", "--config", "nosuch"]) == 2
    assert (
        "unknown serve config 'nosuch': known names are cpu, cpu-nextitem, vllm"
        in capsys.readouterr().err
    )
    assert main(["finetune", "--recipe", "nosuch"]) == 2
    err = capsys.readouterr().err
    known = "adalora, lora, nextitem-adalora, nextitem-lora, nextitem-prefix, nextitem-qlora"
    assert "unknown recipe 'nosuch'" in err and f"{known}, prefix, qlora" in err


def test_configs_command_lists_and_prints_paths(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    for name in ("serve/cpu.yaml", "finetune/qlora.yaml", "finetune/accelerate/multi_gpu.yaml"):
        assert name in out
    assert main(["configs", "finetune/accelerate/cpu"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert (
        printed.is_file()
        and printed.read_bytes() == (REPO / "finetune" / "accelerate" / "cpu.yaml").read_bytes()
    )
    assert main(["configs", "serve/gpu"]) == 2
