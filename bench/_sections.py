"""Shared by the benchmark scripts: each part of a benchmark writes one section file, and the
document is reassembled from the sections after every part, so a rerun of one part keeps the
others' latest results."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path


def write_section(out: Path, part: str, lines: Sequence[str], started: float, script: str) -> None:
    """Write ``lines`` as section ``part`` with a stamp naming the date, duration and command."""
    command = " ".join(["python", script, *_without_out(sys.argv[1:])])
    stamp = (
        f"_Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in "
        f"{time.perf_counter() - started:.0f} s by `{command}`._"
    )
    (out / "sections").mkdir(parents=True, exist_ok=True)
    (out / "sections" / f"{part}.md").write_text("\n".join([*lines, stamp, ""]))


def write_doc(out: Path, doc: Path, header: Sequence[str], parts: Sequence[str]) -> None:
    """``doc`` = ``header`` followed by every section that exists, in ``parts`` order."""
    sections = [
        (out / "sections" / f"{p}.md").read_text()
        for p in parts
        if (out / "sections" / f"{p}.md").is_file()
    ]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join([*header, *sections]))


def _without_out(argv: Sequence[str]) -> list[str]:
    """The command's arguments without ``--out DIR`` / ``--out=DIR`` (a scratch folder)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            kept.append(arg)
    return kept


def repo_path(path: str | os.PathLike[str] | None, root: Path) -> str | None:
    """``path`` as the docs show it: relative to the repository ``root`` when it lies inside it
    (docs never name one machine's folders), else as given."""
    if path is None:
        return None
    resolved = Path(path).resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)
