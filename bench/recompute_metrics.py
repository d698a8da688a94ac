"""Recompute ranking metrics from a rankings file, independently of llmrec (standard library only).

    python bench/recompute_metrics.py runs/sasrec.rankings.jsonl --check runs/sasrec.metrics.json

Each line of the rankings file is {"user_id", "ranked": [item ids, best first], "target"}. A
target absent from "ranked" is a miss. With --check, every metric in the metrics JSON that this
script also computes must agree to 1e-9; the exit status is 1 otherwise.
"""

import argparse
import json
import math
import sys


def recompute(path, ks=(1, 5, 10, 20)):
    sums = {f"{m}@{k}": 0.0 for m in ("HR", "NDCG", "MRR") for k in ks}
    users = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            users += 1
            ranked = row["ranked"]
            if row["target"] not in ranked:
                continue
            rank = ranked.index(row["target"]) + 1  # 1-based
            for k in ks:
                if rank <= k:
                    sums[f"HR@{k}"] += 1.0
                    sums[f"NDCG@{k}"] += 1.0 / math.log2(rank + 1)
                    sums[f"MRR@{k}"] += 1.0 / rank
    if users == 0:
        raise SystemExit(f"{path}: no rankings")
    return users, {name: total / users for name, total in sums.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rankings")
    parser.add_argument("--check", metavar="METRICS_JSON", help="compare with this metrics file")
    args = parser.parse_args()
    users, metrics = recompute(args.rankings)
    print(json.dumps({"users": users, "metrics": metrics}, indent=2))
    if args.check:
        with open(args.check, encoding="utf-8") as f:
            reported = json.load(f)
        bad = [
            f"{name}: reported {reported['metrics'][name]!r}, recomputed {value!r}"
            for name, value in metrics.items()
            if name in reported["metrics"] and abs(reported["metrics"][name] - value) > 1e-9
        ]
        if reported.get("users") != users:
            bad.append(f"users: reported {reported.get('users')}, rankings file has {users}")
        if bad:
            print("MISMATCH\n" + "\n".join(bad), file=sys.stderr)
            return 1
        print(f"OK: {len(metrics)} metrics agree with {args.check}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
