"""Sampling speed of two source trees side by side: did a change make the sampler slower?

Each round runs `benchmarks/sample_speed.py` of tree A and of tree B (each with its own `src/`
on PYTHONPATH, one process at a time, same settings) and reads their JSON. The order alternates
(AB, BA, AB, ...) so that drift of the machine and run-order effects hit both alike. Plans are
matched by their position in `--plans` (the two trees may name them differently). Prints, per
plan, the median over rounds of each tree's median transformer / decoder / total seconds and the
B/A ratio (< 1: B faster).

    git archive af65732 | tar -x -C /tmp/before
    python benchmarks/ab_revisions.py /tmp/before . --rounds 3 --json ab.json

Run it on an otherwise idle machine: two timed jobs on 2 cores slow each other up to 10x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PHASES = ("transformer", "decoder", "total")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("tree_a", help="root of the first source tree (e.g. before a change)")
    p.add_argument("tree_b", help="root of the second source tree (e.g. after it)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--plans", nargs="+", default=["full", "d4"])
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per plan and round")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per plan and round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="also write every round's rows here")
    return p.parse_args(argv)


def run_tree(root: Path, args, out: Path) -> list[dict]:
    cmd = [sys.executable, str(root / "benchmarks" / "sample_speed.py"), "--plans", *args.plans,
           "--dtypes", args.dtype, "--depth", str(args.depth), "--batch", str(args.batch),
           "--repeats", str(args.repeats), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["rows"]


def main(argv=None) -> int:
    args = parse_args(argv)
    trees = {"A": Path(args.tree_a).resolve(), "B": Path(args.tree_b).resolve()}
    medians: dict[tuple[str, str, str], list[float]] = {}
    record = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
                rows = run_tree(trees[name], args, Path(tmp) / f"{name}{r}.json")
                record.append({"round": r, "tree": name, "root": str(trees[name]), "rows": rows})
                for spec, row in zip(args.plans, rows):
                    for phase in PHASES:
                        key = (name, spec, phase)
                        medians.setdefault(key, []).append(row["stats"][phase]["median"])
                print(f"round {r + 1}/{args.rounds}: {name} done", file=sys.stderr)
    print(f"A = {trees['A']}\nB = {trees['B']}\n{args.rounds} rounds x {args.repeats} runs; "
          f"VAR-d{args.depth}, batch {args.batch} (CFG), {args.dtype}, {args.threads} threads; "
          "median over rounds of each round's median seconds\n")
    print("| plan | phase | A s | B s | B/A |\n|---|---|---:|---:|---:|")
    for plan in args.plans:
        for phase in PHASES:
            a = statistics.median(medians[("A", plan, phase)])
            b = statistics.median(medians[("B", plan, phase)])
            print(f"| {plan} | {phase} | {a:.3f} | {b:.3f} | {b / a:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rounds": record}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
