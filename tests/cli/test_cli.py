import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmrec.cli.main import main


@pytest.fixture
def csv_files(tmp_path: Path) -> dict[str, Path]:
    inter = tmp_path / "inter.csv"
    rows = ["uid,movie,ts,stars"]
    for u in range(6):
        for t in range(8):
            rows.append(f"u{u},m{(u + t) % 10},{1000 + 10 * t},{1 + (t % 5)}")
    inter.write_text("\n".join(rows) + "\n")
    items = tmp_path / "items.csv"
    items.write_text(
        "movie,title,genres\n" + "".join(f'm{i},"Movie {i}",Drama|Comedy\n' for i in range(10))
    )
    return {"inter": inter, "items": items}


def _prepare(csv_files: dict[str, Path], out: Path, *extra: str) -> int:
    return main(
        [
            "data",
            "prepare",
            "--inter",
            str(csv_files["inter"]),
            "--items",
            str(csv_files["items"]),
            "--col",
            "user_id=uid",
            "--col",
            "item_id=movie",
            "--col",
            "timestamp=ts",
            "--col",
            "rating=stars",
            "--name",
            "toy",
            "--out",
            str(out),
            *extra,
        ]
    )


def test_help_is_fast_and_imports_no_heavy_module() -> None:
    code = (
        "import sys; from llmrec.cli.main import build_parser; build_parser();"
        "heavy = [m for m in ('torch', 'pandas', 'transformers', 'datasets') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_prepare_stats_and_evaluate(csv_files, tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "toy"
    assert _prepare(csv_files, out) == 0
    printed = capsys.readouterr().out
    assert "users         6" in printed and "interactions  48" in printed
    assert main(["data", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["users"], stats["items"], stats["interactions"]) == (6, 10, 48)
    metrics, rankings = tmp_path / "m.json", tmp_path / "r.jsonl"
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(out),
                "--model",
                "pop",
                "--metrics-out",
                str(metrics),
                "--rankings-out",
                str(rankings),
            ]
        )
        == 0
    )
    report = json.loads(metrics.read_text())
    assert report["users"] == 6 and report["protocol"] == "full"
    lines = rankings.read_text().splitlines()
    assert len(lines) == 6 and set(json.loads(lines[0])) == {"user_id", "ranked", "target"}


def test_prepare_with_filters_reports_counts(csv_files, tmp_path, capsys) -> None:  # noqa: ANN001
    assert _prepare(csv_files, tmp_path / "f", "--min-rating", "3", "--max-len", "4") == 0
    printed = capsys.readouterr().out
    # ratings cycle 1..5 over t=0..7: ratings 1,2 at t=0,1,5,6 -> 4 of 8 per user removed
    assert "rating >= 3: removed 24 interactions" in printed
    assert "max_len 4: removed 0 older interactions" in printed


def test_bad_input_exits_2_with_a_located_message(csv_files, tmp_path, capsys) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.csv"
    bad.write_text("uid,movie,ts\nu1,m1,100\nu1,m2,soon\n")
    code = main(
        [
            "data",
            "prepare",
            "--inter",
            str(bad),
            "--col",
            "user_id=uid",
            "--col",
            "item_id=movie",
            "--col",
            "timestamp=ts",
            "--out",
            str(tmp_path / "x"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "bad.csv, line 3, column 'ts'" in err and "'soon'" in err
    assert not (tmp_path / "x").exists()


def test_unknown_model_setting_is_rejected(csv_files, tmp_path, capsys) -> None:  # noqa: ANN001
    _prepare(csv_files, tmp_path / "toy")
    code = main(
        ["evaluate", "--data", str(tmp_path / "toy"), "--model", "sasrec", "--set", "epochz=3"]
    )
    assert code == 2 and "epochz" in capsys.readouterr().err
    code = main(["evaluate", "--data", str(tmp_path / "toy"), "--model", "nope"])
    assert code == 2 and "pop" in capsys.readouterr().err


def test_sasrec_fit_save_load_via_cli(csv_files, tmp_path, capsys) -> None:  # noqa: ANN001
    data = tmp_path / "toy"
    _prepare(csv_files, data)
    common = [
        "evaluate",
        "--data",
        str(data),
        "--model",
        "sasrec",
        "--protocol",
        "sampled",
        "--seed",
        "1",
        "--negatives",
        "2",
    ]
    m1, m2 = tmp_path / "a.json", tmp_path / "b.json"
    assert (
        main(
            [
                *common,
                "--set",
                "epochs=3",
                "--set",
                "hidden_size=16",
                "--set",
                "max_len=8",
                "--save",
                str(tmp_path / "model"),
                "--metrics-out",
                str(m1),
            ]
        )
        == 0
    )
    assert main([*common, "--load", str(tmp_path / "model"), "--metrics-out", str(m2)]) == 0
    assert json.loads(m1.read_text())["metrics"] == json.loads(m2.read_text())["metrics"]
