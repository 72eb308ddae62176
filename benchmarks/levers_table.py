"""Measured vs predicted speed-up of the inference levers, from a `variant bench --json` file.

    variant bench --model random:var-d16 --batch 2 --repeats 3 --threads 2 --json levers.json \\
        --plans full d8 full+cfgstop8 full+guide=d2 full+prune0.5@8 full+kv1,2 \\
                d8+cfgstop8+prune0.5@8
    python benchmarks/levers_table.py levers.json

Prediction: the cost model's FLOPs of one sampling call (`variant bench`'s `flops`: the
transformer layers with attention, plus the word embedding and vocab head of every position)
relative to the full plan. Measured: the full plan's median transformer time over the row's
(the transformer timer covers the layers, the head and the token draws). The last column is
measured / predicted; within 0.85..1.15 means the lever saves what its FLOPs promise.
"""

from __future__ import annotations

import argparse
import json
import sys


def table(data: dict) -> str:
    rows = data["rows"]
    full = next((r for r in rows if r["plan"] == "full"), None)
    if full is None:
        raise ValueError("the bench file has no 'full' row: add full to --plans.")
    lines = ["| configuration | transformer s (median, IQR) | measured speed-up | predicted "
             "(FLOPs) | measured / predicted | peak KV (measured = predicted) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        t = r["transformer"]
        measured = full["transformer"]["median"] / t["median"]
        predicted = full["flops"] / r["flops"]
        kv_ok = "yes" if r["kv_peak_bytes"] == r["kv_predicted_bytes"] else "NO"
        lines.append(f"| {r['plan']} | {t['median']:.2f} ({t['q1']:.2f}–{t['q3']:.2f}) | "
                     f"{measured:.2f}× | {predicted:.2f}× | {measured / predicted:.2f} | "
                     f"{r['kv_peak_bytes'] / 2**20:.1f} MiB ({kv_ok}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", help="the file `variant bench --json` wrote")
    args = parser.parse_args(argv)
    with open(args.bench_json) as f:
        data = json.load(f)
    meta = data["meta"]
    print(f"{meta['model']}: depth {meta['depth']}, width {meta['width']}, "
          f"{meta['device']}, {meta['threads']} threads, batch {meta['settings']}\n")
    print(table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
