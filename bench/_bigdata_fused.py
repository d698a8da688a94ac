"""The child process of ``bench/bigdata.py --part fused-*``: fit and evaluate the fused retriever
on a prepared large dataset, and write what each step cost as JSON.

    python bench/_bigdata_fused.py PREPARED RESULT.json [--text] [--eval-users 10000]

Steps, each timed (wall, CPU of this process) with the peak resident memory so far
(``ru_maxrss``): load the dataset; leave-one-out split of every user; fit each view on all
training sequences; tune the fusion weights on the validation cases of a seeded sample of users;
evaluate the fused retriever and each view alone on the test cases of the same users (full
ranking from top-k lists, history excluded). Last, apart from those figures, the sparse fused
top-20 of the first ``--check-users`` of them is compared with the dense fusion's.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.baselines.markov import MarkovRecommender
from llmrec.baselines.popularity import PopularityRecommender
from llmrec.data import RecDataset, leave_one_out
from llmrec.evaluation import EvalConfig, evaluate
from llmrec.recommender import Recommender
from llmrec.retrieval.fusion import FusedRetriever, FusionConfig
from llmrec.retrieval.simple import Cooccurrence, RecentPopularity

KS = (10, 20)
CHECK_K = 20
CHECK_BATCH = 50
#: Co-occurrence keeps each item's strongest neighbours only: popular items co-occur with
#: nearly all 100k items, and every history would touch the whole catalogue.
NEIGHBOURS = 100


class Steps:
    """Runs named steps and records wall time, CPU time and the peak RSS after each."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        value = fn()
        after = resource.getrusage(resource.RUSAGE_SELF)
        self.rows.append(
            {
                "step": name,
                "wall_s": time.perf_counter() - t0,
                "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                "peak_gib": after.ru_maxrss / 2**20,  # KiB on Linux
            }
        )
        logging.info("%s: %.1f s", name, self.rows[-1]["wall_s"])
        return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prepared", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--eval-users", type=int, default=10_000)
    parser.add_argument("--check-users", type=int, default=500)
    parser.add_argument("--depth", type=int, default=200, help="each view's top list")
    parser.add_argument("--text", action="store_true", help="add the MiniLM text view")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    step = Steps()
    dataset = step("load the prepared dataset", lambda: RecDataset.load(args.prepared))
    split = step("leave-one-out split of every user", lambda: leave_one_out(dataset))
    rng = np.random.default_rng(args.seed)
    chosen = np.sort(rng.choice(len(split.test), min(args.eval_users, len(split.test)), False))
    valid = [split.valid[i] for i in chosen]
    test = [split.test[i] for i in chosen]
    catalog = dataset.catalog
    views = _views(args.text)
    for name, view in views.items():
        step(f"fit {name}", lambda view=view: view.fit(split.train, catalog))
    config = FusionConfig(depth=args.depth, path="sparse")
    fused = FusedRetriever(views, config)
    step(
        f"tune fusion weights ({len(valid):,} validation users)",
        lambda: fused.fit(split.train, catalog, valid, fit_views=False),
    )
    eval_config = EvalConfig(ks=KS, depth=max(KS), ranking="top-k", batch_size=256)
    results = {
        "fused": step(
            f"evaluate fused ({len(test):,} test users)",
            lambda: evaluate(fused, dataset, test, eval_config, progress=False),
        )
    }
    for name, view in views.items():
        results[name] = step(
            f"evaluate {name} alone",
            lambda view=view: evaluate(view, dataset, test, eval_config, progress=False),
        )
    check = step(
        f"check: sparse vs dense fused top-{CHECK_K}, {args.check_users} users",
        lambda: _dense_check(fused, [c.history for c in test[: args.check_users]]),
    )
    cold = fused.cold_items()
    out = {
        "users": int(dataset.interactions["user_id"].nunique()),
        "items": len(catalog),
        "interactions": len(dataset.interactions),
        "train_users": len(split.train),
        "test_users_total": len(split.test),
        "eval_users": len(test),
        "cold_items": int(cold.sum()) if cold is not None else 0,
        "depth": args.depth,
        "method": config.method.value,
        "weights": fused.weights,
        "views": list(views),
        "neighbours": NEIGHBOURS,
        "steps": step.rows,
        "metrics": {name: r.metrics for name, r in results.items()},
        "notes": results["fused"].notes,
        "check": check,
    }
    args.result.write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _views(text: bool) -> dict[str, Recommender]:
    views: dict[str, Recommender] = {
        "pop": PopularityRecommender(),
        "recent-pop": RecentPopularity(),
        "markov": MarkovRecommender(),
        "cooc": Cooccurrence(neighbours=NEIGHBOURS),
    }
    if text:
        from llmrec.retrieval.text import TextView

        views["text"] = TextView(show_progress=False, batch_size=256)
    return views


def _dense_check(fused: FusedRetriever, histories: list) -> dict[str, int]:
    """How many users' sparse fused top-k lists equal the dense fusion's (the dense path holds
    every view's scores of ``CHECK_BATCH`` users at a time), and, where they differ, whether a
    dense top-k item was outside every view's top list (which the union cannot know)."""
    assert fused.catalog is not None
    dense = FusedRetriever(fused.views, FusionConfig(**{**vars(fused.config), "path": "dense"}))
    dense.catalog, dense.weights = fused.catalog, dict(fused.weights)
    same = outside = 0
    for start in range(0, len(histories), CHECK_BATCH):
        batch = histories[start : start + CHECK_BATCH]
        want = dense.top_k(batch, CHECK_K).items
        got = fused.top_k(batch, CHECK_K).items
        lists = [v.top_k(batch, fused.config.depth).items for v in fused.views.values()]
        for u in range(len(batch)):
            if np.array_equal(got[u], want[u]):
                same += 1
            else:
                listed = set(np.concatenate([top[u] for top in lists]).tolist())
                outside += not set(want[u].tolist()) <= listed
    return {"users": len(histories), "same": same, "outside_lists": outside}


if __name__ == "__main__":
    raise SystemExit(main())
