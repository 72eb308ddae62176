"""`variant bench`: time and memory of sampling under each depth plan.

    variant bench --model random:var-d16 --plans full d8 d4 --batch 2 --repeats 3
    variant bench --model var_d30.pth --device cuda --batch 64 --dtype bf16 --json bench.json \\
        --plot bench.png --profile profile.json

On CPU every plan runs in a fresh subprocess (`--isolate`), so the peak RSS it reports belongs
to that plan alone; on CUDA the plans share the process and the peak is
`torch.cuda.max_memory_allocated`. `--profile` also times each scale of the full plan, for
`variant plan --max-latency`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys

import torch

from ..efficiency.bench import (
    BenchSettings,
    add_accounting,
    child_env,
    compare_to_full,
    current_rss_bytes,
    format_table,
    measure_plan,
    plot_bench,
    profile_scales,
    save_json,
)
from ..efficiency.budget import Predictor, Workload
from ..precision import WeightCopies
from ..pretrained import read_var_config
from ..sampling.configuration import Configuration, resolve_configurations
from ..sampling.plan import default_plan_specs
from ..sampling.settings import SamplingConfig
from ..units import fmt_bytes
from . import checks
from .budget import model_info
from .common import (
    add_model_args,
    add_plan_args,
    add_sampling_args,
    load_from_args,
    sampling_from_args,
)
from .fits import refuse_over_memory

log = logging.getLogger(__name__)

MARK = "@@variant-bench "  # prefix of a worker's result line on its stdout


def register(sub) -> None:
    p = sub.add_parser(
        "bench", help="benchmark sampling speed and memory of depth plans",
        description="For each plan: transformer, decoder and total time (median and "
                    "interquartile range over --repeats runs after --warmup), images/s, peak "
                    "memory, peak KV cache, FLOPs, and speed-up / savings vs the full network. "
                    "Prints a markdown table; --json, --plot and --profile write more.")
    add_model_args(p)
    add_plan_args(p, multiple=True)
    p.add_argument("--batch", type=checks.count, default=8,
                   help="images per sampling call (default 8)")
    add_sampling_args(p)
    p.add_argument("--warmup", type=checks.natural, default=1,
                   help="untimed runs per plan (default 1)")
    p.add_argument("--repeats", type=checks.count, default=3,
                   help="timed runs per plan (default 3)")
    p.add_argument("--threads", type=checks.count, default=None, help="torch CPU threads")
    p.add_argument("--isolate", choices=("auto", "yes", "no"), default="auto",
                   help="one fresh subprocess per plan (auto: yes on CPU, where peak RSS is "
                        "the memory measure; no on CUDA)")
    p.add_argument("--json", dest="json_out", type=checks.output_file(".json"), default=None,
                   help="write the results as JSON")
    p.add_argument("--plot", type=checks.output_file(".png"), default=None,
                   help="write a PNG chart (needs matplotlib)")
    p.add_argument("--profile", default=None,
                   help="also time each scale of the full plan and write a latency profile "
                        "JSON for `variant plan --max-latency`")
    p.add_argument("--_worker", dest="worker", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def settings_from_args(args) -> BenchSettings:
    return BenchSettings(batch=args.batch, sampling=sampling_from_args(args),
                         warmup=args.warmup, repeats=args.repeats)


def model_var_config(args):
    """The VARConfig of --model without loading its weights."""
    return read_var_config(args.model)


def resolve_plans(specs: list[str], var_config, bridge: int | None,
                  sampling=None) -> list[Configuration]:
    """The configurations of --plans (plan specs, levers allowed), duplicates dropped."""
    return resolve_configurations(specs, var_config.depth, var_config.patch_nums,
                                  sampling or SamplingConfig(), bridge)


def _with(settings: BenchSettings, config: Configuration) -> BenchSettings:
    return dataclasses.replace(settings, sampling=config.settings)


def _worker_command(args, spec: str, profile: bool) -> list[str]:
    cmd = [sys.executable, "-m", "variant", "bench", "--_worker", "--model", args.model,
           "--device", args.device, "--seed", str(args.seed), "--plans", spec,
           "--batch", str(args.batch), *sampling_from_args(args, seed=None).cli_args(),
           "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    for flag, value in (("--vae", args.vae), ("--bridge", args.bridge),
                        ("--threads", args.threads)):
        if value is not None:
            cmd += [flag, str(value)]
    if profile:
        cmd += ["--profile", "-"]
    return cmd


def run_isolated(args, spec: str, profile: bool) -> dict:
    """Run one plan in a fresh `variant bench --_worker` process; return its result."""
    proc = subprocess.run(_worker_command(args, spec, profile), stdout=subprocess.PIPE,
                          text=True, env=child_env())
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise ValueError(f"the benchmark worker for plan {spec!r} failed (exit code "
                       f"{proc.returncode}); its error is printed above.")


def run_worker(args) -> int:
    """Child process: load the model, measure the one plan given, print the result line."""
    var, vae = load_from_args(args, args.plans)
    settings = settings_from_args(args)
    (config,) = resolve_plans(args.plans, var.config, args.bridge, settings.sampling)
    with torch.no_grad():
        out = {"row": measure_plan(var, vae, config.plan, _with(settings, config),
                                   fresh_process=True, name=config.name)}
        if args.profile:
            out["profile"] = profile_scales(var, vae, settings)
    print(MARK + json.dumps(out), flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.worker:
        return run_worker(args)
    settings = settings_from_args(args)
    isolate = args.isolate == "yes" or (args.isolate == "auto"
                                        and not args.device.startswith("cuda"))
    if isolate:
        var_config = model_var_config(args)
        var = vae = None
    else:
        var_config = model_var_config(args)
        var, vae = load_from_args(args, args.plans or ())
        models = WeightCopies(var)  # one copy per weight precision the plans name
    specs = args.plans or default_plan_specs(var_config.depth)
    configs = resolve_plans(specs, var_config, args.bridge, settings.sampling)
    is_full = [c.levers.is_neutral and c.plan.is_full(var_config.depth) for c in configs]
    if args.profile and not any(is_full):
        raise ValueError("--profile times the full plan: add 'full' to --plans.")
    predictor = _predictor(args, var_config)
    refuse_over_memory(predictor, [c.plan for c in configs], args.device, "--batch")
    rows, profile = [], None
    for config, full in zip(configs, is_full):
        plan, own = config.plan, _with(settings, config)
        want_profile = bool(args.profile) and full
        log.info("benchmarking %s", config.name)
        if isolate:
            out = run_isolated(args, config.name, want_profile)  # the name is its spec
            row, profile = out["row"], out.get("profile", profile)
        else:
            with torch.no_grad():
                row = measure_plan(models(config.levers.get("weights")), vae, plan, own,
                                   name=config.name)
                if want_profile:
                    profile = profile_scales(var, vae, own)
        rows.append(add_accounting(row, plan, var_config, own, config.levers))
        # the planner's memory model knows depth plans and weight precisions (levers that
        # change the work: not predicted)
        row["memory_predicted_bytes"] = (
            None if config.levers.changes_work
            else predictor.predict(plan, config.levers.get("weights")).memory_bytes)
    compare_to_full(rows)
    _report(args, settings, rows, profile, var_config, isolate)
    return 0


def _predictor(args, var_config):
    """The budget planner's accounting for this workload, to print next to the measurements."""
    vae_config, _ = model_info(args.model, var_config)
    cuda = args.device.startswith("cuda")
    workload = Workload(batch=args.batch, sampling=sampling_from_args(args), device=args.device)
    return Predictor(var_config, vae_config, workload, runtime_bytes=0 if cuda
                     else current_rss_bytes())


def _report(args, settings, rows, profile, var_config, isolate: bool) -> None:
    threads = f", {args.threads or torch.get_num_threads()} CPU threads"
    where = "one process per plan" if isolate else "one process"
    print(format_table(rows, settings, args.device, f"{threads}; {where}"))
    bad = [r["plan"] for r in rows if r["kv_predicted_bytes"] != r["kv_peak_bytes"]]
    print("KV accounting (CostModel.kv_peak_bytes): "
          + (f"differs from the cache for {bad}" if bad else "matches the cache for every plan"))
    measured = [r for r in rows if r["peak_memory_bytes"] and r["memory_predicted_bytes"]]
    if measured:
        print("memory accounting (variant plan --max-memory) vs measured: " + ", ".join(
            f"{r['plan']} {fmt_bytes(r['memory_predicted_bytes'])} vs "
            f"{fmt_bytes(r['peak_memory_bytes'])}" for r in measured))
    meta = {"model": args.model, "device": args.device, "settings": settings.to_dict(),
            "depth": var_config.depth, "width": var_config.width,
            "patch_nums": list(var_config.patch_nums), "isolated": isolate,
            "threads": args.threads or torch.get_num_threads()}
    if args.json_out:
        save_json(args.json_out, {"meta": meta, "rows": rows})
        print(f"results: {args.json_out}")
    if args.plot:
        title = (f"{args.model}: batch {settings.batch} ({settings.rows} rows), "
                 f"{settings.dtype}, {args.device}")
        if plot_bench(rows, args.plot, title) is not None:
            print(f"chart: {args.plot}")
    if args.profile and args.profile != "-":
        if profile is None:
            raise ValueError("--profile needs the full plan among --plans.")
        save_json(args.profile, {**profile, "model_source": args.model})
        print(f"latency profile: {args.profile} (for variant plan --max-latency)")
