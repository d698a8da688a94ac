"""Helpers shared by the baselines: encoding sequences to catalogue indices, config checks,
and the validation metric used for early stopping. No torch here."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from llmrec.data.catalog import Catalog
from llmrec.data.records import EvalCase, UserSequence


def encode(sequences: Sequence[UserSequence], catalog: Catalog) -> list[np.ndarray]:
    """Catalogue indices of every sequence's items, oldest first (one int64 array per sequence).

    Raises ``KeyError`` naming the item when a sequence holds an item outside ``catalog``.
    """
    return [catalog.indices(seq.item_ids) for seq in sequences]


def item_counts(encoded: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """How often each catalogue item occurs in ``encoded``: float64 array of shape (n_items,)."""
    if not encoded:
        return np.zeros(n_items, dtype=np.float64)
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in encoded])  # (total,)
    return np.bincount(flat, minlength=n_items).astype(np.float64)  # (n_items,)


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


def ndcg_hr_at_k(
    scores: np.ndarray, cases: Sequence[EvalCase], catalog: Catalog, k: int = 10
) -> tuple[float, float]:
    """Mean NDCG@k and HR@k of ``scores`` (n, N) for ``cases`` under full ranking.

    Items in a case's history are excluded (their score set to ``-inf``) before ranking; ties with
    the target count against it (a pessimistic rank).
    """
    if len(cases) == 0:
        return 0.0, 0.0
    scores = np.array(scores, dtype=np.float64, copy=True)  # (n, N)
    targets = catalog.indices(case.target for case in cases)  # (n,)
    for row, case in enumerate(cases):
        seen = catalog.indices(case.history.item_ids)
        scores[row, seen] = -np.inf
    target_scores = scores[np.arange(len(cases)), targets]  # (n,)
    rank = (scores > target_scores[:, None]).sum(axis=1)  # (n,) 0 = first
    rank += (scores == target_scores[:, None]).sum(axis=1) - 1  # pessimistic ties
    hit = (rank < k) & np.isfinite(target_scores)
    ndcg = np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0)
    return float(ndcg.mean()), float(hit.mean())


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
