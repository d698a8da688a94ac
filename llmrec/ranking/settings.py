"""``llmrec_ranker.json``: how an adapter is fused with its retriever at inference.

This module is the file's only reader and writer. Fine-tuning writes it for a residual adapter
(the weight it was trained at); ``llmrec evaluate --save-weight`` writes the weight it tuned on
validation; every loader of an adapter folder reads it through
:func:`llmrec.ranking.adapter_folder.open_adapter_folder`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmrec.io import atomic_write_text

RANKER_FILE = "llmrec_ranker.json"
#: The fusion weight of an adapter folder without ranker settings.
DEFAULT_FUSION_WEIGHT = 1.0


@dataclass(frozen=True)
class RankerSettings:
    fusion_weight: float = DEFAULT_FUSION_WEIGHT
    #: Where the weight came from ("residual training", "validation").
    source: str = ""
    #: Validation users the weight was tuned on (0: not tuned).
    tuned_on: int = 0
    #: Metric per weight tried, as tuning saw it.
    validation: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not math.isfinite(self.fusion_weight) or self.fusion_weight < 0:
            raise ValueError(
                f"fusion_weight must be a finite number >= 0, got {self.fusion_weight!r}; "
                f"fix or delete {RANKER_FILE}"
            )


def read_ranker_settings(adapter_dir: str | os.PathLike[str] | None) -> RankerSettings:
    """The settings saved in ``adapter_dir`` (the defaults when there are none)."""
    if adapter_dir is None:
        return RankerSettings()
    path = Path(adapter_dir) / RANKER_FILE
    if not path.is_file():
        return RankerSettings()
    try:
        raw: Any = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); delete it or fix it") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(raw).__name__}")
    known = set(RankerSettings.__dataclass_fields__)
    values = {k: v for k, v in raw.items() if k in known}
    values["fusion_weight"] = float(values.get("fusion_weight", DEFAULT_FUSION_WEIGHT))
    return RankerSettings(**values)


def write_ranker_settings(adapter_dir: str | os.PathLike[str], settings: RankerSettings) -> Path:
    """Write ``settings`` into ``adapter_dir`` atomically; returns the file's path."""
    path = Path(adapter_dir) / RANKER_FILE
    atomic_write_text(path, json.dumps(asdict(settings), indent=2) + "\n")
    return path
