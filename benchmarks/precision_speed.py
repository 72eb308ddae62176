"""Precision levers side by side on CPU: plain vs quantised weights (w8), quantised KV (kv8) and
both, each with depth, eager and compiled: transformer time, peak RSS and KV bytes.

    PYTHONPATH=src python benchmarks/precision_speed.py --models builtin random:var-d16 \\
        --batch 2 --threads 2 --repeats 5 --json docs/precision/speed_cpu.json

Every configuration is one `variant bench` run in its own process (so its peak RSS is its own:
the weights as loaded, the KV cache and the activations), one after another: warm-up, then the
median transformer seconds of `--repeats` calls (`--compile`: each scale's step under
torch.compile, variant/compiling.py; the warm-up call compiles). Configurations: for each plan
of `--plans` (default full, d{D/2}, d{D/4} of the model's depth D) the plain one and each of
`--levers` joined to it (default w8, kv8, w8+kv8); a lever part this version does not know
(kv8 before the KV precision lever exists) is skipped with a note. Speed ratios are within one
run, against the plain configuration of the same plan and mode.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from variant.efficiency.bench import child_env
from variant.pretrained import read_var_config
from variant.sampling.configuration import parse_configuration
from variant.units import fmt_bytes

LEVERS = ("w8", "kv8", "w8+kv8")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["builtin", "random:var-d16"])
    p.add_argument("--plans", nargs="+", default=None,
                   help="plan specs (default: full, d{D/2}, d{D/4} of each model's depth D)")
    p.add_argument("--levers", nargs="+", default=list(LEVERS),
                   help="lever parts joined to each plan, e.g. w8 kv8 w8+kv8")
    p.add_argument("--modes", nargs="+", choices=("eager", "compiled"),
                   default=["eager", "compiled"])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", dest="json_out", default=None)
    p.add_argument("--mlp", action="store_true",
                   help="instead: the issue's layer check, a 1024->4096->1024 MLP at batch 8, "
                        "fp32 vs torchao int8 weight-only, eager and compiled, in this process")
    return p.parse_args(argv)


def mlp_rows(args) -> list[dict]:
    """The MLP check: median seconds per forward of each (precision, mode), `--repeats` x 50
    forwards after a warm-up (compiling: the warm-up compiles)."""
    import statistics
    import time

    from torch import nn

    from variant.precision import torchao_quantization

    torch.set_num_threads(args.threads)
    q = torchao_quantization()
    rows = []
    x = torch.randn(8, 1024, generator=torch.Generator().manual_seed(0))
    for precision in ("fp32", "int8"):
        for mode in args.modes:
            torch.manual_seed(0)
            mlp = nn.Sequential(nn.Linear(1024, 4096), nn.GELU(), nn.Linear(4096, 1024)).eval()
            if precision == "int8":
                q.quantize_(mlp, q.Int8WeightOnlyConfig())
            run = torch.compile(mlp) if mode == "compiled" else mlp
            with torch.inference_mode():
                start = time.perf_counter()
                run(x)
                first = time.perf_counter() - start
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    for _ in range(50):
                        run(x)
                    times.append((time.perf_counter() - start) / 50)
            rows.append({"model": "mlp 1024-4096-1024, batch 8", "spec": precision, "mode": mode,
                         "forward_s": statistics.median(times), "first_call_s": first})
    plain = {r["mode"]: r["forward_s"] for r in rows if r["spec"] == "fp32"}
    for r in rows:
        r["time_vs_fp32"] = r["forward_s"] / plain[r["mode"]]
    return rows


def specs_for(depth: int, plans, levers) -> tuple[list[str], list[str]]:
    """(configuration specs, notes on skipped lever parts) for a model of `depth` layers."""
    plans = plans or ["full", *dict.fromkeys(f"d{d}" for d in (depth // 2, depth // 4)
                                             if 1 < d < depth)]
    specs, notes = [], []
    for lever in levers:
        try:
            parse_configuration(f"full+{lever}")
        except ValueError:
            notes.append(f"{lever}: not a lever of this version, skipped")
    known = [lv for lv in levers if not any(n.startswith(f"{lv}:") for n in notes)]
    for plan in plans:
        specs += [plan, *(f"{plan}+{lever}" for lever in known)]
    return specs, notes


def bench(model: str, spec: str, mode: str, args, tmp: Path) -> dict:
    """One `variant bench` process for `spec`: its row (transformer time, RSS, KV)."""
    out = tmp / "bench.json"
    cmd = [sys.executable, "-m", "variant", "bench", "--model", model, "--plans", spec,
           "--batch", str(args.batch), "--dtype", args.dtype, "--warmup", str(args.warmup),
           "--repeats", str(args.repeats), "--threads", str(args.threads), "--device", "cpu",
           "--seed", "0", "--json", str(out)] + (["--compile"] if mode == "compiled" else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1],
                "command": " ".join(cmd)}
    (row,) = json.loads(out.read_text())["rows"]
    return {"transformer_s": row["transformer"]["median"],
            "transformer_q1_s": row["transformer"]["q1"],
            "transformer_q3_s": row["transformer"]["q3"],
            "peak_rss_bytes": row["peak_memory_bytes"], "kv_peak_bytes": row["kv_peak_bytes"],
            "memory_predicted_bytes": row.get("memory_predicted_bytes")}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.mlp:
        rows = mlp_rows(args)
        for r in rows:
            print(f"{r['spec']:<5} {r['mode']:<8} {1e3 * r['forward_s']:8.3f} ms per forward "
                  f"({r['time_vs_fp32']:.2f}x fp32; first call {r['first_call_s']:.2f} s)")
        if args.json_out:
            meta = {"command": " ".join(sys.argv), "threads": args.threads,
                    "repeats": args.repeats, "torch": torch.__version__}
            Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json_out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2)
                                           + "\n")
        return 0
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="variant-precision-") as tmp:
        for model in args.models:
            specs, skipped = specs_for(read_var_config(model).depth, args.plans, args.levers)
            notes += [f"{model}: {n}" for n in skipped]
            for mode in args.modes:
                for spec in specs:
                    print(f"{model} {spec} {mode} ...", file=sys.stderr, flush=True)
                    rows.append({"model": model, "spec": spec, "mode": mode,
                                 **bench(model, spec, mode, args, Path(tmp))})
    add_ratios(rows)
    print(table(rows))
    for note in notes:
        print(f"note: {note}")
    if args.json_out:
        meta = {"command": " ".join(sys.argv), "threads": args.threads, "batch": args.batch,
                "dtype": args.dtype, "repeats": args.repeats, "torch": torch.__version__,
                "machine": platform.processor() or platform.machine(), "notes": notes}
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0


def add_ratios(rows: list[dict]) -> None:
    """Each row's time and RSS over the plain configuration of its plan, model and mode."""
    plain = {(r["model"], r["mode"], parse_configuration(r["spec"])[0]): r for r in rows
             if "+" not in r["spec"] and "error" not in r}
    for r in rows:
        base = plain.get((r["model"], r["mode"], parse_configuration(r["spec"])[0]))
        if base is None or "error" in r:
            continue
        r["time_vs_plain"] = r["transformer_s"] / base["transformer_s"]
        if r["peak_rss_bytes"] and base["peak_rss_bytes"]:
            r["rss_vs_plain"] = r["peak_rss_bytes"] / base["peak_rss_bytes"]


def table(rows: list[dict]) -> str:
    lines = [f"{'model':<16} {'configuration':<14} {'mode':<8} {'transformer':>11} "
             f"{'x plain':>7} {'peak RSS':>10} {'x plain':>7} {'KV peak':>10}"]
    for r in rows:
        head = f"{r['model']:<16} {r['spec']:<14} {r['mode']:<8}"
        if "error" in r:
            lines.append(f"{head} failed: {r['error']}")
            continue
        rss = r["peak_rss_bytes"]
        lines.append(f"{head} {r['transformer_s']:>10.3f}s {r.get('time_vs_plain', 1):>7.2f} "
                     f"{fmt_bytes(rss) if rss else '-':>10} {r.get('rss_vs_plain', 1):>7.2f} "
                     f"{fmt_bytes(r['kv_peak_bytes']):>10}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
