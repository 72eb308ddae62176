"""`variant plan`: layers per scale and what each plan costs (token-layers, FLOPs, KV bytes)."""

from __future__ import annotations

import argparse
import shlex

import torch

from ..config import PATCH_NUMS_256, PATCH_NUMS_512, VARConfig
from ..efficiency.bench import save_json
from ..efficiency.choice import choose
from ..front import (
    check_front_device,
    check_front_model,
    check_front_weights,
    front_options,
    front_settings,
    load_front,
)
from ..models.cost import CostModel
from ..pretrained import BUILTIN, load_model, read_var_config
from ..sampling.configuration import EXAMPLE, Configuration, resolve_configurations
from ..sampling.lever import LEVERS
from ..sampling.plan import (
    DepthPlan,
    default_subnet_depths,
    equidistant_layers,
    paper_family,
    resolve_bridge,
)
from ..sampling.settings import SamplingConfig, guided_rows
from ..units import DTYPES, fmt_bytes
from . import checks
from .budget import add_budget_args, budget_from_args, budget_requested, run_budget
from .common import add_lever_args, given_levers, levers_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "plan", help="show depth plans and their cost",
        description="Print, for a model depth, subnet depths d, bridge N and scales K, the "
                    "layers each scale runs, the token-layers, FLOPs and peak KV-cache bytes of "
                    "each plan, with ratios vs the full network and vs the official VAR sampler.")
    p.add_argument("--model", default=None,
                   help="read depth, width and scales from a model (directory, official .pth, Hub "
                        "id or 'builtin') instead of --depth/--resolution (default: without "
                        "those either, the built-in model that `variant sample` runs)")
    p.add_argument("--depth", type=checks.count, default=None,
                   help="total depth of an official-shaped model (default 30, VAR-d30)")
    p.add_argument("--width", type=checks.count, default=None,
                   help="model width (default 64 x depth)")
    p.add_argument("--resolution", type=int, choices=(256, 512), default=None,
                   help="official scale schedule (256: 10 scales, L=680; 512: L=2240)")
    p.add_argument("--subnets", type=checks.count, nargs="+", default=None,
                   help="subnet depths (default: the paper's 16 8 4 2, those below the depth)")
    p.add_argument("--plans", nargs="+", default=None,
                   help="configurations to cost instead of full + --subnets: plan specs, levers "
                        f"allowed, e.g. --plans full d8 {EXAMPLE} (the "
                        "first is the reference of the ratios)")
    p.add_argument("--bridge", type=checks.natural, default=None,
                   help="scales in the bridge zone (default: 6 of 10, the paper's N)")
    p.add_argument("--batch", type=checks.count, default=1, help="images per batch for KV bytes")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help="compute dtype of the cache (default bf16; for the default built-in "
                        f"model {SamplingConfig().dtype}, as `variant sample` runs it)")
    p.add_argument("--no-cfg", action="store_true",
                   help="no classifier-free guidance (the batch is not doubled)")
    p.add_argument("--layers", action="store_true", help="print every scale's layer set")
    add_lever_args(p)
    p.add_argument("--json", dest="json_out", type=checks.output_file(".json"), default=None,
                   help="also write the rows as JSON")
    add_budget_args(p)
    f = p.add_argument_group(
        "measured front", "with --front, the budgets pick the best-quality configuration that "
                          "`variant tune` measured (latency and KV scaled from its batch to "
                          "--batch)")
    f.add_argument("--front", type=checks.input_file, default=None,
                   help="front.json written by `variant tune`")
    f.add_argument("--allow-other-model", action="store_true",
                   help="with --model: use a front measured on other weights")
    f.add_argument("--allow-other-device", action="store_true",
                   help="use latencies measured on another device or thread count")
    f.add_argument("--threads", type=checks.count, default=None,
                   help="CPU threads the model will run with (default: this process's)")
    p.set_defaults(func=run)


def _model_or_shape(args) -> None:
    """--model, or --depth/--width/--resolution for an official shape; neither: the built-in
    model at the dtype `variant sample` runs it with (what `variant sample` alone samples)."""
    shape = [flag for flag, value in (("--depth", args.depth), ("--width", args.width),
                                      ("--resolution", args.resolution)) if value is not None]
    if args.model is not None and shape:
        raise ValueError(f"--model reads the depth, width and scales from the model; drop "
                         f"{', '.join(shape)}.")
    if args.model is None and not shape:
        args.model = BUILTIN
        args.dtype = args.dtype or SamplingConfig().dtype
    args.depth, args.resolution = args.depth or 30, args.resolution or 256
    args.dtype = args.dtype or "bf16"


def _config(args) -> VARConfig:
    if args.model is None:
        pn = PATCH_NUMS_256 if args.resolution == 256 else PATCH_NUMS_512
        return VARConfig(depth=args.depth, embed_dim=args.width or 0, patch_nums=pn)
    return read_var_config(args.model)


def plan_rows(cfg: VARConfig, configs: list[Configuration], batch: int, dtype: str,
              use_cfg: bool) -> list[dict]:
    """One row of accounting per configuration, with ratios vs the first and the official."""
    cost = CostModel(cfg, dtype, guided_rows(batch, use_cfg))
    official = cost.official_kv_bytes()
    ref = configs[0]
    full_flops = cost.flops(ref.plan, levers=ref.levers)
    full_tl = cost.token_layers(ref.plan, ref.levers)
    rows = []
    for c in configs:
        plan, levers = c.plan, c.levers
        flops, kv_bytes = cost.flops(plan, levers=levers), cost.kv_peak_bytes(plan, levers)
        tl = cost.token_layers(plan, levers)
        row = {"plan": c.name, "bridge": plan.bridge, "token_layers": tl,
               "token_layers_vs_full": tl / full_tl, "gflops_per_image": flops / batch / 1e9,
               "speedup_bound": full_flops / flops, "kv_peak_bytes": kv_bytes,
               "kv_vs_official_bytes": kv_bytes / official, "official_kv_bytes": official,
               "kv_peak_token_layers": None, "kv_measured_token_layers": None,
               "kv_vs_official_tokens": None}
        if levers.is_neutral:
            # kv_bytes is the cache itself run on the meta device; in token-layers it sits
            # beside the lean bound
            measured = kv_bytes // cost.kv_bytes_per_token_layer()
            row["kv_peak_token_layers"] = cost.kv_peak_token_layers(plan)
            row["kv_measured_token_layers"] = int(measured)
            row["kv_vs_official_tokens"] = (row["kv_peak_token_layers"]
                                            / cost.official_kv_token_layers())
        rows.append(row)
    return rows


def run_front(args: argparse.Namespace) -> int:
    """`variant plan --front front.json --max-...`: the best measured configuration."""
    _refuse_unused_with_front(args)
    front = load_front(args.front)
    note = _check_front_against_model(front, args)
    if args.max_latency is not None:
        check_front_device(front, args.device, args.threads or torch.get_num_threads(),
                           args.allow_other_device)
    choice = choose(budget_from_args(args), front_options(front, args.batch))
    meta = front["meta"]
    key = meta["metric_key"]
    print(f"front of {meta['model']} ({len(front['rows'])} configurations, {meta['metric']} "
          f"{key} over seeds {meta['seeds']}; timed on {meta['device_name']}, "
          f"{meta['threads']} threads, batch {meta['bench_batch']}, scaled to --batch "
          f"{args.batch})")
    for label, option in (("best within budget", choice.chosen),
                          ("next cheaper", choice.cheaper),
                          ("next better (over budget)", choice.better)):
        if option is None:
            print(f"{label}: none")
            continue
        row, costs = option.source, option.costs
        q, c = row["quality"][key], row["cost"]
        band = "" if q["low"] is None else f" (95% {q['low']:.2f}–{q['high']:.2f})"
        mem = ("" if c["peak_memory_bytes"] is None
               else f", peak memory {fmt_bytes(c['peak_memory_bytes'])} at batch "
                    f"{meta['bench_batch']}")
        print(f"{label}: {row['spec']} | {key} {q['mean']:.2f}{band} | "
              f"{_ms(costs['latency'])} per batch | KV {fmt_bytes(costs['kv'])}{mem}")
    if note:
        print(note)
    # every setting the numbers above hold for: model, configuration, sampling settings, batch
    print("\n" + shlex.join(["variant", "sample", "--model", args.model or meta["model"],
                             "--plan", choice.chosen.spec, *front_settings(front).cli_args(),
                             "--num", str(args.batch), "--batch-size", str(args.batch),
                             "--device", args.device]))
    return 0


# flags of the plan table and the budget planner that a front's measurements do not take
_NOT_WITH_FRONT = (("--depth", "depth"), ("--width", "width"), ("--resolution", "resolution"),
                   ("--subnets", "subnets"), ("--bridge", "bridge"), ("--dtype", "dtype"),
                   ("--no-cfg", "no_cfg"), ("--layers", "layers"), ("--json", "json_out"),
                   ("--profile", "profile"))


def _refuse_unused_with_front(args: argparse.Namespace) -> None:
    given = [flag for flag, dest in _NOT_WITH_FRONT if getattr(args, dest) not in (None, False)]
    if given:
        raise ValueError(f"--front picks from what `variant tune` measured, at the model, dtype "
                         f"and guidance of the front; {', '.join(given)} do not apply: drop "
                         "them (or give a budget without --front).")
    if args.allow_other_model and args.model is None:
        raise ValueError("--allow-other-model applies to the model given by --model; give "
                         "--model too.")


def _check_front_against_model(front: dict, args: argparse.Namespace) -> str | None:
    """With --model: the front must be of that model's architecture and weights; a note when
    it cannot be told (or --allow-other-model). Without: the front's own model is used."""
    if args.model is None:
        return None
    var, vae = load_model(args.model, device="cpu")
    check_front_model(front, var)
    return check_front_weights(front, var, vae, args.allow_other_model)


def _ms(seconds: float | None) -> str:
    return "latency not measured" if seconds is None else f"{seconds * 1000:.0f} ms"


def _print_layers(plan: DepthPlan, pn) -> None:
    print(f"\nlayers per scale, plan {plan.name}:")
    for k, layers in enumerate(plan.layer_sets):
        zone = "bridge" if k < plan.bridge else "flexible"
        print(f"  scale {k + 1:2d} ({pn[k]:2d}x{pn[k]:<2d} {zone:8s}) {len(layers):2d} layers: "
              f"{','.join(map(str, layers))}")


def _nesting_notes(depth: int, subnets: list[int]) -> list[str]:
    notes = []
    for small in subnets:
        for large in subnets:
            if small < large:
                a, b = set(equidistant_layers(depth, small)), set(equidistant_layers(depth, large))
                if not a <= b:
                    notes.append(f"I_{small} is not a subset of I_{large}: layers "
                                 f"{sorted(a - b)} of the d{small} subnet are not in d{large}")
    return notes


def run(args: argparse.Namespace) -> int:
    if args.batch <= 0:
        raise ValueError(f"--batch must be positive, got {args.batch}.")
    levers = given_levers(args)
    if args.front is not None:
        if args.plans or levers:
            raise ValueError("--front picks among the configurations `variant tune` measured; "
                             f"drop --plans and the lever flags ({', '.join(levers) or 'none'}).")
        return run_front(args)
    _model_or_shape(args)
    if budget_requested(args):
        if args.plans or set(levers) - {LEVERS["weights"].flag}:  # it predicts precisions
            raise ValueError("the budget planner chooses depth plans by predicted cost; for "
                             "configurations with levers measure them with `variant tune` and "
                             "choose with `variant plan --front front.json --max-...`.")
        return run_budget(args, _config)
    cfg = _config(args)
    K, depth = cfg.num_scales, cfg.depth
    bridge = resolve_bridge(args.bridge, K)
    subnets = args.subnets or default_subnet_depths(depth)
    specs = args.plans or [p.name for p in paper_family(depth, K, subnets, bridge)]
    settings = SamplingConfig(cfg=0 if args.no_cfg else SamplingConfig().cfg, dtype=args.dtype,
                              **levers_from_args(args))
    configs = resolve_configurations(specs, depth, cfg.patch_nums, settings, bridge)
    plans = [c.plan for c in configs]
    rows = plan_rows(cfg, configs, args.batch, args.dtype, not args.no_cfg)
    print(("" if args.model is None else f"model {args.model}: ")
          + f"VAR depth {depth}, width {cfg.width}, {K} scales {cfg.patch_nums} (L={cfg.seq_len}), "
          f"bridge N={bridge}; batch {args.batch} x{1 if args.no_cfg else 2} rows "
          f"({'no CFG' if args.no_cfg else 'CFG doubles the batch'}), KV in {args.dtype}\n")
    print(f"| plan | token-layers | vs {rows[0]['plan']} | GFLOPs/img | speed-up bound | peak KV | "
          "KV vs official (bytes) | cache vs lean bound |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        measured = r["kv_measured_token_layers"]
        if measured is None:
            check = "levers: exact prediction"
        elif measured == r["kv_peak_token_layers"]:
            check = "= bound"
        else:
            check = f"{measured} vs {r['kv_peak_token_layers']} token-layers"
        print(f"| {r['plan']} | {r['token_layers']:g} | {r['token_layers_vs_full']:.3f} | "
              f"{r['gflops_per_image']:.1f} | {r['speedup_bound']:.2f}x | "
              f"{fmt_bytes(r['kv_peak_bytes'])} | {r['kv_vs_official_bytes']:.3f} | {check} |")
    print(f"\nofficial sampler KV cache: {fmt_bytes(rows[0]['official_kv_bytes'])} "
          f"({depth} layers x {cfg.seq_len} tokens, keys fp32 under 16-bit autocast)")
    for note in _nesting_notes(depth, subnets):
        print(f"note: equidistant sets are not nested: {note}")
    if args.layers:
        for plan in plans:
            _print_layers(plan, cfg.patch_nums)
    if args.json_out:
        save_json(args.json_out, {"config": {  # atomic: a failure leaves no half-written file
            "depth": depth, "width": cfg.width, "patch_nums": cfg.patch_nums, "bridge": bridge,
            "batch": args.batch, "dtype": args.dtype, "cfg": not args.no_cfg}, "rows": rows})
    return 0
