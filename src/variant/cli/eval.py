"""`variant eval`: sample class-balanced sets for several depth plans and score them.

    variant eval --model random:tiny --plans full d2 --num-per-class 5 --out runs/eval
    torchrun --nproc-per-node 8 -m variant eval --model var_d30.pth --plans full d16 d8 \\
        --metric inception --reference VIRTUAL_imagenet256_labeled.npz --out runs/d30

Ranks come from RANK / WORLD_SIZE (torchrun) or --rank / --world-size; each writes its share and
rank 0 scores the plans once all images exist. Rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
import warnings

import torch

from ..eval.evaluate import evaluate_plans, format_table
from ..eval.fid_is import too_few_samples
from ..eval.quality import build_metric, save_reference_statistics
from ..eval.sample_folder import SamplingSpec
from ..sampling.plan import default_plan_specs
from . import checks
from .common import (
    add_model_args,
    add_plan_args,
    add_sampling_args,
    load_from_args,
    resolve_configuration,
    sampling_from_args,
)
from .fits import check_fits_memory

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="FID / IS / precision / recall of depth plans",
        description="Sample N images per class for each depth plan (deterministic per-chunk "
                    "seeds, sharded over ranks, resumable), save PNG folders and ADM .npz files, "
                    "and score them against a reference: --metric builtin (Shapes-10 metric "
                    "network, offline, CPU) or --metric inception (torch-fidelity InceptionV3; "
                    "the FID/IS of the papers).")
    add_model_args(p)
    add_plan_args(p, multiple=True)
    g = p.add_argument_group("sampling")
    g.add_argument("--num-per-class", type=checks.count, default=50,
                   help="images per class (default 50: the official 50 000 for ImageNet)")
    g.add_argument("--num-classes", type=checks.count, default=None,
                   help="evaluate classes 0..n-1 only (default: all of the model's classes)")
    g.add_argument("--batch-size", type=checks.count, default=50,
                   help="images per sampling call, cut per class; part of what fixes each "
                        "image, so keep it when comparing or resuming (default 50)")
    add_sampling_args(g)
    g.add_argument("--out", type=checks.output_dir, required=True,
                   help="output folder: one PNG folder + .npz per plan, "
                                                "eval.json")
    m = p.add_argument_group("metric")
    m.add_argument("--metric", choices=("builtin", "inception", "none"), default="builtin",
                   help="builtin: Shapes-10 metric network (default); inception: torch-fidelity "
                        "InceptionV3 (pip install 'variant[eval]'); none: sample only")
    m.add_argument("--reference", default=None,
                   help="ADM .npz batch (arr_0), image folder, or statistics .npz (mu, sigma); "
                        "default for builtin: rendered Shapes-10 images")
    m.add_argument("--reference-count", type=checks.count, default=5000,
                   help="rendered reference images for the builtin reference (default 5000)")
    m.add_argument("--inception-weights", default=None,
                   help="path of weights-inception-2015-12-05-6726825d.pth (default: torch hub "
                        "cache, else download)")
    m.add_argument("--metric-net", default=None,
                   help="folder of a metric network from `variant train-metric` (default: the "
                        "shipped one)")
    m.add_argument("--save-reference-stats", type=checks.output_file(".npz"), default=None,
                   help="also write the reference's mu/sigma to this .npz")
    m.add_argument("--metric-batch-size", type=checks.count, default=100, help="feature batch size")
    d = p.add_argument_group("sharding")
    d.add_argument("--rank", type=checks.natural, default=None,
                   help="this process's rank (default $RANK)")
    d.add_argument("--world-size", type=checks.count, default=None,
                   help="number of ranks (default $WORLD_SIZE)")
    d.add_argument("--wait-timeout", type=checks.float_in(0), default=0.0,
                   help="without a process group: seconds rank 0 waits for the other ranks' "
                        "images (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _ranks(args) -> tuple[int, int, object]:
    """(rank, world_size, barrier or None); joins the torchrun process group if there is one."""
    rank = args.rank if args.rank is not None else int(os.environ.get("RANK", 0))
    world = args.world_size if args.world_size is not None else int(
        os.environ.get("WORLD_SIZE", 1))
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world size, got rank {rank}, world size {world}.")
    dist = torch.distributed
    if world > 1 and "MASTER_ADDR" in os.environ and dist.is_available():
        if not dist.is_initialized():
            backend = "nccl" if args.device.startswith("cuda") else "gloo"
            dist.init_process_group(backend, timeout=datetime.timedelta(hours=6))
        return rank, world, dist.barrier
    return rank, world, None


def _device_for_rank(device: str) -> str:
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def run(args: argparse.Namespace) -> int:
    rank, world, barrier = _ranks(args)
    args.device = _device_for_rank(args.device)
    var, vae = load_from_args(args, args.plans or ())
    # Everything that can fail is checked before the first image is sampled.
    specs = args.plans or default_plan_specs(var.depth)
    sampling = sampling_from_args(args, seed=None)
    plans = [resolve_configuration(spec, var.config, args.bridge, sampling) for spec in specs]
    for config in plans:  # one weight precision per run: the model was loaded at it
        config.levers.check_model(var)
    num_classes = args.num_classes or var.num_classes
    if num_classes > var.num_classes:
        raise ValueError(f"--num-classes {num_classes} exceeds the model's {var.num_classes}.")
    spec = SamplingSpec(num_per_class=args.num_per_class, num_classes=num_classes,
                        batch_size=args.batch_size, seed=args.seed,
                        settings=sampling)
    for config in plans:  # calls are cut per class: at most min(batch, images per class)
        check_fits_memory(var, vae, config.plan, config.settings,
                          min(args.batch_size, args.num_per_class), args.device, "--batch-size")
    metric = None
    if rank == 0 and args.metric != "none":
        metric = build_metric(
            args.metric, args.reference, image_size=vae.config.image_size,
            num_classes=num_classes, device=args.device,
            inception_weights=args.inception_weights, metric_net=args.metric_net,
            reference_count=args.reference_count, batch_size=args.metric_batch_size,
            cache_dir=args.out)
        if args.save_reference_stats:
            save_reference_statistics(metric.reference, args.save_reference_stats, metric.name)
        few = too_few_samples(spec.num_images, metric.extractor.feature_dim)
        if few:
            log.warning(few)
    settings = {"plans": specs, "bridge": args.bridge, "metric": args.metric,
                "reference": args.reference, "world_size": world}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the notes are printed below, once
        rows = evaluate_plans(var, vae, plans, args.out, spec, metric=metric, model=args.model,
                              rank=rank, world_size=world, barrier=barrier,
                              wait_timeout=args.wait_timeout,
                              progress=not args.no_progress and rank == 0, settings=settings)
    if barrier is not None:
        torch.distributed.destroy_process_group()
    if rows is None:
        return 0
    notes = dict.fromkeys(n for r in rows for n in r.get("warnings", ()))
    for note in notes:  # the sample-count warning was logged before sampling; now with the table
        print(f"warning: {note}", file=sys.stderr)
    print(f"metric: {args.metric}"
          + (f" ({metric.reference.source})" if metric is not None else ""))
    print(format_table(rows))
    print(f"results: {os.path.join(args.out, 'eval.json')}")
    return 0
