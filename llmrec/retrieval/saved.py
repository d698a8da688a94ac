"""A retriever folder as ``llmrec retrieve build`` writes it: ``retriever.json`` (what it was built
from), ``fused/`` (the fused retriever) and ``index/`` (the text view's faiss index)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from llmrec.data.catalog import Catalog

MANIFEST = "retriever.json"


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The folder's manifest; a clear error when the folder is not a built retriever."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a retriever folder (no {MANIFEST}); build one with "
            "`llmrec retrieve build --out FOLDER`"
        )
    return json.loads(path.read_text())


def load_retriever(folder: str | os.PathLike[str], catalog: Catalog) -> Any:
    """The fused retriever saved in ``folder`` (refuses another catalogue)."""
    from llmrec.retrieval.fusion import FusedRetriever

    read_manifest(folder)
    return FusedRetriever.load(Path(folder) / "fused", catalog)
