"""Versioned prompt templates: YAML files with declared variables and Jinja2 message bodies.

A template file (``prompts/<name>.v<version>.yaml``) holds ``name``, ``version``, ``task``,
``variables`` (every name the bodies may use, with a description), and three Jinja2 bodies:
``system``, ``user`` and ``answer`` (the supervised target during fine-tuning). Loading checks
that the bodies compile in a sandbox and use only declared variables, so a typo fails at load
time rather than producing a silently different prompt. Values are inserted as plain text: a
title holding ``{{ 7*7 }}`` stays literal.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from llmrec.data.render import compile_template

TASKS = ("listwise", "pointwise", "reason", "chat_system")
BODIES = ("system", "user", "answer")
_FILE = re.compile(r"^(?P<name>[a-z0-9_]+)\.v(?P<version>\d+)\.ya?ml$")


def default_prompt_dirs() -> list[Path]:
    """Where templates are looked up: ``$LLMREC_PROMPTS``, then the ``prompts/`` folder shipped
    with the package (the repository's top-level ``prompts/`` in a source checkout)."""
    dirs = []
    if os.environ.get("LLMREC_PROMPTS"):
        dirs.append(Path(os.environ["LLMREC_PROMPTS"]))
    # the repository's prompts/, linked into the package so that wheels ship it (see pyproject)
    dirs.append(Path(__file__).parent / "_templates")
    return [d for d in dirs if d.is_dir()]


@dataclass(frozen=True)
class PromptTemplate:
    """One loaded, validated template file."""

    name: str
    version: int
    task: str
    variables: dict[str, str]
    bodies: dict[str, str]
    path: str = ""
    _compiled: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def key(self) -> str:
        """``name@vN``: recorded with adapters so a model is used with the prompts it learned."""
        return f"{self.name}@v{self.version}"

    def render(self, body: str, **values: Any) -> str:
        """Render one body (``system``, ``user`` or ``answer``) with declared variables only."""
        unknown = set(values) - set(self.variables) - {"label", "reason"}
        if unknown:
            raise ValueError(f"template {self.key} does not declare {sorted(unknown)}")
        return self._compiled[body].render(**values)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: str = "") -> PromptTemplate:
        where = path or "template"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: a template file must be a YAML mapping")
        missing = [k for k in ("name", "version", "task", "variables", *BODIES) if k not in raw]
        if missing:
            raise ValueError(f"{where}: missing keys {missing}")
        if raw["task"] not in TASKS:
            raise ValueError(f"{where}: task must be one of {TASKS}, got {raw['task']!r}")
        variables = raw["variables"]
        if not isinstance(variables, dict) or not all(isinstance(k, str) for k in variables):
            raise ValueError(f"{where}: variables must map names to descriptions")
        try:
            version = int(raw["version"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: version must be an integer") from exc
        from jinja2 import TemplateSyntaxError, meta
        from jinja2.sandbox import SandboxedEnvironment

        env = SandboxedEnvironment()
        allowed = set(variables) | {"label", "reason"}
        compiled, bodies = {}, {}
        for body in BODIES:
            source = raw[body]
            if not isinstance(source, str):
                raise ValueError(f"{where}: {body} must be a string")
            try:
                parsed = env.parse(source)
            except TemplateSyntaxError as exc:
                raise ValueError(
                    f"{where}: the {body} body is not a valid Jinja2 template: {exc}"
                ) from exc
            used = meta.find_undeclared_variables(parsed)
            undeclared = sorted(used - allowed)
            if undeclared:
                raise ValueError(
                    f"{where}: the {body} body uses undeclared variables {undeclared}; "
                    f"declare them under 'variables' (declared: {sorted(variables)})"
                )
            bodies[body] = source
            compiled[body] = compile_template(source, f"{where} ({body})")
        return cls(
            name=str(raw["name"]),
            version=version,
            task=str(raw["task"]),
            variables={str(k): str(v) for k, v in variables.items()},
            bodies=bodies,
            path=path,
            _compiled=compiled,
        )


def load_template_file(path: str | os.PathLike[str]) -> PromptTemplate:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    template = PromptTemplate.from_dict(raw, str(path))
    match = _FILE.match(path.name)
    if match and (match["name"], int(match["version"])) != (template.name, template.version):
        raise ValueError(
            f"{path}: file name says {match['name']} v{match['version']}, content says "
            f"{template.name} v{template.version}"
        )
    return template


@lru_cache(maxsize=64)
def _cached(path: str, mtime: float) -> PromptTemplate:
    return load_template_file(path)


def list_templates(dirs: list[Path] | None = None) -> dict[str, list[int]]:
    """Template names and their available versions."""
    found: dict[str, list[int]] = {}
    for folder in dirs or default_prompt_dirs():
        for path in folder.iterdir():
            match = _FILE.match(path.name)
            if match:
                found.setdefault(match["name"], []).append(int(match["version"]))
    return {name: sorted(set(v)) for name, v in sorted(found.items())}


def load_template(
    name: str, version: int | None = None, dirs: list[Path] | None = None
) -> PromptTemplate:
    """Load ``name`` at ``version`` (default: the newest) from the prompt folders, or a path."""
    as_path = Path(name)
    if as_path.suffix in (".yaml", ".yml") and as_path.is_file():
        return _cached(str(as_path.resolve()), as_path.stat().st_mtime)
    if "@v" in name and version is None:
        name, _, v = name.partition("@v")
        if not v.isdigit():
            raise ValueError(f"bad template version {v!r}: write name@vN, e.g. {name}@v1")
        version = int(v)
    folders = dirs or default_prompt_dirs()
    versions = list_templates(folders).get(name)
    if not versions:
        raise FileNotFoundError(
            f"no prompt template named {name!r} in {[str(d) for d in folders]}; "
            f"available: {sorted(list_templates(folders))}"
        )
    chosen = versions[-1] if version is None else int(version)
    if chosen not in versions:
        raise FileNotFoundError(f"prompt template {name!r} has versions {versions}, not {chosen}")
    for folder in folders:
        for suffix in (".yaml", ".yml"):
            path = folder / f"{name}.v{chosen}{suffix}"
            if path.is_file():
                return _cached(str(path.resolve()), path.stat().st_mtime)
    raise FileNotFoundError(f"prompt template {name} v{chosen} vanished while loading")
