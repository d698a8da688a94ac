"""Which base model an adapter (or a next-item model) was trained on, portably.

A record used to name its base as the recipe did, which for a local model is a folder of the
training machine. :func:`describe_base` now names it by

- ``id``: its Hugging Face Hub id (``org/name``), the portable name. The embedded default model
  (the ``smollm2-135m-instruct`` alias) is ``HuggingFaceTB/SmolLM2-135M-Instruct``; a folder gets
  the id from its ``llmrec_model.json`` (``hub_id``) or from the Hub cache layout it sits in
  (``models--org--name/snapshots/<revision>``); a folder with neither has no id;
- ``alias``: the llmrec alias the recipe named, if any (it keeps meaning the embedded model);
- ``revision``: the Hub commit, when the model came from the Hub cache;
- ``fingerprint``: :func:`weights_fingerprint` of the weights trained on;
- ``path``: the folder it was loaded from, a hint only.

:func:`resolve_base` turns such a record back into something
:func:`~llmrec.models.loader.load_model` loads on this machine: the alias (the embedded default
model), else the hint when it exists and holds the same weights, else the id from the local Hub
cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), else the
file or folder the record's ``base_model`` names if it is here (a ``.gguf`` file the recipe
named), else the hint even with other weights, else the id from the Hub when not offline. Found
weights that differ from the fingerprint are used with a warning (another revision, dtype or
conversion of the model may still fit the adapter). Else it fails with a message naming the id
and ``--llm PATH``. A record without identity (written before it existed) resolves to the name it
holds, as it always did.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from llmrec.models.loader import (
    DEFAULT_ALIASES,
    DEFAULT_HUB_ID,
    DEFAULT_MODEL,
    SOURCE_FILE,
    default_model_dir,
    resolve_model,
)

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_HUB_ID", "BaseIdentity", "describe_base", "resolve_base"]

#: Bytes of tensor data read from each end of each weights file for the fingerprint.
SAMPLE_BYTES = 1 << 20
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
HOW_TO_PROVIDE = "pass the base model with --llm PATH (a folder, a .gguf file or a Hub id)"


@dataclass(frozen=True)
class BaseIdentity:
    """A base model as a record names it (see the module docstring)."""

    id: str | None = None
    fingerprint: str | None = None
    path: str | None = None
    alias: str | None = None
    revision: str | None = None

    @property
    def name(self) -> str:
        """The portable name: the Hub id, else the alias, else the folder."""
        return self.id or self.alias or self.path or ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> BaseIdentity | None:
        if not raw:
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


# --------------------------------------------------------------------------- fingerprint
def weights_fingerprint(folder: str | os.PathLike[str]) -> str | None:
    """A cheap fingerprint of the weights in ``folder``: sha256 over every weights file's name and
    size, its safetensors header (tensor names, dtypes, shapes) and the first and last
    :data:`SAMPLE_BYTES` of its data. None when the folder holds no weights file.

    ``config.json`` is left out on purpose: re-saving the same weights with another transformers
    version rewrites it."""
    folder = Path(folder)
    files = sorted({p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern)})
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}\0{size}\0".encode())
        with open(path, "rb") as f:
            start = 0
            if path.suffix == ".safetensors" and size >= 8:
                (header_len,) = struct.unpack("<Q", f.read(8))
                digest.update(f.read(header_len))
                start = 8 + header_len
            f.seek(start)
            digest.update(f.read(SAMPLE_BYTES))
            f.seek(max(start, size - SAMPLE_BYTES))
            digest.update(f.read(SAMPLE_BYTES))
    return digest.hexdigest()[:32]


# --------------------------------------------------------------------------- the Hub cache
def hub_cache_dir() -> Path:
    """The Hugging Face Hub cache, as huggingface_hub finds it (read when called)."""
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(key):
            return Path(os.environ[key]).expanduser()
    home = os.environ.get("HF_HOME") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    )
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    return any(
        os.environ.get(key, "").strip().lower() in ("1", "true", "yes", "on")
        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The cached snapshot folder of ``repo_id`` (at ``revision`` if cached, else ``main``, else
    the only snapshot there is), or None."""
    repo = hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    names = []
    if revision:
        names.append(revision)
    main = repo / "refs" / "main"
    if main.is_file():
        names.append(main.read_text().strip())
    present = [p for p in snapshots.iterdir() if (p / "config.json").is_file()]
    if len(present) == 1:
        names.append(present[0].name)
    for name in names:
        if (snapshots / name / "config.json").is_file():
            return snapshots / name
    return None


def _hub_id_of(folder: Path) -> tuple[str | None, str | None]:
    """(Hub id, revision) of a local model folder, when it tells."""
    source = folder / SOURCE_FILE
    if source.is_file():
        try:
            hub_id = json.loads(source.read_text()).get("hub_id")
        except (OSError, ValueError, AttributeError):
            hub_id = None
        if hub_id:
            return str(hub_id), None
    if folder.resolve() == default_model_dir().resolve():
        return DEFAULT_HUB_ID, None  # converted before llmrec_model.json named its hub id
    parts = folder.resolve().parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        org_name = parts[-3][len("models--") :].split("--", 1)
        if len(org_name) == 2:
            return "/".join(org_name), parts[-1]
    return None, None


# --------------------------------------------------------------------------- write
def describe_base(name_or_path: str | None) -> BaseIdentity:
    """The identity of the base model the loader resolves ``name_or_path`` to (call it after
    loading: the default model and GGUF conversions are then in the cache)."""
    given = name_or_path or DEFAULT_MODEL
    alias = given if given in DEFAULT_ALIASES else None
    path = Path(given).expanduser()
    folder: Path | None
    if alias or path.suffix == ".gguf" or path.exists():
        folder = Path(resolve_model(given)).resolve()
        hub_id, revision = _hub_id_of(folder)
    else:  # a Hub id
        hub_id, revision = given, None
        folder = hub_snapshot(given)
        if folder is not None:
            revision = folder.name
    return BaseIdentity(
        id=hub_id,
        fingerprint=weights_fingerprint(folder) if folder is not None else None,
        path=str(folder) if folder is not None else None,
        alias=alias,
        revision=revision,
    )


def portable_name(name_or_path: str | None, identity: BaseIdentity) -> str:
    """What a record's ``base_model`` says: the Hub id, else what the recipe named."""
    return identity.id or name_or_path or DEFAULT_MODEL


# --------------------------------------------------------------------------- read
def resolve_base(recorded: str, identity: BaseIdentity | dict[str, Any] | None, what: str) -> str:
    """A name or folder that :func:`~llmrec.models.loader.load_model` loads here for the base a
    record names (``recorded``: its ``base_model``; ``identity``: its ``base``). ``what`` names
    the record's owner in messages ("adapter /runs/a/adapter")."""
    ident = identity if isinstance(identity, BaseIdentity) or identity is None else None
    if isinstance(identity, dict):
        ident = BaseIdentity.from_dict(identity)
    if ident is None:
        return recorded  # a record from before identities: as it always loaded
    if ident.alias:
        # the llmrec alias means the embedded default model on every machine
        _check(default_model_dir(), ident, what, only_if_present=True)
        return ident.alias
    hint = Path(ident.path) if ident.path else None
    hint_here = hint is not None and (hint / "config.json").is_file()
    if hint_here and ident.fingerprint in (None, weights_fingerprint(hint)):
        return str(hint)
    snapshot = hub_snapshot(ident.id, ident.revision) if ident.id else None
    if snapshot is not None:
        _check(snapshot, ident, what)
        return str(snapshot)
    named = Path(recorded).expanduser() if recorded else None
    if named is not None and named.exists():
        # what the recipe named (a .gguf file, a folder by another path) is here
        if named.is_dir():
            _check(named, ident, what)
        return recorded
    if hint_here:  # other weights than trained on, but the only candidate here
        _check(hint, ident, what)
        return str(hint)
    hint_state = f"{hint}, which is not on this machine" if hint is not None else "not recorded"
    if ident.id:
        if not hub_offline():
            logger.info("%s: base %s is not cached here; loading it from the Hub", what, ident.id)
            return ident.id
        raise FileNotFoundError(
            f"{what} was trained on {ident.id} (weights {ident.fingerprint or 'unknown'}); the "
            f"folder it was trained from is {hint_state}, the Hub cache ({hub_cache_dir()}) has "
            f"no {ident.id} and HF_HUB_OFFLINE is set. Download it (`hf download {ident.id}`) "
            f"or {HOW_TO_PROVIDE}"
        )
    raise FileNotFoundError(
        f"{what} was trained on a local model without a Hub id, in {hint_state}; {HOW_TO_PROVIDE}"
    )


def _check(folder: Path, ident: BaseIdentity, what: str, only_if_present: bool = False) -> None:
    """Warn when ``folder`` holds other weights than the record's fingerprint."""
    if ident.fingerprint is None or (only_if_present and not (folder / "config.json").is_file()):
        return
    found = weights_fingerprint(folder)
    if found != ident.fingerprint:
        logger.warning(
            "%s was trained on %s with weights %s; %s holds weights %s (another revision, dtype "
            "or conversion of it): the adapter may rank differently",
            what, ident.name, ident.fingerprint, folder, found,
        )  # fmt: skip
