"""The one ``--set`` parser: ``a.b.c=VALUE`` sets a dotted path in a typed config.

Every command with ``--set`` (``evaluate``, ``retrieve fit``, ``retrieve build``, ``finetune``,
``serve``) and :func:`llmrec.finetune.recipe.load_recipe` read overrides here, so ``--set`` has
one meaning everywhere:

- ``KEY`` is a dotted path through the command's config: nested dataclasses (``limits.max_k``,
  ``training.lr``) and mappings (``weights.text``, ``views.sasrec.epochs``). A mapping of plain
  values (``weights``, ``adapters``, ``vllm``) takes new keys; a dataclass or a mapping of
  sections (``views``) only the keys it has.
- ``VALUE`` is read as YAML (``3``, ``0.5``, ``true``, ``null``, ``[a, b]``, ``{k: v}``; an
  empty VALUE is the empty string), then checked against the field's type hint: an int where a
  float is wanted becomes a float, ``1e-4`` (a string to PyYAML) the number, a number where a
  string is wanted the text as written, a list where a tuple is wanted a tuple.
- An unknown key is refused naming the valid keys at that level, a value of the wrong type naming
  the expected type. All overrides are applied before any config is rebuilt, so each
  dataclass's ``__post_init__`` checks run once, on the final values (``init_r`` and
  ``target_r`` may be raised together in either order).

    >>> from llmrec.serving.config import ServeConfig
    >>> apply_overrides(ServeConfig(), ["limits.max_k=10", "reasons=template"]).limits.max_k
    10
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class OverrideError(ValueError):
    """A ``--set`` that names no key of the config, or a value of the wrong type."""


@dataclass(frozen=True)
class Override:
    """One parsed ``KEY=VALUE``: ``path`` split at the dots, ``value`` read as YAML."""

    path: tuple[str, ...]
    value: Any
    #: VALUE as written (a string field takes it verbatim when YAML reads a number).
    raw: str
    #: The whole ``KEY=VALUE``, for messages.
    text: str

    @property
    def key(self) -> str:
        return ".".join(self.path)


def parse_override(text: str) -> Override:
    """``"limits.max_k=50"`` -> ``Override(("limits", "max_k"), 50, ...)``."""
    key, sep, raw = text.partition("=")
    path = tuple(part.strip() for part in key.strip().split("."))
    if not sep or not all(path):
        raise OverrideError(
            f"--set expects KEY=VALUE with KEY a dotted path such as limits.max_k, got {text!r}"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or exc
        raise OverrideError(
            f"--set {text}: VALUE is not valid YAML ({problem}); quote it, e.g. {key}='\"...\"'"
        ) from None
    return Override(path, value, raw.strip(), text)


def parse_overrides(pairs: Iterable[str | Override]) -> list[Override]:
    return [p if isinstance(p, Override) else parse_override(p) for p in pairs]


def apply_overrides(config: T, overrides: Iterable[str | Override], what: str | None = None) -> T:
    """A copy of ``config`` (a dataclass instance or a mapping) with every override applied.

    ``what`` names the config in messages (default: its class name). The config is rebuilt once
    at the end, so its own validation sees the final values; its errors are re-raised with the
    overrides that led there.
    """
    parsed = parse_overrides(overrides)
    if not parsed:
        return config
    root = _Draft(config, None)
    for override in parsed:
        _set(root, override, what or type(config).__name__)
    return root.build()


# --------------------------------------------------------------------------- internals
@dataclass
class _Draft:
    """A dataclass instance or mapping being edited: the changed keys, built once at the end."""

    base: Any
    #: The declared type of ``base`` (a mapping's value type comes from ``Mapping[K, V]``).
    hint: Any
    changes: dict[str, Any] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)

    def keys(self) -> list[str]:
        if dataclasses.is_dataclass(self.base):
            return [f.name for f in dataclasses.fields(self.base) if f.init]
        return [str(k) for k in {**self.base, **self.changes}]

    def is_open(self) -> bool:
        """A mapping of plain values takes new keys; dataclasses and mappings of sections not."""
        if dataclasses.is_dataclass(self.base):
            return False
        return not any(dataclasses.is_dataclass(v) for v in self.base.values())

    def child_hint(self, key: str) -> Any:
        if dataclasses.is_dataclass(self.base):
            return _field_hints(type(self.base)).get(key)
        args = typing.get_args(self.hint)
        return args[1] if len(args) == 2 else None

    def current(self, key: str) -> Any:
        if key in self.changes:
            return self.changes[key]
        if dataclasses.is_dataclass(self.base):
            return getattr(self.base, key)
        return self.base.get(key)

    def build(self) -> Any:
        values = {k: v.build() if isinstance(v, _Draft) else v for k, v in self.changes.items()}
        if not dataclasses.is_dataclass(self.base):
            return {**self.base, **values}
        try:
            return dataclasses.replace(self.base, **values)
        except (TypeError, ValueError) as exc:
            given = ", ".join(dict.fromkeys(self.texts))
            raise OverrideError(f"--set {given}: {exc}") from exc


def _set(root: _Draft, override: Override, what: str) -> None:
    draft = root
    for depth, key in enumerate(override.path):
        where = ".".join(override.path[:depth]) or what
        draft.texts.append(override.text)
        if key not in draft.keys() and not draft.is_open():
            raise OverrideError(_unknown_key(override, where, depth, draft.keys()))
        hint = draft.child_hint(key)
        dotted = ".".join(override.path[: depth + 1])
        child = draft.current(key)
        if depth == len(override.path) - 1:
            if _is_section(child) or (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
                section = child if isinstance(child, _Draft) else _Draft(child or {}, hint)
                keys = ", ".join(section.keys())
                raise OverrideError(
                    f"--set {override.text}: {dotted} is a section of settings ({keys}), not a "
                    f"value; set one of them, e.g. --set {dotted}.KEY=VALUE"
                )
            draft.changes[key] = _coerce(override, hint, dotted)
            return
        if isinstance(child, _Draft):
            draft = child
            continue
        if child is None and _is_mapping_hint(hint):
            child = {}  # a new key of an open mapping, e.g. vllm.speculative_config.method
        if not (dataclasses.is_dataclass(child) or isinstance(child, Mapping)):
            shown = "null" if child is None else repr(child)
            raise OverrideError(
                f"--set {override.text}: {dotted} is a value ({shown}), not a section; "
                f"set it as {dotted}=VALUE"
            )
        draft.changes[key] = _Draft(child, hint)
        draft = draft.changes[key]


def _is_section(value: Any) -> bool:
    """A dataclass, or a mapping of dataclasses (``views``): set through its keys, not whole."""
    if isinstance(value, _Draft):
        value = value.base
    if dataclasses.is_dataclass(value):
        return True
    return isinstance(value, Mapping) and any(dataclasses.is_dataclass(v) for v in value.values())


def _unknown_key(override: Override, where: str, depth: int, valid: Sequence[str]) -> str:
    key = override.path[depth]
    close = difflib.get_close_matches(key, valid, n=1)
    prefix = override.path[:depth]
    guess = f" (did you mean {'.'.join([*prefix, close[0]])}?)" if close else ""
    keys = ", ".join(sorted(valid)) or "none, it takes no settings"
    return f"--set {override.text}: {where} has no key {key!r}{guess}; valid keys: {keys}"


class _Mismatch(Exception):
    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def _coerce(override: Override, hint: Any, dotted: str) -> Any:
    try:
        return _convert(override.value, hint, override.raw)
    except _Mismatch as exc:
        shown = "null" if override.value is None else repr(override.value)
        raise OverrideError(
            f"--set {override.text}: {dotted} expects {exc.expected}, got {shown}"
        ) from None


def _convert(value: Any, hint: Any, raw: str | None) -> Any:
    """``value`` as ``hint`` wants it, or :class:`_Mismatch` naming what was expected."""
    if hint is None or hint is Any or hint is object:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(value, args, raw)
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch(f"one of {list(args)}")
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            raise _Mismatch(f"one of {[m.value for m in hint]}") from None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        raise _Mismatch("a section of settings")  # inside a list or mapping value
    if origin in (tuple, list) or origin in (Sequence, typing.Sequence):
        return _convert_sequence(value, origin, args)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _Mismatch("a mapping such as {key: value}")
        inner = args[1] if len(args) == 2 else None
        return {k: _convert(v, inner, None) for k, v in value.items()}
    return _convert_scalar(value, hint, raw)


def _convert_union(value: Any, args: tuple[Any, ...], raw: str | None) -> Any:
    if value is None and type(None) in args:
        return None
    expected = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(value, arg, raw)
        except _Mismatch as exc:
            expected.append(exc.expected)
    if type(None) in args:
        expected.append("null")
    raise _Mismatch(" or ".join(expected))


def _convert_sequence(value: Any, origin: Any, args: tuple[Any, ...]) -> Any:
    if not isinstance(value, list | tuple):
        raise _Mismatch("a list such as [a, b]")
    inner = args[0] if args else None
    items = [_convert(v, inner, None) for v in value]
    return list(items) if origin is list else tuple(items)


def _convert_scalar(value: Any, hint: Any, raw: str | None) -> Any:
    scalar = not isinstance(value, list | tuple | Mapping) and value is not None
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch("true or false")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch("an integer")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-4 as a string (YAML 1.1 wants 1.0e-4)
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise _Mismatch("a number")
    if hint is str:
        if isinstance(value, str):
            return value
        if scalar:  # 2, 1.10, 2024-01-01, yes: the text as written
            return raw if raw is not None else str(value)
        raise _Mismatch("a string")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise _Mismatch(f"a {hint.__name__}")
    return value


def _is_mapping_hint(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    return hint is None or hint is Any or origin in (dict, Mapping) or hint in (dict, Mapping)


_HINTS: dict[type, dict[str, Any]] = {}


def _field_hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved type hint (``None`` where a hint cannot be resolved)."""
    if cls not in _HINTS:
        try:
            hints = typing.get_type_hints(cls)
        except (NameError, TypeError):  # a hint naming a type only imported for type checkers
            hints = {}
        _HINTS[cls] = {f.name: hints.get(f.name) for f in dataclasses.fields(cls)}
    return _HINTS[cls]
