"""Config validation shared by every layer: typed dataclass configs built from mappings, unknown
keys refused with the valid ones listed, numbers checked with messages that name the field, show
the value and say how to fix it. No torch here; the lowest layer of the package."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


def config_from_dict(config_cls: type, values: dict[str, Any], model: str) -> Any:
    """Build ``config_cls(**values)``; an unknown key raises ``ValueError`` listing valid keys."""
    valid = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown config field(s) {unknown} for the {model!r} model; valid fields are {valid}"
        )
    return config_cls(**values)


def reject_unknown(config_cls: type, values: Any, what: str) -> None:
    """Raise ``ValueError`` if ``values`` has keys that are not fields of ``config_cls``."""
    known = sorted(f.name for f in dataclasses.fields(config_cls))
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} settings {unknown}; known: {known}")


def check_number(
    field: str,
    value: Any,
    *,
    kind: type = int,
    minimum: float | None = None,
    exclusive_min: bool = False,
    maximum: float | None = None,
    exclusive_max: bool = False,
) -> None:
    """Raise ``ValueError`` naming ``field`` unless ``value`` is a number of ``kind`` in range."""
    accepted = (int, np.integer) if kind is int else (int, float, np.integer, np.floating)
    ok_type = isinstance(value, accepted) and not isinstance(value, bool)
    if not ok_type:
        raise ValueError(
            f"{field} must be {'an integer' if kind is int else 'a number'}, got {value!r}; "
            f"set {field} to a {'whole ' if kind is int else ''}number"
        )
    if value != value:  # NaN
        raise ValueError(f"{field} must be a number, got NaN; set {field} to a finite value")
    bounds = []
    if minimum is not None:
        bounds.append(f"{'>' if exclusive_min else '>='} {minimum}")
    if maximum is not None:
        bounds.append(f"{'<' if exclusive_max else '<='} {maximum}")
    too_low = minimum is not None and (value <= minimum if exclusive_min else value < minimum)
    too_high = maximum is not None and (value >= maximum if exclusive_max else value > maximum)
    if too_low or too_high:
        raise ValueError(
            f"{field} must be {' and '.join(bounds)}, got {value!r}; "
            f"set {field} to a value in that range"
        )


def merge_config(
    config_cls: type, config: Any | None, overrides: dict[str, Any], model: str
) -> Any:
    """``config`` (or the defaults when ``None``) with ``overrides`` applied, validated again."""
    base = {} if config is None else dataclasses.asdict(config)
    if config is not None and not isinstance(config, config_cls):
        raise ValueError(
            f"config must be a {config_cls.__name__}, got {type(config).__name__}; "
            f"pass {config_cls.__name__}(...) or keyword settings"
        )
    return config_from_dict(config_cls, {**base, **overrides}, model)
