"""`variant plan --max-kv / --max-memory / --max-latency`: pick the deepest plan that fits.

    variant plan --depth 30 --batch 64 --dtype bf16 --max-kv 16GiB
    variant plan --model runs/sn/model --batch 8 --max-memory 2GiB --max-latency 20s \\
        --profile profile.json            # profile from `variant bench --profile`
"""

from __future__ import annotations

import argparse

import torch

from ..config import VAEConfig
from ..efficiency.bench import current_rss_bytes, save_json
from ..efficiency.budget import (
    Predictor,
    Workload,
    candidate_plans,
    load_profile,
    predicted_options,
)
from ..efficiency.choice import Budget, choose
from ..precision import supported_precisions
from ..pretrained import read_model_config
from ..sampling.settings import SamplingConfig
from ..units import fmt_bytes
from . import checks


def add_budget_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group(
        "budget planner", "pick the deepest plan (subnet depth, then bridge) whose predicted cost "
                          "fits; uses --batch, --dtype, --no-cfg, --bridge, --subnets")
    g.add_argument("--max-kv", type=checks.size, default=None,
                   help="peak KV-cache limit, e.g. 16GiB, 500MB")
    g.add_argument("--max-memory", type=checks.size, default=None,
                   help="peak memory limit: weights + KV + activations (+ runtime on CPU)")
    g.add_argument("--max-latency", type=checks.duration, default=None,
                   help="seconds per batch, e.g. 2s, 500ms (needs --profile)")
    g.add_argument("--profile", type=checks.input_file, default=None,
                   help="latency profile JSON written by `variant bench --profile`")
    g.add_argument("--device", type=checks.device,
                   default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where the model will run (cpu adds the runtime's resident size)")


def budget_from_args(args) -> Budget:
    """The `Budget` of --max-kv/--max-memory/--max-latency, each checked with its flag named."""
    limits = {"max_kv": args.max_kv, "max_memory": args.max_memory,
              "max_latency": args.max_latency}
    for name, value in limits.items():
        if value is not None and not 0 < value < float("inf"):
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}.")
    if not any(v is not None for v in limits.values()):
        raise ValueError("give at least one of --max-kv, --max-memory, --max-latency.")
    return Budget(**limits)


def budget_requested(args) -> bool:
    return any(getattr(args, n, None) is not None
               for n in ("max_kv", "max_memory", "max_latency"))


def model_info(source: str | None, var_config):
    """(VAEConfig, meta dict) of a model; the official VQVAE when there is no model source."""
    if source is None:
        return VAEConfig(patch_nums=var_config.patch_nums), {}
    _, vae_config, meta = read_model_config(source)
    return vae_config, meta


def run_budget(args, read_config) -> int:
    """`read_config(args)`: the VARConfig of --model or --depth/--resolution (cli.plan)."""
    var_config = read_config(args)
    vae_config, meta = model_info(args.model, var_config)
    K, depth = var_config.num_scales, var_config.depth
    bridge = args.bridge if args.bridge is not None else meta.get("bridge")  # None: default
    subnets = args.subnets or meta.get("subnet_depths")
    sampling = SamplingConfig(dtype=args.dtype)  # the official settings, guidance as asked
    workload = Workload(batch=args.batch, device=args.device,
                        sampling=sampling.replace(cfg=0.0) if args.no_cfg else sampling)
    budget = budget_from_args(args)
    profile = load_profile(args.profile) if args.profile else None
    if budget.max_latency is not None and profile is None:
        raise ValueError("--max-latency needs a latency profile of this machine: run "
                         "`variant bench --model ... --profile profile.json` and pass "
                         "--profile profile.json.")
    runtime = 0 if args.device.startswith("cuda") else current_rss_bytes()
    predictor = Predictor(var_config, vae_config, workload, profile, runtime)
    plans = candidate_plans(depth, K, bridge, subnets, pin_bridge=args.bridge is not None)
    # under a memory limit, quantised weights are candidates where torchao has kernels
    # (--weights: that one only); they change no KV, and profiles time full precision
    precisions = ([args.weights] if getattr(args, "weights", None)
                  else supported_precisions(args.device) if budget.max_memory else ())
    unsupported = [p for p in precisions if p not in supported_precisions(args.device)]
    if unsupported:
        raise ValueError(f"--weights {unsupported[0]} does not run on {args.device} (there: "
                         f"{', '.join(supported_precisions(args.device)) or 'none'}); plan for "
                         "a device that has it (--device cuda) or drop --weights.")
    # under a memory or KV limit, each plan with its keys/values in int8 too (any device)
    kv_precisions = ("int8",) if budget.max_memory or budget.max_kv else ()
    choice = choose(budget, predicted_options(predictor, plans, precisions, kv_precisions))
    chosen, rejected = choice.chosen.source, [o.source for o in choice.ahead]
    _print_decision(args, var_config, workload, budget, chosen, rejected, subnets, profile)
    if args.json_out:
        save_json(args.json_out, {"chosen": _as_dict(chosen), "rejected":
                                  [_as_dict(p) | {"over": p.over(budget)} for p in rejected]})
    return 0


def _as_dict(pred) -> dict:
    return {"spec": pred.spec, "weights": pred.weights, "kv_precision": pred.kv_precision,
            "plan": pred.plan.to_dict(),
            "kv_bytes": pred.kv_bytes,
            "memory_bytes": pred.memory_bytes, "latency_s": pred.latency_s,
            "memory_parts": pred.parts}


def _print_decision(args, cfg, workload, budget, chosen, rejected, subnets, profile) -> None:
    rows = (f"{workload.rows} rows: CFG doubles the batch" if workload.use_cfg
            else "no CFG: not doubled")
    print(f"VAR depth {cfg.depth}, width {cfg.width}, {cfg.num_scales} scales; batch "
          f"{workload.batch} ({rows}), {workload.dtype}, {workload.device}")
    limits = [f"KV <= {fmt_bytes(budget.max_kv)}" if budget.max_kv else "",
              f"memory <= {fmt_bytes(budget.max_memory)}" if budget.max_memory else "",
              f"latency <= {budget.max_latency:.2f} s" if budget.max_latency else ""]
    print("budget: " + ", ".join(x for x in limits if x)
          + (f"; subnet depths {sorted(subnets)}" if subnets else ""))
    plan = chosen.plan
    flexible = plan.layer_sets[-1]
    weights = (f", {chosen.weights} transformer weights" if chosen.weights
               else ", full-precision weights")
    kv = f"{chosen.kv_precision} with float32 scales" if chosen.kv_precision else workload.dtype
    weights += f", KV cache in {kv}"
    if plan.is_full(cfg.depth):
        print(f"\nchosen plan: {chosen.spec} (all {cfg.depth} layers at every scale{weights})")
    else:
        print(f"\nchosen plan: {chosen.spec} (all layers at scales 1-{plan.bridge}, then "
              f"{len(flexible)} of {cfg.depth}: {','.join(map(str, flexible))}{weights})")
    p = chosen.parts
    runtime = f" + runtime {fmt_bytes(p['runtime'])}" if p["runtime"] else ""
    print(f"  predicted KV cache: {fmt_bytes(chosen.kv_bytes)}")
    print(f"  predicted memory:   {fmt_bytes(chosen.memory_bytes)} = weights "
          f"{fmt_bytes(p['weights'])} + max(KV + transformer activations "
          f"{fmt_bytes(p['transformer_activations'])}, decoder activations "
          f"{fmt_bytes(p['decoder_activations'])}){runtime}")
    if chosen.latency_s is not None:
        print(f"  predicted latency:  {chosen.latency_s:.2f} s per batch (profile "
              f"{args.profile}: batch {profile['settings']['batch']}, scaled linearly)")
    if rejected:
        print(f"  the next deeper plan, {rejected[-1].spec}, needs "
              f"{', '.join(rejected[-1].over(budget))}")
    model = args.model or "MODEL"
    print(f"\nconfirm with: variant bench --model {model} --plans {chosen.spec} --batch "
          f"{workload.batch} {' '.join(workload.sampling.cli_args())} --device {workload.device}")
