"""``--set`` means a dotted path into the command's typed config, in every command; renamed
flags keep their old spelling as a hidden, deprecated alias; the CLI modules import no loop."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from llmrec.cli.main import build_parser, main

CLI = Path(__file__).resolve().parents[2] / "llmrec" / "cli"


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    """A prepared dataset: 8 users, 12 items."""
    inter = tmp_path / "inter.csv"
    rows = ["user_id,item_id,timestamp"]
    rows += [f"u{u},m{(2 * u + t) % 12},{100 * t + u}" for u in range(8) for t in range(7)]
    inter.write_text("\n".join(rows) + "\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"m{i},Movie {i}\n" for i in range(12)))
    out = tmp_path / "toy"
    assert (
        main(["data", "prepare", "--inter", str(inter), "--items", str(items), "--out", str(out)])
        == 0
    )
    return out


def test_model_settings_are_paths_into_its_config() -> None:
    from llmrec.cli.recommenders import create_model

    cooc = create_model("cooc", ["window=2", "alpha=1"])
    assert (cooc.config.window, cooc.config.alpha) == (2, 1.0)
    fused = create_model(
        "fused",
        ["method=rrf", "rrf_k=30", "weights.cooc=2", "views.cooc.window=3", "tune=false"],
        ["cooc", "pop"],
    )
    config = fused.config
    assert (config.method.value, config.rrf_k, config.tune) == ("rrf", 30.0, False)
    assert fused.weights == {"cooc": 2.0, "pop": 1.0}
    assert fused.views["cooc"].config.window == 3 and fused.views["cooc"].config.alpha == 0.5


def test_fused_settings_name_the_valid_keys_and_the_new_spelling() -> None:
    from llmrec.cli.recommenders import create_model

    with pytest.raises(ValueError, match=r"write --set views.cooc.window=3"):
        create_model("fused", ["cooc.window=3"], ["cooc", "pop"])
    with pytest.raises(ValueError, match=r"views has no key 'text'; valid keys: cooc, pop"):
        create_model("fused", ["views.text.model=x"], ["cooc", "pop"])
    with pytest.raises(ValueError, match=r"views.pop has no key 'x'; valid keys: none"):
        create_model("fused", ["views.pop.x=1"], ["cooc", "pop"])
    with pytest.raises(ValueError, match=r"views.cooc.window expects an integer, got 'wide'"):
        create_model("fused", ["views.cooc.window=wide"], ["cooc", "pop"])
    with pytest.raises(
        ValueError, match=r"the fused retriever has no key 'rrfk' \(did you mean rrf_k"
    ):
        create_model("fused", ["rrfk=3"], ["cooc", "pop"])
    with pytest.raises(ValueError, match="the pop model has no key 'epochs'; valid keys: none"):
        create_model("pop", ["epochs=3"])


def test_evaluate_set_reaches_the_fused_views(toy: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from llmrec.data import open_dataset
    from llmrec.retrieval.fusion import FusedRetriever

    saved = tmp_path / "fused"
    code = main(["evaluate", "--data", str(toy), "--model", "fused", "--views", "cooc,pop",
                 "--set", "rrf_k=7", "--set", "views.cooc.window=2", "--set", "tune=false",
                 "--save", str(saved)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    loaded = FusedRetriever.load(saved, open_dataset(str(toy)).catalog)
    assert loaded.config.rrf_k == 7.0 and loaded.views["cooc"].config.window == 2
    capsys.readouterr()
    code = main(["evaluate", "--data", str(toy), "--model", "fused", "--views", "cooc,pop",
                 "--set", "cooc.window=2"])  # fmt: skip
    assert code == 2 and "write --set views.cooc.window=2" in capsys.readouterr().err
    code = main(["evaluate", "--data", str(toy), "--model", "fused", "--load", str(saved),
                 "--set", "rrf_k=3"])  # fmt: skip
    assert code == 2 and "--load" in capsys.readouterr().err


def test_evaluate_model_llm_refuses_set(capsys) -> None:  # noqa: ANN001
    code = main(["evaluate", "--model", "llm", "--retriever", "r", "--set", "epochs=3"])
    assert code == 2 and "--model llm is assembled from" in capsys.readouterr().err


def test_finetune_set_is_checked_before_any_data_is_read(capsys) -> None:  # noqa: ANN001
    code = main(["finetune", "--data", "/nowhere", "--set", "training.max_stpes=3"])
    err = capsys.readouterr().err
    assert code == 2 and "training has no key 'max_stpes' (did you mean training.max_steps?)" in err
    assert main(["finetune", "--data", "/nowhere", "--set", "training.lr=high"]) == 2
    assert "training.lr expects a number, got 'high'" in capsys.readouterr().err


def test_serve_set_reaches_nested_limits(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    pytest.importorskip("fastapi")
    import llmrec.cli.serve
    import llmrec.serving.app

    seen = {}
    monkeypatch.setattr(llmrec.serving.app, "build_service", lambda config: config)
    monkeypatch.setattr(
        llmrec.cli.serve,
        "run_server",
        lambda service, config, log_level: seen.update(config=config),
    )
    path = tmp_path / "s.yaml"
    path.write_text("adapters: {a: x}\nlimits: {max_k: 7}\nport: 8001\n")
    sets = ["limits.max_k=50", "reasons=template", "adapters.b=y", "port=9000"]
    code = main(["serve", "--config", str(path), *(f"--set={s}" for s in sets), "--port", "9001"])
    assert code == 0, capsys.readouterr().err
    config = seen["config"]
    assert config.limits.max_k == 50 and config.limits.max_messages == 64
    assert config.reasons == "template" and dict(config.adapters) == {"a": "x", "b": "y"}
    assert config.port == 9001  # the flag wins over --set and the file
    assert main(["serve", "--config", str(path), "--set", "limits.max_kk=5"]) == 2
    assert "limits has no key 'max_kk' (did you mean limits.max_k?)" in capsys.readouterr().err
    assert main(["serve", "--config", str(path), "--set", "reasons=loud"]) == 2
    assert "reasons expects one of ['generate', 'template', 'none']" in capsys.readouterr().err


def test_recommend_base_model_flag_and_its_deprecated_alias(capsys) -> None:  # noqa: ANN001
    parser = build_parser()
    args = parser.parse_args(["recommend", "--user", "1", "--llm", "some/model"])
    assert args.llm == "some/model" and capsys.readouterr().err == ""
    args = parser.parse_args(["recommend", "--user", "1", "--model", "old/spelling"])
    assert args.llm == "old/spelling"
    assert "--model is deprecated here; use --llm" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["recommend", "--help"])
    shown = capsys.readouterr().out
    assert "--llm" in shown and "--model" not in shown  # the alias is hidden
    evaluate = parser.parse_args(["evaluate", "--model", "llm", "--llm", "some/model"])
    assert (evaluate.model, evaluate.llm) == ("llm", "some/model")


def test_reason_choices_come_from_the_enum(capsys) -> None:  # noqa: ANN001
    from llmrec.ranking.reasons import ReasonMode

    parser = build_parser()
    for mode in ReasonMode:
        assert (
            parser.parse_args(["recommend", "--user", "1", "--reasons", mode.value]).reasons == mode
        )
    with pytest.raises(SystemExit):
        parser.parse_args(["recommend", "--user", "1", "--reasons", "loud"])
    assert "invalid choice: 'loud'" in capsys.readouterr().err


def test_reason_modes_are_declared_once() -> None:
    from llmrec.ranking.reasons import ReasonMode
    from llmrec.ranking.recommend import REASON_MODES
    from llmrec.serving.config import ServeConfig

    assert REASON_MODES == ("generate", "template", "none") == tuple(ReasonMode.values())
    config = ServeConfig(reasons="template")
    assert config.reasons is ReasonMode.TEMPLATE and f"{config.reasons}" == "template"
    assert config.to_dict()["reasons"] == "template"
    with pytest.raises(ValueError, match=r"reasons must be one of \['generate', 'template'"):
        ServeConfig(reasons="loud")


def _cli_imports(path: Path) -> set[str]:
    """The llmrec.cli modules ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found.update(n for n in names if (CLI / f"{n.split('.')[-1]}.py").is_file()
                         and n.startswith("llmrec.cli."))  # fmt: skip
    return {n.rsplit(".", 1)[-1] for n in found}


def test_cli_modules_import_no_loop() -> None:
    graph = {p.stem: _cli_imports(p) - {p.stem} for p in CLI.glob("*.py")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start]
        )

    loops = sorted(m for m in graph if reaches(m, m, set()))
    assert loops == [], graph
