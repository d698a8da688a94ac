"""Large synthetic logs: `llmrec data prepare`, and the fused retriever fitted and evaluated on
a 100k-item catalogue; wall time and peak memory; writes docs/scale.md.

    python bench/bigdata.py                      # 10M interactions, 1M users, 100k items (~2 min)
    python bench/bigdata.py --part 10m-fused     # fit + evaluate the fused retriever on it
    python bench/bigdata.py --part 1m-fused --interactions 1000000 --users 100000
    python bench/bigdata.py --part 10m-fused-text --eval-users 10000   # with the text view
    python bench/bigdata.py --part 1m --interactions 1000000 --users 100000 --items 10000
    python bench/bigdata.py --part 1m-before --interactions 1000000 --users 100000 \
        --items 10000 --code /path/to/an/older/checkout --code-label "main at da0282e"
    python bench/bigdata.py --part 10m-csv --format csv     # the same log as CSV files

The log is written by bench/synthetic_log.py (Parquet, seeded) under ``--out`` and reused when
one of the same options is there (``--format csv`` converts it to CSV, row group by row
group). ``llmrec data prepare`` then runs in a child process (with the
``llmrec`` package found under ``--code``, this checkout by default), and the section records its
wall time, CPU time and peak resident memory (the child's ``ru_maxrss``), with the dataset it
wrote. Each ``--part`` is one section of the document; a rerun of one part keeps the others.

The ``*-fused`` parts prepare the log (once, kept under ``--out``) and run
bench/_bigdata_fused.py in a child process: fit popularity, recent popularity, Markov and
co-occurrence (and the MiniLM text view with ``-text``) on every user's training sequence, tune
the fusion weights on ``--eval-users`` sampled users' validation cases, evaluate on their test
cases through top-k lists; each step's wall time, CPU time and the child's peak RSS so far.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _sections import repo_path, write_doc, write_section  # noqa: E402
from synthetic_log import LogSpec, write_log  # noqa: E402

FUSED_PARTS = ("1m-fused", "10m-fused", "10m-fused-text")
PARTS = (
    "1m-before", "1m", "10m-before", "10m", "1m-csv-before", "1m-csv", "10m-csv", *FUSED_PARTS,
)  # fmt: skip
GOAL_GIB = 8.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=PARTS, default="10m", help="the section to (re)measure")
    parser.add_argument("--interactions", type=int, default=LogSpec.interactions)
    parser.add_argument("--users", type=int, default=LogSpec.users)
    parser.add_argument("--items", type=int, default=LogSpec.items)
    parser.add_argument("--seed", type=int, default=LogSpec.seed)
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--code", default=str(ROOT), help="checkout whose llmrec prepares the log")
    parser.add_argument("--code-label", help="how the document names --code (default: git HEAD)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-bigdata"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "scale.md"))
    parser.add_argument("--eval-users", type=int, default=10_000, help="fused parts: users sampled")
    parser.add_argument("--depth", type=int, default=200, help="fused parts: each view's top list")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    started = time.perf_counter()
    spec = LogSpec(
        interactions=args.interactions, users=args.users, items=args.items, seed=args.seed
    )
    log_dir, generated_s = _log(spec, out)
    files = _files(log_dir, args.format)
    label = args.code_label or _git_head(Path(args.code))
    if args.part in FUSED_PARTS:
        lines = _fused_part(args, spec, files, generated_s, out, label)
    else:
        prepared = out / f"prepared-{args.part}"
        run = _prepare(files, prepared, Path(args.code))
        lines = _section(args.part, spec, files, generated_s, run, prepared, label)
    # the stamp repeats the command; a --code checkout outside this repository is named by its
    # label, never by this machine's path
    shown = repo_path(args.code, ROOT)
    if Path(shown).is_absolute():
        sys.argv = [a if a != args.code else f"<checkout of {label}>" for a in sys.argv]
    write_section(out, args.part, lines, started, "bench/bigdata.py")
    write_doc(out, Path(args.doc), _header(), PARTS)
    print("\n".join(lines))
    return 0


def _log(spec: LogSpec, out: Path) -> tuple[Path, float | None]:
    """The log's folder, written unless one of the same spec is there (then no time)."""
    folder = out / f"log-{spec.interactions}-{spec.users}-{spec.items}-{spec.seed}"
    stamp = folder / "spec.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == asdict(spec):
        return folder, None
    t0 = time.perf_counter()
    write_log(spec, folder)
    stamp.write_text(json.dumps(asdict(spec)) + "\n")
    return folder, time.perf_counter() - t0


def _files(log_dir: Path, fmt: str) -> tuple[Path, Path]:
    """The interactions and items files in ``fmt`` (CSV written once from the Parquet files)."""
    parquet = (log_dir / "interactions.parquet", log_dir / "items.parquet")
    if fmt == "parquet":
        return parquet
    out = []
    for path in parquet:
        target = path.with_suffix(".csv")
        if not target.is_file():
            source = pq.ParquetFile(path)
            with pacsv.CSVWriter(target.with_suffix(".tmp"), source.schema_arrow) as writer:
                for group in range(source.num_row_groups):
                    writer.write_table(source.read_row_group(group))
            target.with_suffix(".tmp").rename(target)
        out.append(target)
    return out[0], out[1]


def _child_env(code: Path) -> dict[str, str]:
    """The environment of a child that imports llmrec from ``code`` (checked)."""
    # ``python -m`` puts its working folder first on sys.path: run it in ``code`` (and check).
    env = {**os.environ, "PYTHONPATH": str(code)}
    where = [sys.executable, "-c", "import llmrec; print(llmrec.__file__)"]
    probe = subprocess.run(where, cwd=code, env=env, check=True, capture_output=True, text=True)
    imported = Path(probe.stdout.strip())
    if not imported.is_relative_to(code):
        raise SystemExit(f"the child imports llmrec from {imported}, not from --code {code}")
    return env


def _prepare(files: tuple[Path, Path], prepared: Path, code: Path) -> dict[str, float]:
    """Run ``llmrec data prepare`` in a child process: wall and CPU seconds, peak RSS in GiB."""
    code = code.resolve()
    env = _child_env(code)
    command = [
        sys.executable, "-m", "llmrec.cli.main", "data", "prepare",
        "--inter", str(files[0]), "--items", str(files[1]), "--out", str(prepared),
    ]  # fmt: skip
    busy = _busy_cpu_s()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(command, cwd=code, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        # ru_maxrss is KiB on Linux: the largest of this process's waited-for children.
        "peak_gib": after.ru_maxrss / 2**20,
        "others_cpu_s": max(0.0, _busy_cpu_s() - busy - cpu),
    }


def _busy_cpu_s() -> float:
    """CPU seconds all processes have used since boot (Linux /proc/stat; 0 elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _section(
    part: str,
    spec: LogSpec,
    files: tuple[Path, Path],
    generated_s: float | None,
    run: dict[str, float],
    prepared: Path,
    code_label: str,
) -> list[str]:
    stats = json.loads((prepared / "manifest.json").read_text())["stats"]
    size_mb = sum(f.stat().st_size for f in prepared.iterdir()) / 1e6
    log_mb = files[0].stat().st_size / 1e6
    within = "within" if run["peak_gib"] <= GOAL_GIB else "over"
    generated = (
        f"generated in {generated_s:.0f} s"
        if generated_s is not None
        else "reused from an earlier run"
    )
    return [
        f"## {part}: {spec.interactions:,} interactions, {spec.users:,} users, "
        f"{spec.items:,} items",
        "",
        f"Code: {code_label}. Log: `{files[0].name}` ({log_mb:.0f} MB) and `{files[1].name}`, "
        f"seed {spec.seed}, {generated}.",
        "",
        "| step | wall | CPU (user + sys) | peak RSS |",
        "|---|---:|---:|---:|",
        f"| `llmrec data prepare` | {run['wall_s']:.1f} s | {run['cpu_s']:.1f} s | "
        f"{run['peak_gib']:.2f} GiB |",
        "",
        f"Peak RSS is {within} the {GOAL_GIB:g} GiB goal. The prepared dataset: "
        f"{stats['users']:,} users, {stats['items']:,} items, {stats['interactions']:,} "
        f"interactions, {size_mb:.0f} MB on disk. Other processes used "
        f"{run['others_cpu_s']:.0f} CPU-seconds of the {os.cpu_count()} cores meanwhile.",
        "",
    ]


def _fused_part(
    args: argparse.Namespace,
    spec: LogSpec,
    files: tuple[Path, Path],
    generated_s: float | None,
    out: Path,
    code_label: str,
) -> list[str]:
    """Prepare the log once, fit and evaluate the fused retriever in a child; the section."""
    if args.format != "parquet":
        raise SystemExit("the fused parts read the Parquet log; leave --format out")
    code = Path(args.code).resolve()
    prepared = out / f"prepared-fused-{spec.interactions}-{spec.users}-{spec.items}-{spec.seed}"
    prep = None if (prepared / "manifest.json").is_file() else _prepare(files, prepared, code)
    result = out / f"{args.part}.json"
    command = [
        sys.executable, str(ROOT / "bench" / "_bigdata_fused.py"), str(prepared), str(result),
        "--eval-users", str(args.eval_users), "--depth", str(args.depth),
        *(["--text"] if args.part.endswith("-text") else []),
    ]  # fmt: skip
    busy = _busy_cpu_s()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(command, cwd=code, env=_child_env(code), check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    others = max(0.0, _busy_cpu_s() - busy - cpu)
    return _fused_section(
        args.part, spec, generated_s, prep, json.loads(result.read_text()), wall, cpu, others,
        code_label,
    )  # fmt: skip


def _fused_section(
    part: str,
    spec: LogSpec,
    generated_s: float | None,
    prep: dict[str, float] | None,
    r: dict,
    wall: float,
    cpu: float,
    others: float,
    code_label: str,
) -> list[str]:
    steps = r["steps"]
    fit_eval = [s for s in steps if not s["step"].startswith("check")]
    peak = max(s["peak_gib"] for s in fit_eval)
    generated = f"generated in {generated_s:.0f} s" if generated_s is not None else "reused"
    prepared = (
        f"prepared in {prep['wall_s']:.0f} s (peak {prep['peak_gib']:.2f} GiB)"
        if prep
        else "prepared by an earlier run"
    )
    weights = ", ".join(f"{k} {v:g}" for k, v in r["weights"].items())
    dense_gb = r["eval_users"] * r["items"] * 8 / 1e9
    text = "text" in r["views"]
    lines = [
        f"## {part}: the fused retriever on {spec.interactions:,} interactions, "
        f"{spec.users:,} users, {spec.items:,} items",
        "",
        f"Code: {code_label}. Log {generated}, {prepared}. Views: {', '.join(r['views'])}"
        + (
            " (the packaged MiniLM text view embeds every item's title and category)"
            if text
            else "; no text view in this part (see `10m-fused-text`)"
        )
        + "; no SASRec (a softmax over 100k items at every training position is hours of CPU, "
        f"not minutes). Co-occurrence keeps each item's {r['neighbours']} strongest neighbours "
        "(popular items co-occur with nearly every item).",
        f"Fitted on all {r['train_users']:,} users' training sequences (leave-one-out); "
        f"{r['method']} fusion over each view's top {r['depth']} per user, weights tuned on the "
        f"validation cases of {r['eval_users']:,} users sampled with seed 0 ({weights}); "
        f"evaluated on the test cases of the same users, full ranking over all "
        f"{r['items']:,} items from top-{max(int(k.split('@')[1]) for k in r['metrics']['fused'])}"
        f" lists, history excluded. Cold items (in no training sequence): {r['cold_items']:,}.",
        "",
        "| step (child process) | wall | CPU (user + sys) | peak RSS so far |",
        "|---|---:|---:|---:|",
        *(
            f"| {s['step']} | {s['wall_s']:.1f} s | {s['cpu_s']:.1f} s | {s['peak_gib']:.2f} GiB |"
            for s in steps
        ),
        f"| **whole child** | {wall:.1f} s | {cpu:.1f} s | {steps[-1]['peak_gib']:.2f} GiB |",
        "",
        f"Peak RSS of loading, fitting, tuning and evaluating: {peak:.2f} GiB "
        f"({'within' if peak <= GOAL_GIB else 'over'} the {GOAL_GIB:g} GiB goal). Other "
        f"processes used {others:.0f} CPU-seconds of the {os.cpu_count()} cores meanwhile.",
        "",
        "| model | HR@10 | NDCG@10 | HR@20 | NDCG@20 |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {m['HR@10']:.4f} | {m['NDCG@10']:.4f} | {m['HR@20']:.4f} | "
            f"{m['NDCG@20']:.4f} |"
            for name, m in r["metrics"].items()
        ),
        "",
        "Harness notes: " + "; ".join(r["notes"]) + ".",
        "",
        f"Check (the last step, after the figures above): for the first {r['check']['users']} "
        f"of those users the sparse fused top-20 equals the dense fusion's (every view's scores "
        f"over all items, 50 users at a time) for {r['check']['same']}; of the others, "
        f"{r['check']['outside_lists']} had a dense top-20 item outside every view's top "
        f"{r['depth']} list. Tuning on the dense path would hold {r['eval_users']:,} x "
        f"{r['items']:,} float64 scores per view, {dense_gb:.1f} GB each (arithmetic, not run).",
        "",
        "The log's items are drawn independently of each other (bench/synthetic_log.py), so "
        "there is no sequential signal to find: the quality figures only say the pipeline "
        "runs end to end; the point is time and memory.",
        "",
    ]
    return lines


def _git_head(code: Path) -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(code), "describe", "--always", "--dirty"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "the checkout given by --code"
    return f"llmrec at `{head}`"


def _header() -> list[str]:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        "# Large logs: preparing millions of interactions, fusing retrieval over 100k items",
        "",
        "Generated by `python bench/bigdata.py` (the command of each section is under it).",
        "A synthetic e-commerce log (bench/synthetic_log.py: Zipf-like item popularity with",
        "exponent 1, log-normal user activity with at least one interaction per user, session-like",
        "timestamps, view / cart / buy behaviours; Parquet, string ids) is prepared by",
        "`llmrec data prepare --inter interactions.parquet --items items.parquet` in a child",
        "process; the table gives its wall time, CPU time and peak resident memory (`ru_maxrss`).",
        f"The goal is a peak of at most {GOAL_GIB:g} GiB at 10M interactions.",
        "",
        "How: Parquet is read into a table that keeps the file's column types (Arrow-backed",
        "strings, numbers), CSV into Arrow-backed string columns; ids become strings with one",
        "Arrow cast, stored numbers are not parsed again, and validation, sorting, id checks and",
        "writing run on whole columns. Only the small items and users tables, and the one cell",
        "an error names, are converted cell by cell. Before, every cell of a Parquet or CSV",
        "table became a Python string object first.",
        "",
        "The `*-fused` sections fit and evaluate the fused retriever on a prepared log of 100k",
        "items (10M interactions; 1M for `1m-fused`) in a child process: every view ranks",
        "through its top-k lists (popularity is one list sorted once, co-occurrence and Markov",
        "score only the items a history touches, dense views score a batch of users at a",
        "time), the fusion ranks the union of the views' top lists, and the harness finds each",
        "target in a top-k list; no users x items matrix is built. `RecDataset.sequences()`",
        "cuts the columns per user instead of one pandas group per user.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, Python "
        f"{platform.python_version()}, pandas {pd.__version__}, pyarrow {pa.__version__}.",
        "",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
