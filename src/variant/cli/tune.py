"""`variant tune`: quality and cost of a grid of configurations, and their front."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from ..eval.quality import build_metric
from ..front import format_front, load_front
from ..front.plot import write_front_plot
from ..front.tune import PART_HINT, Tuner, TuneSettings, default_grid
from ..jsonfile import read_json
from ..pretrained import read_model_config
from ..sampling.configuration import resolve_configurations
from ..sampling.plan import default_bridge, default_subnet_depths
from . import checks
from .common import add_model_args, add_sampling_args, load_from_args, sampling_from_args
from .tune_search import add_search_args, check_search_args, prepare_search

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "tune", help="measured quality/cost front of plans and levers",
        description="Evaluate a grid of configurations (depth plans, each inference lever "
                    "alone, promising combinations, or --specs) for quality (several seeds, "
                    "mean and 95% interval) and cost (measured time, KV, memory, FLOPs); write "
                    "front.json and front.png. Rerunning with the same --out resumes.")
    add_model_args(p)
    p.add_argument("--specs", nargs="+", default=None,
                   help="configurations (plan specs with levers, e.g. full d4 "
                        "d4+cfgstop4+prune0.5@4); default: the grid of `variant tune "
                        "--show-grid`")
    p.add_argument("--extra", nargs="+", default=(),
                   help="configurations added to the default grid")
    p.add_argument("--subnets", type=checks.count, nargs="+", default=None,
                   help="subnet depths of the default grid (default: the model's trained ones, "
                        "else the paper's that fit)")
    p.add_argument("--bridge", type=checks.natural, default=None,
                   help="bridge zone of 'dN' specs (default: the model's trained bridge)")
    p.add_argument("--show-grid", action="store_true", help="print the grid and exit")
    q = p.add_argument_group("quality")
    q.add_argument("--seeds", type=checks.seed, nargs="+", default=[0, 1, 2],
                   help="sampling seeds, one image set each (default 0 1 2)")
    q.add_argument("--num-per-class", type=checks.count, default=20,
                   help="images per class and seed")
    q.add_argument("--num-classes", type=checks.count, default=None,
                   help="classes 0..n-1 (default: all of the model's)")
    q.add_argument("--batch-size", type=checks.count, default=50, help="images per sampling call")
    q.add_argument("--metric", choices=("builtin", "inception"), default="builtin",
                   help="builtin: Shapes-10 metric network (built-in data); inception: FID/IS "
                        "against --reference (pip install 'variant[eval]')")
    q.add_argument("--reference", default=None,
                   help="reference .npz or image folder (default for builtin: rendered images)")
    q.add_argument("--reference-count", type=checks.count, default=5000,
                   help="rendered reference images of the builtin reference")
    q.add_argument("--inception-weights", default=None, help="InceptionV3 weights path")
    add_sampling_args(q)
    c = p.add_argument_group("cost")
    c.add_argument("--bench-batch", type=checks.count, default=8, help="images per timed call")
    c.add_argument("--repeats", type=checks.count, default=3, help="timed runs per configuration")
    c.add_argument("--warmup", type=checks.natural, default=1,
                   help="untimed runs per configuration")
    c.add_argument("--threads", type=checks.count, default=None,
                   help="CPU threads for the timed runs")
    add_search_args(p)
    p.add_argument("--out", type=checks.output_dir, required=True,
                   help="output folder (front.json, front.png, parts)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def subnet_depths(args, var, meta: dict) -> list[int]:
    """--subnets, else the model's trained subnet depths, else the paper's that fit."""
    return args.subnets or meta.get("subnet_depths") or default_subnet_depths(var.depth)


def grid_specs(args, var, meta: dict) -> list[str]:
    if args.specs:
        return list(args.specs)
    return default_grid(var.depth, var.num_scales, subnet_depths(args, var, meta)) + list(
        args.extra)


def earlier_front(out: str, seeds) -> dict | None:
    """The front a finished run left in `out` (checked before any work), or None; one over
    seeds this run lacks is refused (its qualities would be re-averaged over fewer images)."""
    if (Path(out) / "tune.json").is_file():  # the settings record, compared after loading
        read_json(Path(out) / "tune.json", "tune settings", hint=PART_HINT)
    path = Path(out) / "front.json"
    if not path.is_file():
        return None
    front = load_front(path)
    old_seeds = front["meta"]["seeds"]
    lacking = [s for s in old_seeds if s not in seeds]
    if lacking:
        raise ValueError(
            f"{path} holds a front measured over seeds {old_seeds}; --seeds "
            f"{' '.join(map(str, seeds))} lacks {' '.join(map(str, lacking))}, so the rerun "
            f"would replace it with one over fewer images. Pass --seeds "
            f"{' '.join(map(str, sorted(set(old_seeds) | set(seeds))))}, or another --out.")
    return front


def kept_specs(front: dict | None, configs) -> list[str]:
    """The configurations of an earlier front that this grid lacks: a rerun adds them back,
    so a front is never shrunk by a smaller grid."""
    names = {c.name for c in configs}
    kept = [r["spec"] for r in (front or {"rows": []})["rows"] if r["spec"] not in names]
    if kept:
        print(f"note: the front in --out also holds {', '.join(kept)}; kept in the front (their "
              "finished parts are reused).", flush=True)
    return kept


def run(args: argparse.Namespace) -> int:
    check_search_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    earlier = earlier_front(args.out, args.seeds)
    meta = read_model_config(args.model, revision=args.revision)[2]
    var, vae = load_from_args(args)
    bridge = args.bridge if args.bridge is not None else meta.get("bridge")
    if args.bridge is None and bridge == default_bridge(var.num_scales):
        bridge = None  # bare 'dN' means the same either way; 'd2@bridge3' keeps its own bridge
    sampling = sampling_from_args(args, seed=None)
    search = None if args.search is None else prepare_search(
        args, var, subnet_depths(args, var, meta), bridge, sampling)
    if search:  # checked before any work: the family fits the model, the budget its plans
        search.check_resume(Path(args.out))
        configs = [c.config for c in search.stage2([])]
    else:
        configs = resolve_configurations(grid_specs(args, var, meta), var.depth,
                                         var.patch_nums, sampling, bridge)
        configs += resolve_configurations(kept_specs(earlier, configs), var.depth,
                                          var.patch_nums, sampling, bridge)
    if args.show_grid:
        print(search.describe() if search else "\n".join(c.name for c in configs))
        return 0
    num_classes = args.num_classes or var.num_classes
    if num_classes > var.num_classes:
        raise ValueError(f"--num-classes {num_classes} exceeds the model's {var.num_classes}.")
    settings = TuneSettings(seeds=tuple(args.seeds), num_per_class=args.num_per_class,
                            num_classes=num_classes, batch_size=args.batch_size,
                            sampling=sampling, bench_batch=args.bench_batch,
                            warmup=args.warmup, repeats=args.repeats, threads=args.threads)
    if search:
        search.stage1_settings(settings)  # enough stage-1 images, checked before any work
    metric = build_metric(args.metric, args.reference, image_size=vae.config.image_size,
                          num_classes=num_classes, device=args.device,
                          inception_weights=args.inception_weights,
                          reference_count=args.reference_count, cache_dir=args.out)
    model_args = ["--seed", str(args.seed)]
    for flag, value in (("--vae", args.vae), ("--revision", args.revision)):
        if value is not None:
            model_args += [flag, value]
    if search:
        print(search.describe(), flush=True)
    print(f"tuning {len(configs)} configurations of {args.model} ({len(args.seeds)} seeds x "
          f"{args.num_per_class * num_classes} images each, {args.repeats} timed runs): "
          + ", ".join(c.name for c in configs) + (" and the survivors" if search else ""),
          flush=True)

    def tuner(configs, out, settings):  # a search's configurations name their bridge
        return Tuner(var, vae, configs, out, settings, metric, model=args.model,
                     model_args=model_args, device=args.device,
                     bridge=None if search else bridge, progress=not args.no_progress)

    front = search.run(tuner, settings, args.out) if search else tuner(
        configs, args.out, settings).run()
    print(format_front(front))
    plot = write_front_plot(front, f"{args.out}/front.png")
    print(f"front: {args.out}/front.json" + (f", {plot}" if plot else ""))
    return 0
