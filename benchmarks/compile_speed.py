"""Compiled vs eager sampling on one device: first-call time (compilation included) and the
steady-state transformer time per image, with a check that both draw the same tokens.

Each plan runs eagerly and with `SamplingConfig(compile=True)`: the first call of each is timed
(the compiled one compiles one graph per scale), then `--repeats` rounds of one eager and one
compiled call, interleaved so that load from other processes hits both alike. The transformer
part (up to the decoder, which is not compiled) is timed in wall and in process CPU seconds: with
`--threads 1` CPU time is the work done, the robust measure on a shared machine. Inductor's
on-disk cache is pointed at a fresh temporary directory, so the first call is a cold compile as
on a new machine (`--warm-cache` keeps the user's cache). Numbers are printed (and written with
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


def timed_call(var, settings, plan, batch: int, sync) -> dict:
    """Wall and process CPU seconds of one sampling call's transformer part (to the decoder),
    the call's wall seconds, and its token indices."""
    from variant.sampling.sampler import generate

    marks = {}

    def trace(event, scale_index):
        if event == "decode":
            sync()
            marks["cpu"], marks["wall"] = time.process_time(), time.perf_counter()

    cpu, wall = time.process_time(), time.perf_counter()
    out = generate(var, batch, list(range(batch)), settings=settings, plan=plan, trace=trace)
    sync()
    return {"call_s": time.perf_counter() - wall, "wall_s": marks["wall"] - wall,
            "cpu_s": marks["cpu"] - cpu, "indices": out.indices}


def measure_plan(var, plan: str, args) -> dict:
    """First calls of both modes, then `repeats` interleaved rounds (eager, compiled), so that
    load from other processes hits both alike."""
    import torch

    from variant import SamplingConfig

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    batch = min(args.batch, var.num_classes)
    modes = {m: SamplingConfig(seed=0, dtype=args.dtype, compile=m == "compiled")
             for m in ("eager", "compiled")}
    row = {"plan": plan, "batch": batch}
    first = {m: timed_call(var, s, plan, batch, sync) for m, s in modes.items()}
    timed_call(var, modes["compiled"], plan, batch, sync)  # settles dynamo's caches
    rounds = [{m: timed_call(var, s, plan, batch, sync) for m, s in modes.items()}
              for _ in range(args.repeats)]
    for m in modes:
        row[f"{m}_first_call_s"] = first[m]["call_s"]
        for key in ("wall_s", "cpu_s"):
            row[f"{m}_transformer_{key[:-2]}_ms_per_image"] = 1e3 * statistics.median(
                r[m][key] for r in rounds) / batch
    row["same_tokens"] = all(torch.equal(a, b) for a, b in
                             zip(first["eager"]["indices"], first["compiled"]["indices"]))
    row["cpu_speedup"] = statistics.median(r["eager"]["cpu_s"] / r["compiled"]["cpu_s"]
                                           for r in rounds)
    row["wall_speedup"] = statistics.median(r["eager"]["wall_s"] / r["compiled"]["wall_s"]
                                            for r in rounds)
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
    print(f"model {args.model}, batch {args.batch}, {args.dtype}, {args.threads} threads, "
          f"{args.device}, torch {torch.__version__}; transformer ms per image, median of "
          f"{args.repeats} interleaved rounds; speed-up: median of per-round ratios")
    print(f"{'plan':6} {'eager 1st s':>11} {'compiled 1st s':>14} {'eager cpu':>9} "
          f"{'compiled cpu':>12} {'eager wall':>10} {'compiled wall':>13} {'cpu x':>6} "
          f"{'wall x':>6} {'same tokens':>11}")
    for r in rows:
        print(f"{r['plan']:6} {r['eager_first_call_s']:11.2f} {r['compiled_first_call_s']:14.2f} "
              f"{r['eager_transformer_cpu_ms_per_image']:9.2f} "
              f"{r['compiled_transformer_cpu_ms_per_image']:12.2f} "
              f"{r['eager_transformer_wall_ms_per_image']:10.2f} "
              f"{r['compiled_transformer_wall_ms_per_image']:13.2f} {r['cpu_speedup']:6.2f} "
              f"{r['wall_speedup']:6.2f} {str(r['same_tokens']):>11}")
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
