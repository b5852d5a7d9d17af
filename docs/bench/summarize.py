#!/usr/bin/env python3
"""docs/bench.md's side-by-side tables from side_by_side.sh's JSON lines: the median over rounds of every
(side, method, precision, threads, waiting), then each side's best fp32 and best at any precision per method.

    python3 docs/bench/summarize.py side-by-side.jsonl [more.jsonl ...]

Several files (runs of the script at different times) count as their rounds together.
"""
import json
import statistics
import sys
from collections import defaultdict


def main(paths):
    runs = defaultdict(list)
    peaks = defaultdict(list)
    lines = [line for path in paths for line in open(path)]
    for line in lines:
        if not line.strip():
            continue
        d = json.loads(line)
        if d["method"] == "peak":
            peaks[(d["side"], d["precision"], d["threads"])].append(d["gflops_per_second"])
            continue
        waiting = "spin" if d.get("omp_waiting", "").startswith("spin") else "default"
        runs[(d["side"], d["method"], d["precision"], d["threads"], waiting)].append(d["tokens_per_second"])
    median = {k: statistics.median(v) for k, v in runs.items()}
    rounds = max(len(v) for v in runs.values())  # per setting, over every file
    methods = list(dict.fromkeys(k[1] for k in median))
    columns = sorted({(k[0], k[2], k[3], k[4]) for k in median}, key=lambda c: (c[0] != "scale", c[1], c[2], c[3]))

    def name(c):
        side, precision, threads, waiting = c
        return f"{'Scale' if side == 'scale' else 'peer'} {precision}, {threads} thr" + (", spin" if waiting == "spin" else "")

    print(f"Tokens per second, the median of {rounds} round(s).\n")
    print("| method | " + " | ".join(name(c) for c in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for m in methods:
        print(f"| {m} | " + " | ".join(f"{median[(c[0], m, c[1], c[2], c[3])]:,.0f}" if (c[0], m, c[1], c[2], c[3]) in median else "—"
                                      for c in columns) + " |")

    def best(side, method, precisions):
        found = [(v, k) for k, v in median.items() if k[0] == side and k[1] == method and k[2] in precisions]
        return max(found) if found else (float("nan"), None)

    def where(k):
        if k is None:
            return "none"
        return f"{k[2]}, {k[3]} thr" + (", spin" if k[4] == "spin" else "")

    print("\n| method | Scale's best fp32 ÷ the peer's best fp32 | Scale's best ÷ the peer's best, any precision |")
    print("|---|---|---|")
    for m in methods:
        (s32, ks32), (p32, kp32) = best("scale", m, {"fp32"}), best("peer", m, {"fp32"})
        (sa, ksa), (pa, kpa) = best("scale", m, {"fp32", "bf16"}), best("peer", m, {"fp32", "bf16"})
        print(f"| {m} | {s32:,.0f} ({where(ks32)}) / {p32:,.0f} ({where(kp32)}) = **{s32 / p32:.2f}** "
              f"| {sa:,.0f} ({where(ksa)}) / {pa:,.0f} ({where(kpa)}) = **{sa / pa:.2f}** |")
    if peaks:
        print("\nMatrix-product peaks (2048³, best of five in a process; every process's figure), GFLOP/s:")
        for (side, precision, threads), g in sorted(peaks.items()):
            print(f"- {side} {precision}, {threads} thr: " + ", ".join(f"{x:,.0f}" for x in g))


if __name__ == "__main__":
    main(sys.argv[1:] or ["side-by-side.jsonl"])
