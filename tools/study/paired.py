"""Two methods of one kvfoot eval run compared sample by sample (the same prompts):

    python3 tools/study/paired.py RESULTS.jsonl METHOD_A METHOD_B TASK[,TASK...]

METHOD_A and METHOD_B are the method names (or specs) as results.jsonl holds them. Prints
how many samples of those tasks A scored above B and below B, and the two-sided sign
test's p over the samples that differ (ties left out). No packages beyond Python's own.
"""
import json
import math
import sys


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    path, a, b, tasks = sys.argv[1], sys.argv[2], sys.argv[3], set(sys.argv[4].split(","))
    score = {a: {}, b: {}}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("method") in score and r.get("task") in tasks and "score" in r and not r.get("failed"):
                score[r["method"]][(r["task"], r["length"], r["index"])] = r["score"]
    both = score[a].keys() & score[b].keys()
    if not both:
        sys.exit(f"{path}: no sample of {sorted(tasks)} has both {a!r} and {b!r}")
    wins = sum(score[a][k] > score[b][k] for k in both)
    losses = sum(score[a][k] < score[b][k] for k in both)
    n, k = wins + losses, min(wins, losses)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    print(f"{len(both)} samples: {a} above {b} in {wins}, below in {losses}, tied in {len(both) - n}; sign test p = {p:.3g}")


if __name__ == "__main__":
    main()
