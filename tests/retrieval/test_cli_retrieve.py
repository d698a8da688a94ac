"""`llmrec retrieve build | query` and `evaluate --model fused` on a small prepared dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrec.cli.main import main


@pytest.fixture
def data(tmp_path: Path) -> Path:
    inter = tmp_path / "inter.csv"
    rows = ["user_id,item_id,timestamp"]
    for u in range(12):
        for t in range(10):
            rows.append(f"u{u},m{(3 * u + t) % 20},{100 * t + u}")
    inter.write_text("\n".join(rows) + "\n")
    items = tmp_path / "items.csv"
    genres = ["Comedy", "Horror", "Drama", "Animation"]
    items.write_text(
        "item_id,title,year,genres\n"
        + "".join(f"m{i},Movie number {i},{1990 + i},{genres[i % 4]}\n" for i in range(20))
    )
    out = tmp_path / "toy"
    assert (
        main(["data", "prepare", "--inter", str(inter), "--items", str(items), "--out", str(out)])
        == 0
    )
    return out


def test_build_query_and_evaluate(data, tmp_path, tiny_model, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "retriever"
    code = main(
        [
            "retrieve",
            "build",
            "--data",
            str(data),
            "--out",
            str(out),
            "--views",
            "text,cooc,recent-pop,pop",
            "--set",
            f"views.text.model={tiny_model}",
            "--set",
            "views.text.show_progress=false",
        ]
    )
    assert code == 0
    assert (out / "index" / "index.faiss").is_file() and (out / "retriever.json").is_file()
    capsys.readouterr()

    assert (
        main(["retrieve", "query", "--retriever", str(out), "--user", "u1", "-k", "5", "--json"])
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    seen = {f"m{(3 + t) % 20}" for t in range(10)}  # user u1's history
    assert not {r["item_id"] for r in rows} & seen
    assert all(r["views"] for r in rows)

    assert (
        main(["retrieve", "query", "--retriever", str(out), "--query", "a horror movie", "-k", "3"])
        == 0
    )
    assert len(capsys.readouterr().out.strip().splitlines()) == 3

    metrics = tmp_path / "m.json"
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(data),
                "--model",
                "fused",
                "--load",
                str(out / "fused"),
                "--metrics-out",
                str(metrics),
            ]
        )
        == 0
    )
    assert json.loads(metrics.read_text())["model"] == "fused"


def test_query_rejects_bad_input(data, tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "retriever"
    assert (
        main(["retrieve", "build", "--data", str(data), "--out", str(out), "--views", "cooc,pop"])
        == 0
    )
    capsys.readouterr()
    assert main(["retrieve", "query", "--retriever", str(out), "--history", "m1,nope"]) == 2
    assert "not in the catalogue: ['nope']" in capsys.readouterr().err
    assert main(["retrieve", "query", "--retriever", str(out), "--user", "ghost"]) == 2
    assert "ghost" in capsys.readouterr().err
    assert main(["retrieve", "query", "--retriever", str(out), "--query", "  "]) == 2
    assert main(["retrieve", "query", "--retriever", str(tmp_path / "none")]) == 2
    assert "not a retriever folder" in capsys.readouterr().err
    assert main(["retrieve", "query", "--retriever", str(out)]) == 0
    assert "no history and no query" in capsys.readouterr().out
    assert (
        main(
            [
                "retrieve",
                "build",
                "--data",
                str(data),
                "--out",
                str(out),
                "--views",
                "cooc",
                "--set",
                "views.cooc.windw=3",
            ]
        )
        == 2
    )
    assert "views.cooc has no key 'windw' (did you mean views.cooc.window?)" in (
        capsys.readouterr().err
    )


def test_fit_rejects_unknown_settings(data, tmp_path, capsys) -> None:  # noqa: ANN001
    code = main(
        [
            "retrieve",
            "fit",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "enc"),
            "--set",
            "max_stpes=3",
        ]
    )
    assert code == 2 and "max_stpes" in capsys.readouterr().err
    assert not (tmp_path / "enc" / "final").exists()


def test_build_set_is_a_path_into_the_fused_retrievers_config(data, tmp_path, capsys) -> None:  # noqa: ANN001
    from llmrec.data import open_dataset
    from llmrec.retrieval.fusion import FusedRetriever

    out = tmp_path / "retriever"
    build = ["retrieve", "build", "--data", str(data), "--out", str(out), "--views", "cooc,pop"]
    sets = ["rrf_k=7", "weights.pop=0.5", "tune=false", "views.cooc.window=2"]
    assert main([*build, "--fusion", "rrf", *(f"--set={s}" for s in sets)]) == 0
    loaded = FusedRetriever.load(out / "fused", open_dataset(str(data)).catalog)
    assert (loaded.config.method.value, loaded.config.rrf_k) == ("rrf", 7.0)
    assert loaded.weights == {"cooc": 1.0, "pop": 0.5}
    assert loaded.views["cooc"].config.window == 2
    capsys.readouterr()
    # the spelling before --set meant one thing everywhere fails with the new one
    assert main([*build, "--set", "cooc.window=2"]) == 2
    assert "write --set views.cooc.window=2" in capsys.readouterr().err
    # --set wins over the flag it overlaps
    assert main([*build, "--fusion", "rrf", "--set", "method=weighted", "--set", "tune=false"]) == 0
    assert json.loads((out / "retriever.json").read_text())["fusion"]["method"] == "weighted"


def test_fit_set_types_are_checked(data, tmp_path, capsys) -> None:  # noqa: ANN001
    fit = ["retrieve", "fit", "--data", str(data), "--out", str(tmp_path / "enc")]
    assert main([*fit, "--set", "warmup=soon"]) == 2
    assert "warmup expects a number, got 'soon'" in capsys.readouterr().err
    assert main([*fit, "--set", "uniform_negatives=3"]) == 2
    assert "uniform_negatives expects true or false, got 3" in capsys.readouterr().err
