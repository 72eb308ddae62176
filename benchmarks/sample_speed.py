"""Sampling speed: VARiant's sampler (full and subnet plans) against the official VAR sampler.

Numbers are printed, nothing is asserted. Both samplers run the same random weights: the script
builds a VAR (default depth 12, width 768, 12 heads) with the official full-size VQVAE (ch 160,
V 4096, Cvae 32, 256 px), saves both state dicts to a temporary file, and a second process loads
them into the official classes with `strict=True` (our key names are the official ones) and runs
`autoregressive_infer_cfg`. The official decoder time is measured by timing its
`vae.fhat_to_img` call, so both samplers report transformer and decoder time separately.

Runs are interleaved (ours, official, ours, ...) so that load from other processes hits both
alike; each row reports the median and the min-max of `--repeats` timed runs after `--warmup`
untimed ones, plus the process CPU time, which drifts less than wall time on a busy machine.

    PYTHONPATH=src python benchmarks/sample_speed.py --official /tmp/varref
    PYTHONPATH=src python benchmarks/sample_speed.py --official /tmp/varref \
        --plans full d6 d4 d2 --dtypes fp32 bf16 --repeats 5 --json speed.json

`--official` is a plain checkout of FoundationVision/VAR; it is imported at run time in the
worker process only (its top-level package is called `models`). Without it only our sampler runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from variant.units import DTYPES

MARK = "@@sample_speed "  # prefix of the worker's protocol lines on its stdout


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", default=None, help="path of an official VAR checkout")
    p.add_argument("--depth", type=int, default=12, help="VAR depth (width 64*depth)")
    p.add_argument("--batch", type=int, default=2, help="images per sample call")
    p.add_argument("--cfg", type=float, default=1.5, help="guidance; != 0 doubles the batch")
    p.add_argument("--top-k", type=int, default=900)
    p.add_argument("--top-p", type=float, default=0.96)
    p.add_argument("--plans", nargs="+", default=["full", "d4"],
                   help="our plans: 'full', 'dN' (paper plan) or a JSON per-scale list")
    p.add_argument("--bridge", type=int, default=6, help="bridge zone of the dN plans")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch threads in both processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--_official-worker", dest="official_worker", action="store_true",
                   help=argparse.SUPPRESS)
    p.add_argument("--_state", dest="state", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------ models
def build_ours(depth: int, seed: int):
    from variant.config import VAEConfig, VARConfig
    from variant.models.var import VAR
    from variant.models.vqvae import VQVAE

    torch.manual_seed(seed)
    vae = VQVAE(VAEConfig()).eval()  # official shape: ch 160, V 4096, Cvae 32, 256 px
    var = VAR(VARConfig(depth=depth), vae).init_weights().eval()
    return var, vae


class DecodeClock:
    """Wraps `vae.fhat_to_img` (on this one object) to time each decode, wall and CPU.

    Both samplers are timed the same way: decoder = the `fhat_to_img` call, transformer = the
    rest of the sampling call (setup, scale loop, sampling).
    """

    def __init__(self, vae):
        self.decode, self.last = vae.fhat_to_img, (0.0, 0.0)
        vae.fhat_to_img = self  # instance attribute: only this object, only this process

    def __call__(self, f_hat):
        wall, cpu, out = timed(lambda: self.decode(f_hat))
        self.last = (wall, cpu)
        return out


def phases(wall: float, cpu: float, clock: DecodeClock) -> dict:
    dec_wall, dec_cpu = clock.last
    return {"total": wall, "decoder": dec_wall, "transformer": wall - dec_wall,
            "total_cpu": cpu, "decoder_cpu": dec_cpu, "transformer_cpu": cpu - dec_cpu}


def labels(batch: int) -> torch.Tensor:
    return (torch.arange(batch) * 137 + 207) % 1000


def timed(fn):
    """Run fn() -> (wall seconds, process CPU seconds, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def run_ours(var, vae, clock, plan, dtype, args) -> dict:
    from variant.sampling.sampler import generate
    from variant.sampling.settings import SamplingConfig

    def call():
        settings = SamplingConfig(cfg=args.cfg, top_k=args.top_k, top_p=args.top_p,
                                  seed=args.seed, dtype=dtype)
        return generate(var, args.batch, labels(args.batch), settings=settings, plan=plan)

    wall, cpu, res = timed(call)
    return {**phases(wall, cpu, clock), "kv_peak_bytes": res.kv_peak_bytes,
            "images": res.images}


# ------------------------------------------------------------------------------------ official
def official_worker(args) -> None:
    """Child process: load the saved weights into the official classes, serve timed samples."""
    sys.path.insert(0, str(Path(args.official).resolve()))
    from models import build_vae_var  # the official package, from --official

    torch.set_num_threads(args.threads)
    state = torch.load(args.state, map_location="cpu", weights_only=True)
    vae, var = build_vae_var(device="cpu", depth=args.depth, patch_nums=tuple(state["patch_nums"]),
                             flash_if_available=False, fused_if_available=False)
    vae.load_state_dict(state["vae"], strict=True)
    var.load_state_dict(state["var"], strict=True)
    vae.eval(), var.eval()
    clock = DecodeClock(vae)  # the official sampler calls vae_proxy[0].fhat_to_img: this object
    print(MARK + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        dtype = DTYPES[request["dtype"]]

        def call(dtype=dtype):
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                return var.autoregressive_infer_cfg(
                    args.batch, labels(args.batch), g_seed=args.seed, cfg=args.cfg,
                    top_k=args.top_k, top_p=args.top_p)

        wall, cpu, images = timed(call)
        if request.get("save"):
            torch.save(images.float(), request["save"])
        print(MARK + json.dumps(phases(wall, cpu, clock)), flush=True)


class OfficialSampler:
    """The official sampler in a child process; `run(dtype)` does one timed sample."""

    def __init__(self, args, state_path: str):
        cmd = [sys.executable, os.path.abspath(__file__), "--_official-worker", "--_state",
               state_path, "--official", args.official, "--depth", str(args.depth),
               "--batch", str(args.batch), "--cfg", str(args.cfg), "--top-k", str(args.top_k),
               "--top-p", str(args.top_p), "--threads", str(args.threads),
               "--seed", str(args.seed)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self._read()  # wait for "ready"

    def _read(self) -> dict:
        for line in self.proc.stdout:  # the official code prints too: pass its lines on
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
            print(f"[official] {line}", end="", file=sys.stderr)
        raise RuntimeError("the official sampler process exited; see its error above")

    def run(self, dtype: str, save: str | None = None) -> dict:
        self.proc.stdin.write(json.dumps({"dtype": dtype, "save": save}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# ------------------------------------------------------------------------------------ report
KEYS = ("transformer", "decoder", "total", "transformer_cpu", "decoder_cpu", "total_cpu")


def summarise(runs: list[dict]) -> dict:
    out = {}
    for key in KEYS:
        values = [r[key] for r in runs]
        out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return out


def flop_ratio(plan, var) -> float:
    from variant.models.cost import CostModel

    cost = CostModel(var.config)
    return cost.flops(plan, include_head=True) / cost.flops(var.full_plan(), include_head=True)


def print_table(rows: list[dict], args, cpu: bool) -> None:
    suffix = "_cpu" if cpu else ""
    what = "process CPU seconds" if cpu else "wall seconds"
    print(f"\n{what}, median [min-max] of {args.repeats} runs after {args.warmup} warm-up")
    head = ("| sampler | plan | dtype | transformer | decoder | total | FLOP ratio "
            "| predicted transformer | actual / predicted |")
    print(head)
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        s = r["stats"]

        def cell(key, s=s):
            v = s[key + suffix]
            return f"{v['median']:.2f} [{v['min']:.2f}-{v['max']:.2f}]"

        pred = r.get("predicted" + suffix)
        pred_cells = ("", "") if pred is None else (
            f"{pred:.2f}", f"{r['vs_prediction' + suffix]:.2f}")
        print(f"| {r['sampler']} | {r['plan']} | {r['dtype']} | {cell('transformer')} | "
              f"{cell('decoder')} | {cell('total')} | {r['flop_ratio']:.3f} | "
              f"{pred_cells[0]} | {pred_cells[1]} |")


def paired(a: dict, b: dict, key: str) -> float:
    """Median over rounds of a's time / b's time in the same round (robust to slow periods)."""
    return statistics.median(x[key] / y[key] for x, y in zip(a["runs"], b["runs"]))


def compare(rows: list[dict]) -> None:
    by = {(r["sampler"], r["plan"], r["dtype"]): r for r in rows}
    print("\nofficial / ours, full plan (> 1: ours is faster): median of per-round ratios "
          "[ratio of minima]")
    for dtype in sorted({r["dtype"] for r in rows}):
        ours, off = by.get(("variant", "full", dtype)), by.get(("official", "full", dtype))
        if ours and off:
            cells = [f"{key} {paired(off, ours, key):.3f} "
                     f"[{off['stats'][key]['min'] / ours['stats'][key]['min']:.3f}]"
                     for key in KEYS]
            print(f"  {dtype}: " + ", ".join(cells))
    print("subnet / full transformer time vs the FLOP ratio: median of per-round ratios")
    for r in rows:
        full = by.get(("variant", "full", r["dtype"]))
        if r["sampler"] == "variant" and r["plan"] != "full" and full:
            cells = [f"{key} {paired(r, full, key):.3f} = "
                     f"{paired(r, full, key) / r['flop_ratio']:.2f} x FLOP ratio"
                     for key in ("transformer", "transformer_cpu")]
            print(f"  {r['plan']} {r['dtype']}: FLOP ratio {r['flop_ratio']:.3f}; "
                  + ", ".join(cells))


# ------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.official_worker:
        official_worker(args)
        return 0
    from variant.sampling.plan import DepthPlan

    torch.set_num_threads(args.threads)
    var, vae = build_ours(args.depth, args.seed)
    clock = DecodeClock(vae)
    plans = [DepthPlan.from_spec(s, var.depth, var.num_scales, args.bridge) for s in args.plans]
    official = None
    tmp = tempfile.TemporaryDirectory(prefix="variant-speed-")
    if args.official:
        state_path = os.path.join(tmp.name, "state.pt")
        torch.save({"var": var.state_dict(), "vae": vae.state_dict(),
                    "patch_nums": list(var.patch_nums)}, state_path)
        official = OfficialSampler(args, state_path)
    runs: dict[tuple, list[dict]] = {}
    extra: dict[tuple, dict] = {}
    try:
        for dtype in args.dtypes:
            for i in range(args.warmup + args.repeats):
                for plan in plans:
                    out = run_ours(var, vae, clock, plan, DTYPES[dtype], args)
                    key = ("variant", plan.name, dtype)
                    extra.setdefault(key, {"kv_peak_bytes": out["kv_peak_bytes"],
                                           "flop_ratio": flop_ratio(plan, var)})
                    if i == 0 and official is not None and plan.is_full(var.depth):
                        extra[key]["images"] = out["images"]
                    if i >= args.warmup:
                        runs.setdefault(key, []).append(out)
                if official is not None:
                    save = os.path.join(tmp.name, f"official_{dtype}.pt") if i == 0 else None
                    out = official.run(dtype, save)
                    key = ("official", "full", dtype)
                    extra.setdefault(key, {"flop_ratio": 1.0})
                    if save:
                        extra[key]["images"] = torch.load(save)
                    if i >= args.warmup:
                        runs.setdefault(key, []).append(out)
    finally:
        if official is not None:
            official.close()
    rows = collect(runs, extra)
    print(f"\nVAR-d{args.depth} (width {64 * args.depth}) + VQVAE ch160 V4096, 256 px; batch "
          f"{args.batch} images x {2 if args.cfg else 1} (CFG) = "
          f"{args.batch * (2 if args.cfg else 1)} transformer rows; {args.threads} threads")
    print_table(rows, args, cpu=False)
    print_table(rows, args, cpu=True)
    compare(rows)
    for dtype in args.dtypes:
        a = extra.get(("variant", "full", dtype), {}).get("images")
        b = extra.get(("official", "full", dtype), {}).get("images")
        if a is not None and b is not None:
            print(f"{dtype}: max |ours - official| over the images of the same seed: "
                  f"{(a - b).abs().max().item():.2e}")
    if args.json:
        meta = {k: v for k, v in vars(args).items() if k not in ("official_worker", "state")}
        Path(args.json).write_text(json.dumps({"args": meta, "rows": rows}, indent=2))
    tmp.cleanup()
    return 0


def collect(runs: dict, extra: dict) -> list[dict]:
    rows = []
    for (sampler, plan, dtype), timings in runs.items():
        info = extra[(sampler, plan, dtype)]
        row = {"sampler": sampler, "plan": plan, "dtype": dtype, "stats": summarise(timings),
               "flop_ratio": info["flop_ratio"], "kv_peak_bytes": info.get("kv_peak_bytes"),
               "runs": [{k: v for k, v in t.items() if k != "images"} for t in timings]}
        rows.append(row)
    for row in rows:  # the FLOP prediction: full-plan transformer time x FLOP ratio
        full = next((r for r in rows if r["sampler"] == row["sampler"] == "variant"
                     and r["plan"] == "full" and r["dtype"] == row["dtype"]), None)
        if full is None or row["sampler"] != "variant" or row["plan"] == "full":
            continue
        for suffix in ("", "_cpu"):
            key = "transformer" + suffix
            pred = full["stats"][key]["median"] * row["flop_ratio"]
            row["predicted" + suffix] = pred
            row["vs_prediction" + suffix] = row["stats"][key]["median"] / pred
    return rows


if __name__ == "__main__":
    sys.exit(main())
