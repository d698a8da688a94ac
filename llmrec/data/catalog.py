"""The item catalogue: item ids, a fixed integer index per item, and the items' text views."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd

from llmrec.data.records import Item

#: Columns every items table has; any other column is a free text attribute.
ITEM_CORE_COLUMNS = ("item_id", "title", "year", "categories", "description")


class Catalog:
    """Items in a fixed order. ``index(item_id)`` is the row every model uses for that item.

    The table must have the columns in :data:`ITEM_CORE_COLUMNS` (``year``, ``description`` may
    hold missing values; ``categories`` holds lists of strings); further columns are attributes.
    """

    def __init__(self, table: pd.DataFrame) -> None:
        missing = [c for c in ITEM_CORE_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"items table lacks columns {missing}; it has {list(table.columns)}")
        ids = table["item_id"].astype(str)
        dup = ids[ids.duplicated()]
        if len(dup):
            raise ValueError(f"items table repeats item ids, e.g. {dup.iloc[:5].tolist()}")
        self.table = table.reset_index(drop=True)
        self.ids: list[str] = ids.tolist()
        self._index = {item_id: i for i, item_id in enumerate(self.ids)}
        self.attribute_columns = [c for c in self.table.columns if c not in ITEM_CORE_COLUMNS]

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def __iter__(self) -> Iterator[Item]:
        for i in range(len(self)):
            yield self.item_at(i)

    def index(self, item_id: str) -> int:
        try:
            return self._index[item_id]
        except KeyError:
            raise KeyError(
                f"item id {item_id!r} is not in the catalogue ({len(self)} items)"
            ) from None

    def indices(self, item_ids: Iterable[str]) -> np.ndarray:
        return np.fromiter((self.index(i) for i in item_ids), dtype=np.int64)

    def item(self, item_id: str) -> Item:
        return self.item_at(self.index(item_id))

    def item_at(self, i: int) -> Item:
        row = self.table.iloc[i]
        year = row["year"]
        description = row["description"]
        categories = row["categories"]
        return Item(
            item_id=self.ids[i],
            title=str(row["title"]),
            year=None if pd.isna(year) else int(year),
            categories=tuple(categories) if categories is not None else (),
            description=None if description is None or pd.isna(description) else str(description),
            attributes={c: str(row[c]) for c in self.attribute_columns if not _is_missing(row[c])},
        )

    def fingerprint(self) -> str:
        """A short hash of the ids in order: a model trained on one catalogue refuses another."""
        h = hashlib.sha256("\n".join(self.ids).encode("utf-8"))
        return h.hexdigest()[:16]


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
