"""`variant plan`: layers per scale and what each plan costs (token-layers, FLOPs, KV bytes)."""

from __future__ import annotations

import argparse
import json

from ..config import PATCH_NUMS_256, PATCH_NUMS_512, VARConfig
from ..models.cost import CostModel
from ..models.plan import (
    DepthPlan,
    default_subnet_depths,
    equidistant_layers,
    paper_family,
    resolve_bridge,
)
from ..pretrained import read_var_config
from ..sampling.kv_cache import LeanKVCache
from ..sampling.settings import guided_rows
from ..units import DTYPES, fmt_bytes
from .budget import add_budget_args, budget_requested, run_budget


def register(sub) -> None:
    p = sub.add_parser(
        "plan", help="show depth plans and their cost",
        description="Print, for a model depth, subnet depths d, bridge N and scales K, the "
                    "layers each scale runs, the token-layers, FLOPs and peak KV-cache bytes of "
                    "each plan, with ratios vs the full network and vs the official VAR sampler.")
    p.add_argument("--model", default=None,
                   help="read depth, width and scales from a model (directory, official .pth, Hub "
                        "id or 'builtin') instead of --depth/--resolution")
    p.add_argument("--depth", type=int, default=30, help="total depth (default 30, VAR-d30)")
    p.add_argument("--width", type=int, default=None, help="model width (default 64 x depth)")
    p.add_argument("--resolution", type=int, choices=(256, 512), default=256,
                   help="official scale schedule (256: 10 scales, L=680; 512: L=2240)")
    p.add_argument("--subnets", type=int, nargs="+", default=None,
                   help="subnet depths (default: the paper's 16 8 4 2, those below the depth)")
    p.add_argument("--bridge", type=int, default=None,
                   help="scales in the bridge zone (default: 6 of 10, the paper's N)")
    p.add_argument("--batch", type=int, default=1, help="images per batch for KV bytes")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16",
                   help="compute dtype of the cache (default bf16)")
    p.add_argument("--no-cfg", action="store_true",
                   help="no classifier-free guidance (the batch is not doubled)")
    p.add_argument("--layers", action="store_true", help="print every scale's layer set")
    p.add_argument("--json", dest="json_out", default=None, help="also write the rows as JSON")
    add_budget_args(p)
    p.set_defaults(func=run)


def _config(args) -> VARConfig:
    if args.model is None:
        pn = PATCH_NUMS_256 if args.resolution == 256 else PATCH_NUMS_512
        return VARConfig(depth=args.depth, embed_dim=args.width or 0, patch_nums=pn)
    return read_var_config(args.model)


def plan_rows(cfg: VARConfig, plans: list[DepthPlan], batch: int, dtype: str,
              use_cfg: bool) -> list[dict]:
    """One row of accounting per plan, with ratios vs the first (full) plan and the official."""
    cost = CostModel(cfg, dtype, guided_rows(batch, use_cfg))
    official = cost.official_kv_bytes()
    full_flops, full_tl = cost.flops(plans[0]), cost.token_layers(plans[0])
    rows = []
    for plan in plans:
        flops, kv_tl, kv_bytes = (cost.flops(plan), cost.kv_peak_token_layers(plan),
                                  cost.kv_peak_bytes(plan))
        # the cache itself, run on the meta device: its measured peak, to set beside the bound
        measured = LeanKVCache.dry_run(plan, cfg.patch_nums, cfg.depth).token_layers_peak
        rows.append({
            "plan": plan.name, "bridge": plan.bridge, "token_layers": cost.token_layers(plan),
            "token_layers_vs_full": cost.token_layers(plan) / full_tl,
            "gflops_per_image": flops / batch / 1e9, "speedup_bound": full_flops / flops,
            "kv_peak_token_layers": kv_tl, "kv_peak_bytes": kv_bytes,
            "kv_measured_token_layers": int(measured),
            "kv_vs_official_tokens": kv_tl / cost.official_kv_token_layers(),
            "kv_vs_official_bytes": kv_bytes / official,
            "official_kv_bytes": official,
        })
    return rows


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
    if budget_requested(args):
        return run_budget(args, _config)
    cfg = _config(args)
    K, depth = cfg.num_scales, cfg.depth
    bridge = resolve_bridge(args.bridge, K)
    subnets = args.subnets or default_subnet_depths(depth)
    plans = paper_family(depth, K, subnets, bridge)
    rows = plan_rows(cfg, plans, args.batch, args.dtype, not args.no_cfg)
    print(f"VAR depth {depth}, width {cfg.width}, {K} scales {cfg.patch_nums} (L={cfg.seq_len}), "
          f"bridge N={bridge}; batch {args.batch} x{1 if args.no_cfg else 2} rows "
          f"({'no CFG' if args.no_cfg else 'CFG doubles the batch'}), KV in {args.dtype}\n")
    print("| plan | token-layers | vs full | GFLOPs/img | speed-up bound | peak KV | "
          "KV vs official (tokens) | KV vs official (bytes) | cache measured |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        measured = r["kv_measured_token_layers"]
        check = "= bound" if measured == r["kv_peak_token_layers"] else f"{measured} token-layers"
        print(f"| {r['plan']} | {r['token_layers']} | {r['token_layers_vs_full']:.3f} | "
              f"{r['gflops_per_image']:.1f} | {r['speedup_bound']:.2f}x | "
              f"{fmt_bytes(r['kv_peak_bytes'])} | {r['kv_vs_official_tokens']:.3f} | "
              f"{r['kv_vs_official_bytes']:.3f} | {check} |")
    print(f"\nofficial sampler KV cache: {fmt_bytes(rows[0]['official_kv_bytes'])} "
          f"({depth} layers x {cfg.seq_len} tokens, keys fp32 under 16-bit autocast)")
    for note in _nesting_notes(depth, subnets):
        print(f"note: equidistant sets are not nested: {note}")
    if args.layers:
        for plan in plans:
            _print_layers(plan, cfg.patch_nums)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"config": {"depth": depth, "width": cfg.width, "patch_nums": cfg.patch_nums,
                                  "bridge": bridge, "batch": args.batch, "dtype": args.dtype,
                                  "cfg": not args.no_cfg}, "rows": rows}, f, indent=2)
    return 0
