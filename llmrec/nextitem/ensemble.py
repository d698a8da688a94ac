"""Several trained next-item models as one (:class:`NextItemEnsemble`): the mean of their
log-softmax over the catalogue.

Runs of the same recipe that differ only in their seed make different errors; averaging their
log-probabilities (a product of experts) ranks better than each of them (docs/nextitem.md) at the
cost of one forward pass per member. An ensemble is built from trained model folders and saved as
one folder that holds a copy of each member, so it is served, evaluated and used as a view exactly
like a single model::

    llmrec ensemble --out runs/nextitem-ens runs/nextitem-lora/model runs/nextitem-lora-s1/model
    llmrec evaluate --model nextitem --load runs/nextitem-ens

Layout::

    model.json      {"model": "nextitem-ensemble", "config": {"members": 3, ...}}
    members/0 ...   each a next-item model folder (see :mod:`llmrec.nextitem.recommender`)

Load either kind of folder with :func:`load_nextitem`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.records import EvalCase, UserSequence
from llmrec.io import atomic_dir
from llmrec.nextitem.recommender import MODEL_NAME, NextItemRecommender, log_softmax
from llmrec.recommender import Recommender, read_model_meta, write_model_meta

ENSEMBLE_NAME = "nextitem-ensemble"
#: The ``model`` names of folders :func:`load_nextitem` opens.
NEXTITEM_MODELS = (MODEL_NAME, ENSEMBLE_NAME)
MEMBERS_DIR = "members"


class NextItemEnsemble(Recommender):
    """Trained next-item models scored together (see the module docstring). ``members`` must be
    loaded for the same catalogue; ``sources``: their folders, copied by :meth:`save`."""

    name: ClassVar[str] = ENSEMBLE_NAME

    def __init__(
        self,
        members: Sequence[NextItemRecommender],
        sources: Sequence[str | os.PathLike[str]] | None = None,
    ) -> None:
        super().__init__()
        members = list(members)
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one trained next-item model")
        catalog = members[0]._require_fitted()
        for member in members[1:]:
            if member._require_fitted().fingerprint() != catalog.fingerprint():
                raise ValueError("the ensemble's models were trained on different catalogues")
        if sources is not None and len(sources) != len(members):
            raise ValueError("give one source folder per member")
        self.members = members
        self.sources = None if sources is None else [Path(s) for s in sources]
        self.catalog = catalog
        first = members[0].record
        methods = sorted({str(m.record.get("method", "lora")) for m in members})
        #: what serving and the docs read: base model, method(s), member count
        self.record: dict[str, Any] = {
            "base_model": first.get("base_model"),
            "method": "+".join(methods),
            "members": len(members),
        }

    @classmethod
    def from_folders(
        cls, folders: Sequence[str | os.PathLike[str]], catalog: Catalog, **load: Any
    ) -> NextItemEnsemble:
        """Load each trained model folder (``load``: :meth:`NextItemRecommender.load`'s keywords:
        base_model, dtype, device)."""
        if not folders:
            raise ValueError("an ensemble needs at least one trained next-item model folder")
        members = [NextItemRecommender.load(f, catalog, **load) for f in folders]
        return cls(members, sources=folders)

    # ------------------------------------------------------------------ Recommender
    def fit(
        self,
        train: Sequence[UserSequence],
        catalog: Catalog,
        valid: Sequence[EvalCase] | None = None,
    ) -> NextItemEnsemble:
        raise NotImplementedError(
            "an ensemble averages trained next-item models: train each with `llmrec finetune` "
            "(e.g. --set training.seed=1) and join them with `llmrec ensemble`"
        )

    def score(self, histories: Sequence[UserSequence]) -> np.ndarray:
        """(n, N) float32: the mean over members of each one's log-softmax of its scores."""
        total: np.ndarray | None = None
        for member in self.members:
            logp = log_softmax(member.score(histories))  # (n, N)
            total = logp if total is None else total + logp
        assert total is not None
        return total / len(self.members)

    def known_items(self) -> np.ndarray | None:
        """Items every member can score (``None``: all)."""
        known = [k for k in (m.known_items() for m in self.members) if k is not None]
        if not known:
            return None
        return np.logical_and.reduce(known)

    def merge(self) -> NextItemEnsemble:
        for member in self.members:
            member.merge()
        return self

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """One folder: the record (with each member's source and training facts, where its run
        folder has them) and a copy of every member's folder."""
        catalog = self._require_fitted()
        if self.sources is None:
            raise RuntimeError("an ensemble built from loaded models has no folders to copy")
        record = {**self.record, "member_runs": [_run_facts(s) for s in self.sources]}
        with atomic_dir(path) as tmp:
            for i, source in enumerate(self.sources):
                shutil.copytree(source, tmp / MEMBERS_DIR / str(i))
            write_model_meta(tmp, self.name, catalog, record)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], catalog: Catalog, **load: Any) -> NextItemEnsemble:
        folder = Path(path)
        meta = read_model_meta(folder, cls.name, catalog)
        count = int(meta["config"]["members"])
        members = [folder / MEMBERS_DIR / str(i) for i in range(count)]
        missing = [str(m) for m in members if not (m / "model.json").is_file()]
        if missing:
            raise FileNotFoundError(f"{folder}: member folders missing: {missing}")
        ensemble = cls.from_folders(members, catalog, **load)
        ensemble.record["member_runs"] = list(meta["config"].get("member_runs", []))
        return ensemble


#: Facts of a member's run copied into the ensemble's record (from ``<run>/training.json``).
RUN_FACTS = ("steps", "train_seconds", "text_seconds", "sasrec_seconds", "peak_memory_mb",
             "trainable_parameters", "seconds_per_step")  # fmt: skip


def _run_facts(source: Path) -> dict[str, Any]:
    """Where a member came from: its folder and, when the run folder above it (``llmrec
    finetune``'s OUT) has a training.json, what its training cost."""
    facts: dict[str, Any] = {"source": str(source)}
    summary = source.parent / "training.json"
    if summary.is_file():
        try:
            raw = json.loads(summary.read_text())
        except (OSError, ValueError):
            return facts
        facts.update({k: raw[k] for k in RUN_FACTS if k in raw})
    return facts


def nextitem_kind(folder: str | os.PathLike[str]) -> str | None:
    """The ``model`` name in ``folder/model.json`` when it is a next-item model or ensemble."""
    meta = Path(folder) / "model.json"
    if not meta.is_file():
        return None
    try:
        kind = json.loads(meta.read_text()).get("model")
    except (OSError, ValueError):
        return None
    return kind if kind in NEXTITEM_MODELS else None


def load_nextitem(
    folder: str | os.PathLike[str], catalog: Catalog, **load: Any
) -> NextItemRecommender | NextItemEnsemble:
    """A trained next-item model or ensemble folder, whichever ``folder`` holds (``load``:
    base_model, dtype, device, as :meth:`NextItemRecommender.load` takes them)."""
    if nextitem_kind(folder) == ENSEMBLE_NAME:
        return NextItemEnsemble.load(folder, catalog, **load)
    return NextItemRecommender.load(folder, catalog, **load)
