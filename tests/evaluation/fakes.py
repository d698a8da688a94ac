"""A tiny hand-made dataset and a fixed-score recommender: metrics can be computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmrec.data import Catalog, RecDataset
from llmrec.data.schema import sort_interactions
from llmrec.recommender import Recommender


def make_dataset(sequences: dict[str, list[str]], n_items: int = 30) -> RecDataset:
    ids = [str(i) for i in range(n_items)]
    catalog = Catalog(
        pd.DataFrame(
            {
                "item_id": ids,
                "title": [f"item {i}" for i in ids],
                "year": pd.array([None] * n_items, dtype="Int64"),
                "categories": [[] for _ in ids],
                "description": None,
            }
        )
    )
    rows = [
        (user, item, float(t)) for user, items in sequences.items() for t, item in enumerate(items)
    ]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    users = pd.DataFrame({"user_id": list(sequences)})
    return RecDataset("tiny", catalog, users, sort_interactions(inter))


class FixedScores(Recommender):
    """Scores item i as ``weights[i]`` for everyone (the same vector for every user)."""

    name = "fixed"

    def __init__(self, weights: np.ndarray) -> None:
        super().__init__()
        self.weights = np.asarray(weights, dtype=np.float32)
        self.calls: list[int] = []

    def fit(self, train, catalog, valid=None):  # noqa: ANN001
        self.catalog = catalog
        return self

    def score(self, histories):  # noqa: ANN001
        self.calls.append(len(histories))
        return np.tile(self.weights, (len(histories), 1))

    def save(self, path):  # noqa: ANN001
        raise NotImplementedError

    @classmethod
    def load(cls, path, catalog):  # noqa: ANN001
        raise NotImplementedError
