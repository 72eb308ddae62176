"""Compiled vs eager sampling on one device: first-call time (compilation included) and the
steady-state transformer time per image, with a check that both draw the same tokens.

Each plan runs eagerly (one untimed warm-up, then `--repeats` timed calls), then with
`SamplingConfig(compile=True)`: the first call compiles one graph per scale (timed as
"first call"), the next `--repeats` calls are the steady state. Inductor's on-disk cache is
pointed at a fresh temporary directory, so the first call is a cold compile as on a new
machine (`--warm-cache` keeps the user's cache). Numbers are printed (and written with
`--json`); nothing is asserted.

    PYTHONPATH=src python benchmarks/compile_speed.py --model builtin --batch 4 --plans full d2 \
        --threads 2 --json compile.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="builtin", help="any source variant.load_model accepts")
    p.add_argument("--batch", type=int, default=4, help="images per call")
    p.add_argument("--plans", nargs="+", default=["full", "d2"], help="plan specs")
    p.add_argument("--dtype", default="fp32", help="fp32, bf16 or fp16")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per mode")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--warm-cache", action="store_true",
                   help="use inductor's existing on-disk cache (default: a fresh one)")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def timed_call(var, settings, plan, batch: int, sync) -> tuple[float, float, list]:
    """(wall seconds, transformer seconds, indices) of one sampling call."""
    start = time.perf_counter()
    out = var.generate(batch, list(range(batch)), settings=settings, plan=plan)
    sync()
    return time.perf_counter() - start, out.timings["transformer"], out.indices


def measure_plan(var, plan: str, args) -> dict:
    import torch

    from variant import SamplingConfig

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    labels_mod = var.num_classes
    batch = min(args.batch, labels_mod)
    row = {"plan": plan, "batch": batch}
    for mode in ("eager", "compiled"):
        settings = SamplingConfig(seed=0, dtype=args.dtype, compile=mode == "compiled")
        first_s, first_tf, first_idx = timed_call(var, settings, plan, batch, sync)
        runs = [timed_call(var, settings, plan, batch, sync) for _ in range(args.repeats)]
        row[f"{mode}_first_call_s"] = first_s
        row[f"{mode}_transformer_ms_per_image"] = 1e3 * statistics.median(
            r[1] for r in runs) / batch
        row[f"{mode}_wall_ms_per_image"] = 1e3 * statistics.median(r[0] for r in runs) / batch
        row[f"{mode}_indices"] = first_idx
    row["same_tokens"] = all(torch.equal(a, b) for a, b in
                             zip(row.pop("eager_indices"), row.pop("compiled_indices")))
    row["steady_speedup"] = (row["eager_transformer_ms_per_image"]
                             / row["compiled_transformer_ms_per_image"])
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.warm_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="variant-inductor-")
    import torch

    import variant

    torch.set_num_threads(args.threads)
    var, _ = variant.load_model(args.model, device=args.device)
    var.eval()
    rows = [measure_plan(var, plan, args) for plan in args.plans]
    head = (f"{'plan':8} {'eager 1st s':>11} {'compiled 1st s':>14} {'eager ms/img':>12} "
            f"{'compiled ms/img':>15} {'speed-up':>8} {'same tokens':>11}")
    print(f"model {args.model}, batch {args.batch}, {args.dtype}, {args.threads} threads, "
          f"{args.device}, torch {torch.__version__}; transformer time per image, median of "
          f"{args.repeats}")
    print(head)
    for r in rows:
        print(f"{r['plan']:8} {r['eager_first_call_s']:11.2f} {r['compiled_first_call_s']:14.2f} "
              f"{r['eager_transformer_ms_per_image']:12.2f} "
              f"{r['compiled_transformer_ms_per_image']:15.2f} {r['steady_speedup']:8.2f} "
              f"{str(r['same_tokens']):>11}")
    if args.json:
        from variant.atomic import write_text_atomic

        meta = {"model": args.model, "batch": args.batch, "dtype": args.dtype,
                "threads": args.threads, "device": args.device, "repeats": args.repeats,
                "torch": torch.__version__, "cold_cache": not args.warm_cache,
                "load_average": os.getloadavg()}
        write_text_atomic(args.json, json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
