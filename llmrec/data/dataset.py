"""A prepared recommendation dataset: catalogue, users, interactions, and how it was made.

On disk it is a folder of Parquet tables plus ``manifest.json``; it is written atomically (to a
temporary sibling folder, then renamed), so an interrupted ``prepare`` never leaves half a dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from llmrec.data.catalog import Catalog
from llmrec.data.records import User, UserSequence
from llmrec.io import atomic_dir

if TYPE_CHECKING:
    import datasets

FORMAT_VERSION = 1
INTERACTION_CORE_COLUMNS = ("user_id", "item_id", "timestamp", "rating", "behavior")


@dataclass
class RecDataset:
    """Catalogue + users + time-ordered interactions.

    ``interactions`` has ``user_id``, ``item_id`` (strings), ``timestamp`` (float) and optionally
    ``rating`` (float), ``behavior`` (string) and context columns. Rows are kept sorted by user,
    then timestamp, then original order (the deterministic tie-break).
    """

    name: str
    catalog: Catalog
    users: pd.DataFrame
    interactions: pd.DataFrame
    report: list[str] = field(default_factory=list)

    # ----------------------------------------------------------------- views
    @property
    def context_columns(self) -> list[str]:
        return [c for c in self.interactions.columns if c not in INTERACTION_CORE_COLUMNS]

    def sequences(self) -> list[UserSequence]:
        """One time-ordered sequence per user, in the order users first appear in the table.

        Built column by column (each column converted to Python values once, equal values shared
        as one object), then cut per user: a log of millions of rows costs seconds, not a pandas
        group per user.
        """
        inter = self.interactions
        codes, users = pd.factorize(inter["user_id"])  # (rows,) order of first appearance
        order = np.argsort(codes, kind="stable")  # rows grouped by user, table order within
        order = order[codes[order] >= 0]  # a missing user id has no group, as in groupby
        bounds = np.concatenate([[0], np.cumsum(np.bincount(codes[order], minlength=len(users)))])
        ordered = inter.iloc[order] if not np.array_equal(order, np.arange(len(inter))) else inter
        columns = self._sequence_columns(ordered)
        return [
            self._cut(str(user_id), columns, int(bounds[u]), int(bounds[u + 1]))
            for u, user_id in enumerate(users.tolist())
        ]

    def _sequence_columns(self, rows: pd.DataFrame) -> dict[str, list | None]:
        """The columns of a :class:`UserSequence` as Python lists (``None``: no such column), the
        values :meth:`_sequence` gives."""
        has_rating = "rating" in rows.columns
        has_behavior = "behavior" in rows.columns
        columns: dict[str, list | None] = {
            "item_ids": _shared_values(rows["item_id"]),
            "timestamps": rows["timestamp"].astype(float).tolist(),
            "ratings": rows["rating"].astype(float).tolist() if has_rating else None,
            "behaviors": _shared_values(rows["behavior"].astype(str)) if has_behavior else None,
        }
        for c in self.context_columns:
            columns[f"context:{c}"] = [None if pd.isna(v) else str(v) for v in rows[c].tolist()]
        return columns

    def sequence(self, user_id: str) -> UserSequence:
        """The time-ordered sequence of one user (their whole history); a user without
        interactions is a :class:`ValueError`."""
        rows = self.interactions[self.interactions["user_id"] == str(user_id)]
        if rows.empty:
            raise ValueError(f"user {user_id!r} has no interactions in dataset {self.name!r}")
        return self._sequence(str(user_id), rows)

    def _sequence(self, user_id: str, rows: pd.DataFrame) -> UserSequence:
        return self._cut(user_id, self._sequence_columns(rows), 0, len(rows))

    def _cut(self, user_id: str, columns: dict[str, list | None], a: int, b: int) -> UserSequence:
        """The sequence of rows ``a:b`` of ``columns`` (see :meth:`_sequence_columns`)."""
        part = {name: None if col is None else tuple(col[a:b]) for name, col in columns.items()}
        return UserSequence(
            user_id=user_id,
            item_ids=part["item_ids"],  # type: ignore[arg-type]
            timestamps=part["timestamps"],  # type: ignore[arg-type]
            ratings=part["ratings"],
            behaviors=part["behaviors"],
            context={c: part[f"context:{c}"] for c in self.context_columns},  # type: ignore[misc]
        )

    def user(self, user_id: str) -> User:
        rows = self.users[self.users["user_id"] == user_id]
        if rows.empty:
            return User(user_id=user_id)
        row = rows.iloc[0]
        profile = {
            c: str(row[c]) for c in self.users.columns if c != "user_id" and not pd.isna(row[c])
        }
        return User(user_id=user_id, profile=profile)

    def profiles(self) -> dict[str, dict[str, str]]:
        """Every user's profile (the user table's columns other than ``user_id``), by user id."""
        columns = [c for c in self.users.columns if c != "user_id"]
        out: dict[str, dict[str, str]] = {}
        for row in self.users.itertuples(index=False):
            values = row._asdict()
            profile = {c: str(values[c]) for c in columns if not pd.isna(values[c])}
            if profile:
                out[str(values["user_id"])] = profile
        return out

    def stats(self) -> dict[str, Any]:
        inter = self.interactions
        per_user = inter.groupby("user_id", sort=False).size()
        per_item = inter.groupby("item_id", sort=False).size()
        n_users = int(inter["user_id"].nunique())
        n_items = len(self.catalog)
        stats: dict[str, Any] = {
            "name": self.name,
            "users": n_users,
            "items": n_items,
            "interactions": len(inter),
            "items_with_interactions": int(per_item.size),
            "density": len(inter) / max(1, n_users * n_items),
            "sequence_length": {
                "min": int(per_user.min()) if n_users else 0,
                "median": float(per_user.median()) if n_users else 0.0,
                "mean": float(per_user.mean()) if n_users else 0.0,
                "max": int(per_user.max()) if n_users else 0,
            },
            "time_range": [float(inter["timestamp"].min()), float(inter["timestamp"].max())]
            if len(inter)
            else None,
            "item_text_columns": ["title", "year", "categories", "description"]
            + self.catalog.attribute_columns,
            "user_profile_columns": [c for c in self.users.columns if c != "user_id"],
            "interaction_columns": list(inter.columns),
        }
        if "rating" in inter.columns and len(inter):
            stats["ratings"] = {
                str(k): int(v) for k, v in inter["rating"].value_counts().sort_index().items()
            }
        if "behavior" in inter.columns and len(inter):
            counts = inter["behavior"].value_counts()
            stats["behaviors"] = {str(k): int(v) for k, v in counts.items()}
        return stats

    def fingerprint(self) -> str:
        """Hash of the catalogue order and every interaction: what a model was trained on."""
        h = hashlib.sha256(self.catalog.fingerprint().encode())
        cols = ["user_id", "item_id", "timestamp"]
        h.update(pd.util.hash_pandas_object(self.interactions[cols], index=False).values.tobytes())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------ hand-offs
    def to_hf(self) -> datasets.DatasetDict:
        """The three tables as a ``datasets.DatasetDict`` (items, users, interactions)."""
        import datasets

        return datasets.DatasetDict(
            {
                "items": datasets.Dataset.from_pandas(self.catalog.table, preserve_index=False),
                "users": datasets.Dataset.from_pandas(self.users, preserve_index=False),
                "interactions": datasets.Dataset.from_pandas(
                    self.interactions, preserve_index=False
                ),
            }
        )

    def sequences_to_hf(self) -> datasets.Dataset:
        """One row per user with list columns (``item_ids``, ``timestamps``, ...)."""
        import datasets

        rows: dict[str, list[Any]] = {"user_id": [], "item_ids": [], "timestamps": []}
        seqs = self.sequences()
        for s in seqs:
            rows["user_id"].append(s.user_id)
            rows["item_ids"].append(list(s.item_ids))
            rows["timestamps"].append(list(s.timestamps))
        if seqs and seqs[0].ratings is not None:
            rows["ratings"] = [list(s.ratings or ()) for s in seqs]
        if seqs and seqs[0].behaviors is not None:
            rows["behaviors"] = [list(s.behaviors or ()) for s in seqs]
        for c in self.context_columns:
            rows[c] = [list(s.context[c]) for s in seqs]
        return datasets.Dataset.from_dict(rows)

    # ------------------------------------------------------------- on disk
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the dataset folder atomically; an existing folder at ``path`` is replaced."""
        with atomic_dir(path) as tmp:
            self.catalog.table.to_parquet(tmp / "items.parquet", index=False)
            self.users.to_parquet(tmp / "users.parquet", index=False)
            self.interactions.to_parquet(tmp / "interactions.parquet", index=False)
            manifest = {
                "format_version": FORMAT_VERSION,
                "name": self.name,
                "fingerprint": self.fingerprint(),
                "stats": self.stats(),
                "report": self.report,
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RecDataset:
        folder = Path(path)
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{folder} is not a prepared llmrec dataset (no manifest.json); create one with "
                f"`llmrec data prepare --dataset ml-100k --out {folder}` or `--inter FILE ...`"
            )
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{folder} has dataset format {manifest.get('format_version')}, this llmrec reads "
                f"{FORMAT_VERSION}; prepare it again"
            )
        items = pd.read_parquet(folder / "items.parquet")
        items["categories"] = items["categories"].map(
            lambda v: [] if v is None else [str(x) for x in np.asarray(v).tolist()]
        )
        return cls(
            name=manifest["name"],
            catalog=Catalog(items),
            users=pd.read_parquet(folder / "users.parquet"),
            interactions=pd.read_parquet(folder / "interactions.parquet"),
            report=list(manifest.get("report", [])),
        )


def _shared_values(column: pd.Series) -> list:
    """``column.tolist()``, with one Python object per distinct value (item ids and behaviours
    repeat: a 10M-row log holds 10M references, not 10M strings)."""
    codes, uniques = pd.factorize(column)
    if (codes < 0).any():  # missing values: keep them as tolist() gives them
        return column.tolist()
    return np.asarray(uniques.tolist(), dtype=object)[codes].tolist()
