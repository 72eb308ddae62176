"""`variant analyze`: the paper's scale-depth asymmetry study and its Pareto figure.

    variant analyze asymmetry --model random:tiny --ranges 1 2 3 --num-per-class 2 --out runs/asym
    variant analyze asymmetry --model var_d30.pth --subnet 50% --metric inception \\
        --reference VIRTUAL_imagenet256_labeled.npz --out runs/asym   # ranges 1-3 4-6 7-10
    variant analyze pareto runs/p0.1/eval.json runs/p1.0/eval.json runs/prog/eval.json \\
        --labels p=0.1 p=1.0 progressive --plot pareto.png
    variant analyze pareto --models runs/p0.1/model runs/prog/model --plans full d8 d4 \\
        --num-per-class 5 --out runs/pareto
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from pathlib import Path

import torch

from ..analysis.analyze import (
    asymmetry_plans,
    asymmetry_rows,
    default_ranges,
    format_asymmetry,
    format_pareto,
    load_eval_results,
    pareto_table,
    parse_ranges,
    parse_subnet,
    plot_asymmetry,
    plot_pareto,
)
from ..efficiency.bench import BenchSettings, profile_scales, save_json
from ..efficiency.budget import Workload, check_profile, load_profile
from ..eval.evaluate import evaluate_plans
from ..eval.quality import build_metric
from ..eval.sample_folder import SamplingSpec
from ..pretrained import is_generated_source
from ..sampling.plan import default_plan_specs
from ..sampling.settings import SamplingConfig
from .common import (
    add_model_args,
    add_plan_args,
    add_sampling_args,
    load_from_args,
    resolve_plan,
    sampling_from_args,
)

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("analyze", help="scale-depth asymmetry study and Pareto figure",
                       description="Analyses from the paper; see `variant analyze NAME --help`.")
    which = p.add_subparsers(dest="analysis", metavar="ANALYSIS")
    which.required = True
    a = which.add_parser(
        "asymmetry", help="subnet on one range of scales at a time",
        description="Run a subnet only at chosen ranges of scales (full network elsewhere), score "
                    "each plan, and report each range's FLOP and latency share.")
    add_model_args(a)
    a.add_argument("--ranges", nargs="+", default=None,
                   help="1-based inclusive scale ranges, e.g. 1-3 4-6 7-10 (default: the paper's "
                        "thirds, scaled to the model's number of scales)")
    a.add_argument("--subnet", default="50%",
                   help="subnet depth: d8 / 8, or a fraction of the depth: 50%% (default), 0.25")
    a.add_argument("--latency-profile", default=None,
                   help="use this `variant bench --profile` file instead of measuring one")
    _add_study_args(a, required_out=True)
    a.set_defaults(func=run_asymmetry)

    q = which.add_parser(
        "pareto", help="full vs subnet quality of several supernets",
        description="Plot each supernet's full-network metric against its subnet metrics, from "
                    "`variant eval` result files, or by evaluating --models first.")
    q.add_argument("results", nargs="*", help="eval.json files (or `variant eval --out` folders)")
    q.add_argument("--labels", nargs="+", default=None, help="one name per supernet")
    q.add_argument("--models", nargs="+", default=None,
                   help="model directories to evaluate first (with --plans, the metric and "
                        "sampling options below)")
    add_plan_args(q, multiple=True)
    q.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    q.add_argument("--seed", type=int, default=0, help="sampling seed")
    _add_study_args(q, required_out=False)
    q.set_defaults(func=run_pareto)


def _add_study_args(p, required_out: bool) -> None:
    g = p.add_argument_group("sampling and metric (as in `variant eval`)")
    g.add_argument("--num-per-class", type=int, default=5, help="images per class (default 5)")
    g.add_argument("--num-classes", type=int, default=None, help="classes 0..n-1 (default all)")
    g.add_argument("--batch-size", type=int, default=25, help="images per sampling call")
    add_sampling_args(g)
    g.add_argument("--metric", choices=("builtin", "inception", "none"), default="builtin",
                   help="quality metric (none: FLOP/latency shares only)")
    g.add_argument("--reference", default=None, help="reference batch / folder / statistics")
    g.add_argument("--reference-count", type=int, default=5000)
    g.add_argument("--inception-weights", default=None)
    g.add_argument("--metric-net", default=None)
    g.add_argument("--key", default="fid",
                   help="metric column to report and plot: fid (default), inception_score, "
                        "precision, recall, class_accuracy")
    g.add_argument("--out", required=required_out, default=None,
                   help="output folder (images per plan, results JSON, plot)")
    g.add_argument("--plot", default=None, help="PNG path (default: in --out)")
    g.add_argument("--json", dest="json_out", default=None, help="results JSON path")


def _spec(args, var):
    return SamplingSpec(num_per_class=args.num_per_class,
                        num_classes=args.num_classes or var.num_classes,
                        batch_size=args.batch_size, seed=args.seed,
                        settings=sampling_from_args(args, seed=None))


def _metric(args, vae, num_classes: int, cache_dir):
    if args.metric == "none":
        return None
    return build_metric(args.metric, args.reference, image_size=vae.config.image_size,
                        num_classes=num_classes, device=args.device,
                        inception_weights=args.inception_weights, metric_net=args.metric_net,
                        reference_count=args.reference_count, cache_dir=cache_dir)


def _evaluate(var, vae, plans, out, args, model: str) -> list[dict]:
    spec = _spec(args, var)
    metric = _metric(args, vae, spec.num_classes, out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # too-few-samples notes: see eval.json
        return evaluate_plans(var, vae, plans, out, spec, metric=metric, model=model)


def run_asymmetry(args: argparse.Namespace) -> int:
    var, vae = load_from_args(args)
    cfg = var.config
    ranges = (parse_ranges(args.ranges, cfg.num_scales) if args.ranges
              else default_ranges(cfg.num_scales))
    depth = parse_subnet(args.subnet, cfg.depth)
    out = Path(args.out)
    if args.latency_profile:
        profile = load_profile(args.latency_profile)
        check_profile(profile, cfg, Workload(sampling=SamplingConfig(dtype=args.dtype),
                                             device=args.device))
    else:
        settings = BenchSettings(batch=min(args.batch_size, 8),
                                 sampling=sampling_from_args(args))
        with torch.no_grad():
            profile = profile_scales(var, vae, settings)
    plans = asymmetry_plans(cfg, ranges, depth)
    eval_rows = _evaluate(var, vae, plans, out, args, args.model)
    rows = asymmetry_rows(cfg, ranges, depth, eval_rows, profile)
    print(f"scale-depth asymmetry: subnet d{depth} of {cfg.depth} layers on one range of "
          f"{cfg.num_scales} scales at a time; metric {args.metric}, "
          f"{_spec(args, var).num_images} images per plan")
    print(format_asymmetry(rows, args.key))
    print("FLOP share: of the full network's FLOPs, at those scales; latency share: of its "
          "measured transformer time (per-scale hooks); FLOP saving: of the plan vs full")
    json_path = args.json_out or os.path.join(args.out, "asymmetry.json")
    save_json(json_path, {"subnet_depth": depth, "ranges": ranges, "metric": args.metric,
                          "rows": rows, "latency_profile": profile})
    plot = plot_asymmetry(rows, args.plot or os.path.join(args.out, "asymmetry.png"), args.key)
    print(f"results: {json_path}" + (f"; plot: {plot}" if plot else ""))
    return 0


def _label(path: str, data: dict) -> str:
    model = data.get("settings", {}).get("model") or ""
    if model and not is_generated_source(model):
        return Path(model.rstrip("/")).name
    p = Path(path)
    return (p if p.is_dir() else p.parent).name or str(p)


def run_pareto(args: argparse.Namespace) -> int:
    results: dict[str, list[dict]] = {}
    sources = list(args.results)
    if args.models:
        if not args.out:
            raise ValueError("--models needs --out (a folder for each model's images).")
        sources += _evaluate_models(args)
    if not sources:
        raise ValueError("give eval.json files from `variant eval`, or --models to evaluate.")
    if args.labels and len(args.labels) != len(sources):
        raise ValueError(f"got {len(args.labels)} --labels for {len(sources)} supernets.")
    for i, source in enumerate(sources):
        data = load_eval_results(source)
        label = args.labels[i] if args.labels else _label(source, data)
        if label in results:
            label = f"{label} ({i + 1})"
        results[label] = data["rows"]
    table = pareto_table(results, args.key)
    print(format_pareto(table, args.key))
    if args.json_out:
        save_json(args.json_out, {"key": args.key, "table": table})
    plot_path = args.plot or (os.path.join(args.out, "pareto.png") if args.out else None)
    if plot_path and plot_pareto(table, plot_path, args.key) is not None:
        print(f"plot: {plot_path}")
    return 0


def _evaluate_models(args) -> list[str]:
    """Evaluate each model directory's plans into --out/<name>/; return the eval.json paths."""
    paths = []
    for i, model in enumerate(args.models):
        ns = argparse.Namespace(**{**vars(args), "model": model, "vae": None})
        var, vae = load_from_args(ns)
        specs = args.plans or default_plan_specs(var.depth)
        plans = [resolve_plan(s, var, args.bridge) for s in specs]
        out = Path(args.out) / f"{i:02d}-{Path(model.rstrip('/')).name}"
        _evaluate(var, vae, plans, out, ns, model)
        paths.append(str(out / "eval.json"))
    return paths
