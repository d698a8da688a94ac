"""The one loader of an adapter folder (``<llmrec finetune --out>/adapter``).

An adapter folder holds peft's files (written and read by peft through
:mod:`llmrec.models.adapters`), llmrec's record ``llmrec_adapter.json`` (owned by
:mod:`llmrec.models.adapters`) and, optionally, the ranker settings ``llmrec_ranker.json`` (owned
by :mod:`llmrec.ranking.settings`). :func:`open_adapter_folder` reads them once into an
:class:`AdapterFolder` and checks that the adapter fits the catalogue it will rank; the CLI,
evaluation, the transformers and vLLM backends and the service all open adapters through it.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from llmrec.data.catalog import Catalog
from llmrec.models.adapters import AdapterConfig, AdapterRecord, read_adapter_record, writes_text
from llmrec.models.loader import QuantizationConfig
from llmrec.prompts.builder import PromptConfig
from llmrec.ranking.settings import RankerSettings, read_ranker_settings


@dataclass(frozen=True)
class AdapterFolder:
    """Everything the ranking stage needs from one saved adapter."""

    path: Path
    record: AdapterRecord
    #: The prompt settings the adapter was trained with (its prompts must be built the same way).
    prompt: PromptConfig
    settings: RankerSettings
    #: False: the adapter was trained only to rank; reasons are written by the base model.
    writes_text: bool

    @property
    def method(self) -> str:
        return self.record.method

    @functools.cached_property
    def base_model(self) -> str:
        """The base model to load here for this adapter: resolved from the record's portable
        identity on first use (:func:`llmrec.models.identity.resolve_base`; it fails with a
        clear message when the base is not on this machine). ``record.base_model`` is the name
        as recorded."""
        return self.record.resolved_base(f"adapter {self.path}")

    @property
    def fusion_weight(self) -> float:
        return self.settings.fusion_weight

    @property
    def quantization(self) -> QuantizationConfig | None:
        """The base model's quantization for a QLoRA adapter, else None."""
        if self.method != "qlora":
            return None
        return AdapterConfig.from_dict(self.record.adapter).quantization


def open_adapter_folder(
    folder: str | os.PathLike[str], catalog: Catalog | None = None, name: str | None = None
) -> AdapterFolder:
    """Read the adapter in ``folder``; with ``catalog``, refuse an adapter trained on another
    catalogue. ``name`` (a served name) only makes the messages clearer."""
    path = Path(folder)
    label = f"adapter {name!r} ({path})" if name else f"adapter {path}"
    if not path.is_dir():
        raise FileNotFoundError(f"{label}: no such folder (train one with `llmrec finetune`)")
    record = read_adapter_record(path)
    fingerprint = record.catalog_fingerprint
    if catalog is not None and fingerprint and fingerprint != catalog.fingerprint():
        raise ValueError(
            f"{label} was trained on another catalogue than the one it would rank; fine-tune it "
            "on this data"
        )
    return AdapterFolder(
        path=path,
        record=record,
        prompt=PromptConfig.from_dict(record.prompt),
        settings=read_ranker_settings(path),
        writes_text=writes_text(path),
    )
