"""Transformer time of the inference levers against the cost model's prediction, side by side.

    PYTHONPATH=src python benchmarks/levers_speed.py --model random:var-d16 --rounds 5 \\
        --json docs/levers/speed_d16.json

One process, one model, the configurations run in turn within each round (the order rotates from
round to round), so a slow spell of a shared machine hits all of them alike. For every round the
speed-up of a configuration is the full plan's transformer time in that round over its own; the
table gives the median over rounds with the range, next to two predictions:
- FLOPs: one sampling call's (layers with attention, word embedding and vocab head of every
  position), full over the configuration's (`CostModel.flops`);
- latency model: `efficiency.budget.transformer_seconds` from a per-scale profile of the full
  plan measured here first (`profile_scales`, the file `variant bench --profile` writes): the
  profile's seconds per layer step scaled by a roofline-style step model fitted to it, so the
  fixed cost of reading a layer's weights at small scales is counted.
The transformer timer covers the layers, the head and the token draws; the decoder is left out
(levers do not change it).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from variant import load_model
from variant.efficiency.bench import BenchSettings, profile_scales
from variant.efficiency.budget import transformer_seconds
from variant.sampling.configuration import resolve_configurations
from variant.models.cost import CostModel
from variant.sampling.sampler import generate
from variant.sampling.settings import SamplingConfig

DEFAULT_SPECS = ("full", "d8", "full+cfgstop8", "full+guide=d2", "full+autoguide=d2",
                 "full+prune0.5@8", "full+kv1,2", "d8+cfgstop8+prune0.5@8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="random:var-d16")
    p.add_argument("--specs", nargs="+", default=list(DEFAULT_SPECS),
                   help="configurations; the first must be 'full'")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", dest="json_out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    var, vae = load_model(args.model, seed=0)
    settings = SamplingConfig(dtype=args.dtype, seed=0)
    configs = resolve_configurations(args.specs, var.depth, var.patch_nums, settings)
    if configs[0].name != "full":
        raise ValueError("the first configuration must be 'full' (the reference).")
    labels = (torch.arange(args.batch) * 7 + 1) % var.num_classes
    cost = CostModel(var.config, args.dtype, settings.rows(args.batch))
    flops = [cost.flops(c.plan, include_head=True, levers=c.levers) for c in configs]
    with torch.no_grad():
        for c in configs:  # warm-up: allocator, oneDNN primitives, the caches' dry runs
            generate(var, args.batch, labels, settings=c.settings, plan=c.plan)
        profile = profile_scales(var, vae, BenchSettings(batch=args.batch, sampling=settings,
                                                         warmup=0, repeats=1), repeats=2)
        latency = [transformer_seconds(profile, c.plan, c.levers, var.patch_nums)
                   for c in configs]
        times = [[] for _ in configs]
        kv = [0] * len(configs)
        for r in range(args.rounds):
            order = list(range(len(configs)))
            order = order[r % len(order):] + order[:r % len(order)]
            for i in order:
                res = generate(var, args.batch, labels, settings=configs[i].settings,
                               plan=configs[i].plan)
                times[i].append(res.timings["transformer"])
                kv[i] = res.kv_peak_bytes
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{c.name} {times[i][-1]:.2f}s" for i, c in enumerate(configs)), flush=True)
    rows = []
    for i, c in enumerate(configs):
        ratios = [f / t for f, t in zip(times[0], times[i])]
        predicted = flops[0] / flops[i]
        modelled = latency[0] / latency[i]
        measured = statistics.median(ratios)
        rows.append({"configuration": c.name, "transformer_s": times[i],
                     "median_s": statistics.median(times[i]), "speedup_per_round": ratios,
                     "speedup": measured, "predicted_speedup": predicted,
                     "measured_over_predicted": measured / predicted,
                     "latency_model_s": latency[i], "latency_model_speedup": modelled,
                     "measured_over_latency_model": measured / modelled, "flops": flops[i],
                     "kv_peak_bytes": kv[i],
                     "kv_predicted_bytes": cost.kv_peak_bytes(c.plan, c.levers)})
    print(f"\n{args.model}: depth {var.depth}, width {var.config.width}, batch {args.batch} "
          f"(rows {settings.rows(args.batch)}), {args.dtype}, {args.threads} threads, "
          f"{args.rounds} rounds\n")
    print("| configuration | transformer s (median) | speed-up (median, range over rounds) | "
          "predicted: FLOPs | measured / FLOPs | predicted: latency model | measured / model | "
          "peak KV = predicted |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ok = "yes" if r["kv_peak_bytes"] == r["kv_predicted_bytes"] else "NO"
        spread = r["speedup_per_round"]
        print(f"| {r['configuration']} | {r['median_s']:.2f} | {r['speedup']:.2f}× "
              f"({min(spread):.2f}–{max(spread):.2f}) | {r['predicted_speedup']:.2f}× | "
              f"{r['measured_over_predicted']:.2f} | {r['latency_model_speedup']:.2f}× | "
              f"{r['measured_over_latency_model']:.2f} | {r['kv_peak_bytes'] / 2**20:.1f} MiB "
              f"({ok}) |")
    if args.json_out:
        meta = {"profile": profile, "model": args.model, "batch": args.batch, "dtype": args.dtype,
                "threads": args.threads, "rounds": args.rounds, "torch": torch.__version__,
                "machine": platform.machine(), "processor": platform.processor(),
                "date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv)}
        with open(args.json_out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)
        print(f"\nresults: {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
