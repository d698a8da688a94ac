"""The YAML files that ship inside the package, addressable by name as well as by path.

The repository's top-level folders are the one copy of each file; symlinks inside the package
(``llmrec/serving/_configs`` -> ``serve/``, ``llmrec/finetune/_recipes`` -> ``finetune/``) put
them in wheels too, so that ``llmrec serve --config cpu`` and ``llmrec finetune --recipe qlora``
work in any directory, checkout or not.

    >>> SERVE_CONFIGS.names()
    ['cpu', 'vllm']
    >>> RECIPES.resolve("qlora").name
    'qlora.yaml'

This module sits in the lowest layer: it finds the folders from its own location and imports
nothing of the package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Shipped:
    """One kind of shipped YAML file: ``<folder>/<name>.yaml``."""

    #: What the files are, for messages: "serve config".
    kind: str
    #: The folder inside the installed package.
    folder: Path
    #: Where the same files sit in a checkout, for messages: "serve/".
    source: str

    def names(self) -> list[str]:
        """The shipped names (file stems), sorted."""
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.yaml") if p.is_file())

    def path(self, name: str) -> Path:
        """The file of a shipped ``name`` (``"cpu"`` or ``"cpu.yaml"``); an unknown name is a
        :class:`FileNotFoundError` listing the known ones."""
        stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
        found = self.folder / f"{stem}.yaml"
        if _is_name(name) and stem and found.is_file():
            return found
        raise FileNotFoundError(
            f"unknown {self.kind} {name!r}: known names are {', '.join(self.names()) or 'none'}"
        )

    def resolve(self, name_or_path: str | os.PathLike[str]) -> Path:
        """A path to an existing file wins (relative to the working directory); otherwise a
        shipped name. Neither: a :class:`FileNotFoundError` that lists the known names."""
        path = Path(name_or_path).expanduser()
        if path.is_file():
            return path
        text = os.fspath(name_or_path)
        if _is_name(text):
            return self.path(text)
        raise FileNotFoundError(
            f"no {self.kind} at {text}; give a YAML file or one of the shipped names: "
            f"{', '.join(self.names()) or 'none'} (the files of {self.source})"
        )


def _is_name(text: str) -> bool:
    """A bare name, not a path: no folder separator."""
    return bool(text) and "/" not in text and os.sep not in text and not text.startswith("~")


#: ``serve/*.yaml``: ``llmrec serve --config NAME``.
SERVE_CONFIGS = Shipped("serve config", _PACKAGE / "serving" / "_configs", "serve/")
#: ``finetune/*.yaml``: ``llmrec finetune --recipe NAME``.
RECIPES = Shipped("recipe", _PACKAGE / "finetune" / "_recipes", "finetune/")
#: ``finetune/accelerate/*.yaml``: ``accelerate launch --config_file "$(llmrec configs
#: finetune/accelerate/NAME)"``.
ACCELERATE_CONFIGS = Shipped(
    "accelerate config", _PACKAGE / "finetune" / "_recipes" / "accelerate", "finetune/accelerate/"
)

#: Every kind, longest source folder first.
KINDS: tuple[Shipped, ...] = (ACCELERATE_CONFIGS, RECIPES, SERVE_CONFIGS)


def listing() -> list[tuple[str, Path]]:
    """Every shipped file as (its path in a checkout, e.g. ``serve/cpu.yaml``; its installed
    path), as ``llmrec configs`` prints them."""
    return [
        (f"{kind.source}{name}.yaml", kind.folder / f"{name}.yaml")
        for kind in sorted(KINDS, key=lambda k: k.source)
        for name in kind.names()
    ]


def find(relative: str) -> Path:
    """The installed file of a checkout path such as ``finetune/accelerate/multi_gpu.yaml``
    (``.yaml`` optional)."""
    text = relative.strip()
    for kind in KINDS:
        if text.startswith(kind.source) and _is_name(text[len(kind.source) :]):
            return kind.path(text[len(kind.source) :])
    known = ", ".join(path for path, _ in listing())
    raise FileNotFoundError(f"no shipped file {relative!r}; shipped: {known}")
