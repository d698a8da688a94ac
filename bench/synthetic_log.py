"""A synthetic e-commerce interaction log and item table, as Parquet for `llmrec data prepare`.

    python bench/synthetic_log.py --out runs/synthetic-10m                # 10M rows, ~1 min
    python bench/synthetic_log.py --out /tmp/tiny --interactions 2000 --users 200 --items 50
    llmrec data prepare --inter runs/synthetic-10m/interactions.parquet \
        --items runs/synthetic-10m/items.parquet --out data/synthetic-10m

Writes ``interactions.parquet`` (user_id, item_id, timestamp, behavior[, rating]) and
``items.parquet`` (item_id, title, category). The shape of the log:

- every user has at least one interaction; the rest are spread by a log-normal user activity, so
  a few users have hundreds of rows and most have a handful;
- item popularity is Zipf-like: the item of popularity rank ``r`` is drawn with probability
  proportional to ``1 / r**zipf`` (ranks are a seeded permutation of the ids, so popularity does
  not follow the id order);
- each user's timestamps (integer seconds in 2023-2024) form sessions: a minute or so between
  events of one session, a couple of days between sessions;
- behaviours are view / cart / buy (85 / 10 / 5 %); ``--rating`` adds a 1-5 star column (float).

Rows are generated vectorised in chunks of users (one Parquet row group per chunk) and shuffled
within each chunk, so the file is not in user or time order. The output depends only on the
options (the seed included): the same command writes the same tables.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BEHAVIORS = np.array(["view", "cart", "buy"])
BEHAVIOR_P = np.array([0.85, 0.10, 0.05])
CATEGORIES = np.array(
    [
        "Books", "Electronics", "Home", "Kitchen", "Garden", "Toys", "Sports", "Beauty",
        "Grocery", "Clothing", "Shoes", "Jewelry", "Music", "Movies", "Games", "Office",
        "Pets", "Baby", "Automotive", "Tools", "Health", "Outdoors", "Crafts", "Travel",
    ]
)  # fmt: skip
ADJECTIVES = np.array(
    ["Classic", "Compact", "Deluxe", "Eco", "Essential", "Modern", "Portable", "Pro", "Smart",
     "Ultra", "Vintage", "Wireless"]
)  # fmt: skip
NOUNS = np.array(
    ["Bundle", "Case", "Collection", "Edition", "Kit", "Lamp", "Set", "Speaker", "Stand",
     "Station", "Tool", "Widget"]
)  # fmt: skip
#: 2023-01-01 and 2025-01-01 UTC, in seconds since the epoch.
T_START, T_END = 1_672_531_200, 1_735_689_600
SESSION_GAP_S = 2 * 86_400  # mean time between sessions
EVENT_GAP_S = 60  # mean time between events of one session
NEW_SESSION_P = 0.2  # chance that the next event starts a new session


@dataclass(frozen=True)
class LogSpec:
    """The size and shape of the synthetic log."""

    interactions: int = 10_000_000
    users: int = 1_000_000
    items: int = 100_000
    zipf: float = 1.0
    rating: bool = False
    seed: int = 0
    #: Users per generated chunk (one Parquet row group each).
    chunk_users: int = 100_000

    def __post_init__(self) -> None:
        if self.users < 1 or self.items < 1:
            raise ValueError(f"users and items must be >= 1, got {self.users} and {self.items}")
        if self.interactions < self.users:
            raise ValueError(
                f"interactions ({self.interactions}) must be >= users ({self.users}): every "
                "user has at least one interaction"
            )


def write_log(spec: LogSpec, out: Path) -> tuple[Path, Path]:
    """Write ``interactions.parquet`` and ``items.parquet`` under ``out``; return both paths."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    counts = _user_counts(spec, rng)
    item_p = _item_probabilities(spec, rng)
    item_ids = _ids("i", spec.items)
    user_ids = _ids("u", spec.users)
    inter_path, items_path = out / "interactions.parquet", out / "items.parquet"
    writer = None
    try:
        for start in range(0, spec.users, spec.chunk_users):
            stop = min(start + spec.chunk_users, spec.users)
            chunk = _chunk(spec, rng, counts[start:stop], start, item_p, user_ids, item_ids)
            if writer is None:
                writer = pq.ParquetWriter(inter_path, chunk.schema)
            writer.write_table(chunk)
    finally:
        if writer is not None:
            writer.close()
    pq.write_table(_items(spec, rng, item_ids), items_path)
    return inter_path, items_path


def _ids(prefix: str, n: int) -> np.ndarray:
    """``prefix`` + zero-padded numbers: u0000000, u0000001, ... (strings sort like numbers)."""
    width = len(str(n - 1))
    return np.char.add(prefix, np.char.zfill(np.arange(n).astype(str), width)).astype(object)


def _user_counts(spec: LogSpec, rng: np.random.Generator) -> np.ndarray:
    """Interactions per user: 1 each, the rest spread by a log-normal activity level."""
    activity = rng.lognormal(mean=0.0, sigma=1.2, size=spec.users)
    extra = rng.multinomial(spec.interactions - spec.users, activity / activity.sum())
    return (1 + extra).astype(np.int64)  # (users,)


def _item_probabilities(spec: LogSpec, rng: np.random.Generator) -> np.ndarray:
    """P(item) ~ 1 / rank**zipf, ranks a seeded permutation of the item indices."""
    ranks = rng.permutation(spec.items) + 1
    weights = 1.0 / ranks.astype(np.float64) ** spec.zipf
    return weights / weights.sum()  # (items,)


def _chunk(
    spec: LogSpec,
    rng: np.random.Generator,
    counts: np.ndarray,
    first_user: int,
    item_p: np.ndarray,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
) -> pa.Table:
    n = int(counts.sum())
    users = np.repeat(np.arange(first_user, first_user + len(counts)), counts)  # (n,)
    starts = np.cumsum(counts) - counts  # row of each user's first event, (users,)
    first = np.zeros(n, dtype=bool)
    first[starts] = True
    gaps = np.where(
        rng.random(n) < NEW_SESSION_P,
        rng.exponential(SESSION_GAP_S, n),
        rng.exponential(EVENT_GAP_S, n),
    )
    gaps[first] = 0.0
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[starts], counts)  # seconds since the user's first event
    begin = rng.integers(T_START, T_END - 90 * 86_400, size=len(counts))
    timestamps = np.minimum(np.repeat(begin, counts) + elapsed.astype(np.int64), T_END - 1)
    items = np.searchsorted(np.cumsum(item_p), rng.random(n), side="right")
    items = np.minimum(items, spec.items - 1)  # float rounding at the top of the CDF
    behaviors = rng.choice(len(BEHAVIORS), size=n, p=BEHAVIOR_P)
    columns = {
        "user_id": pa.array(user_ids[users], pa.string()),
        "item_id": pa.array(item_ids[items], pa.string()),
        "timestamp": pa.array(timestamps, pa.int64()),
        "behavior": pa.array(BEHAVIORS[behaviors], pa.string()),
    }
    if spec.rating:
        quality = (items * 2654435761 % 1000) / 1000.0  # a fixed per-item taste in [0, 1)
        stars = np.clip(np.rint(2.0 + 2.5 * quality + rng.normal(0, 1.0, n)), 1, 5)
        columns["rating"] = pa.array(stars, pa.float64())
    order = rng.permutation(n)  # a log is not grouped by user
    return pa.table(columns).take(pa.array(order))


def _items(spec: LogSpec, rng: np.random.Generator, item_ids: np.ndarray) -> pa.Table:
    adjective = ADJECTIVES[rng.integers(0, len(ADJECTIVES), spec.items)]
    noun = NOUNS[rng.integers(0, len(NOUNS), spec.items)]
    numbers = np.arange(spec.items).astype(str)
    titles = np.char.add(np.char.add(np.char.add(adjective, " "), noun), np.char.add(" ", numbers))
    category = CATEGORIES[rng.integers(0, len(CATEGORIES), spec.items)]
    return pa.table(
        {
            "item_id": pa.array(item_ids, pa.string()),
            "title": pa.array(titles.astype(object), pa.string()),
            "category": pa.array(category.astype(object), pa.string()),
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the two Parquet files")
    parser.add_argument("--interactions", type=int, default=LogSpec.interactions)
    parser.add_argument("--users", type=int, default=LogSpec.users)
    parser.add_argument("--items", type=int, default=LogSpec.items)
    parser.add_argument("--zipf", type=float, default=LogSpec.zipf, help="popularity exponent")
    parser.add_argument("--rating", action="store_true", help="add a 1-5 rating column")
    parser.add_argument("--seed", type=int, default=LogSpec.seed)
    parser.add_argument("--chunk-users", type=int, default=LogSpec.chunk_users)
    args = parser.parse_args()
    spec = LogSpec(
        interactions=args.interactions,
        users=args.users,
        items=args.items,
        zipf=args.zipf,
        rating=args.rating,
        seed=args.seed,
        chunk_users=args.chunk_users,
    )
    inter, items = write_log(spec, Path(args.out))
    print(f"wrote {inter} ({spec.interactions:,} interactions, {spec.users:,} users)")
    print(f"wrote {items} ({spec.items:,} items)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
