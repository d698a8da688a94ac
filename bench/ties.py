"""How much of a log's event order is tied: the share of consecutive training events stamped
within the same second (and within the first gap bucket of the next-item LLM, < 2.6 s), and how
many test histories end in such a run. The figures behind ``nextitem.shuffle_ties`` and
``nextitem.tie_passes`` (docs/nextitem.md).

    python bench/ties.py                 # ML-100K, leave-one-out
    python bench/ties.py --data DIR      # a prepared dataset folder
"""

from __future__ import annotations

import argparse

import numpy as np

from llmrec.data import leave_one_out, open_dataset
from llmrec.nextitem.features import TIED_GAP, EventVocab

GAP_BUCKETS = 16  # NextItemConfig's default


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml-100k")
    args = parser.parse_args()
    split = leave_one_out(open_dataset(args.data))
    vocab = EventVocab(0.0, 1.0, gap_buckets=GAP_BUCKETS, time_buckets=1)
    gaps = np.concatenate([np.diff(np.asarray(s.timestamps, float)) for s in split.train])
    tied = vocab.gap_ids(np.concatenate([[0.0], np.cumsum(gaps)]))[1:] == TIED_GAP
    print(f"consecutive training events: {len(gaps)}")
    print(f"  same second: {np.mean(gaps == 0):.1%}; within the tied gap bucket: {tied.mean():.1%};"
          f" within a minute: {np.mean(gaps <= 60):.1%}")  # fmt: skip
    runs = []
    for case in split.test:
        ids = vocab.gap_ids(np.asarray(case.history.timestamps, float))
        n = 1
        while n < len(ids) and ids[-n] == TIED_GAP:
            n += 1
        runs.append(n)
    runs = np.array(runs)
    print(f"test histories: {len(runs)}; ending in a tied run of 2+ events: {np.mean(runs > 1):.1%}"
          f"; mean length of the last run: {runs.mean():.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
