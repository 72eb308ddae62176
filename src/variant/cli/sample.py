"""`variant sample`: generate images with a chosen depth plan and write a PNG grid."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_text_atomic
from ..eval.npz import write_npz
from ..images import image_name, make_grid, save_png, to_uint8
from ..models.cost import CostModel
from ..sampling.sampler import generate
from ..units import fmt_bytes
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
        "sample", help="generate images",
        description="Sample class-conditional images with the chosen depth plan; writes a PNG grid "
                    "(and optionally one PNG per image and an .npz).")
    add_model_args(p)
    add_plan_args(p)
    p.add_argument("--labels", type=checks.natural, nargs="+", default=None,
                   help="class id per image (default: --num images with random classes)")
    p.add_argument("--num", type=checks.count, default=16,
                   help="number of images when --labels is not given")
    add_sampling_args(p)
    p.add_argument("--batch-size", type=checks.count, default=16, help="images per forward pass")
    p.add_argument("--threads", type=checks.count, default=None,
                   help="torch CPU threads (default: torch's); CPU results can differ in the last "
                        "bits with the thread count, so commands that must repeat bytes set it")
    p.add_argument("--out", type=checks.output_file(".png"), default="samples.png",
                   help="grid PNG path (default samples.png)")
    p.add_argument("--nrow", type=checks.count, default=None, help="images per grid row")
    p.add_argument("--save-each", type=checks.output_dir, default=None,
                   help="folder for one PNG per image")
    p.add_argument("--npz", type=checks.output_file(".npz"), default=None,
                   help="also write an ADM-format .npz (arr_0 uint8 images, arr_1 labels)")
    p.add_argument("--json", dest="json_out", type=checks.output_file(".json"), default=None,
                   help="also write the run's measured and predicted costs and indices_sha256 "
                        "(sha256 over the token indices of all scales, int64, scale order)")
    p.set_defaults(func=run)


def check_writable(path: Path) -> None:
    """Fail before sampling if `path`'s folder cannot be created or written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".variant-write-test"):
            pass
    except OSError as err:
        raise PermissionError(f"cannot write to {path.parent} ({err.strerror}); choose another "
                              "--out location.") from err


def run(args: argparse.Namespace) -> int:
    num = len(args.labels) if args.labels else args.num  # both >= 1: checks.count
    out = Path(args.out)
    for target in filter(None, (out, args.npz and Path(args.npz),
                                args.json_out and Path(args.json_out),
                                args.save_each and Path(args.save_each) / "x.png")):
        check_writable(target)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}.")
        torch.set_num_threads(args.threads)
    var, vae = load_from_args(args, [args.plan])
    config = resolve_configuration(args.plan, var.config, args.bridge, sampling_from_args(args))
    plan = config.plan
    labels = args.labels
    if labels is not None and any(not 0 <= c < var.num_classes for c in labels):
        raise ValueError(f"--labels must be in 0..{var.num_classes - 1} for this model "
                         f"({var.num_classes} classes), got {labels}.")
    check_fits_memory(var, vae, plan, config.settings, min(num, args.batch_size), args.device,
                      "--batch-size")
    if labels is None:
        g = torch.Generator().manual_seed(args.seed)
        labels = torch.randint(0, var.num_classes, (num,), generator=g).tolist()
    images, indices, kv_peak, t_tr, t_dec = [], [], 0, 0.0, 0.0
    for i, start in enumerate(range(0, num, args.batch_size)):
        chunk = labels[start:start + args.batch_size]
        per_image = config.settings.rng == "per-image"  # streams of (--seed, image index)
        res = generate(var, len(chunk), torch.tensor(chunk), plan=plan, progress=True,
                       settings=config.settings.replace(seed=args.seed + i),
                       image_keys=[(args.seed, start + j) for j in range(len(chunk))]
                       if per_image else None)
        images.append(to_uint8(res.images))
        indices.append(res.indices)
        kv_peak = max(kv_peak, res.kv_peak_bytes)
        t_tr, t_dec = t_tr + res.timings["transformer"], t_dec + res.timings["decoder"]
    arr = np.concatenate(images)
    save_png(make_grid(arr, args.nrow or math.ceil(math.sqrt(num))), out)
    if args.save_each:
        folder = Path(args.save_each)
        for j, img in enumerate(arr):
            save_png(img, folder / image_name(j, labels[j]))
    if args.npz:
        write_npz(args.npz, [arr], len(arr), arr.shape[1:], labels=np.asarray(labels))
    report = run_report(var, config, labels, args.batch_size, indices, kv_peak, t_tr, t_dec)
    report["model"] = args.model
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {num} images ({arr.shape[1]}x{arr.shape[2]}) to {out} | {config.name} "
          f"({report['token_layers']} token-layers) | transformer {t_tr:.2f}s, "
          f"decoder {t_dec:.2f}s | peak KV cache {fmt_bytes(kv_peak)} ({args.dtype}, "
          f"predicted {fmt_bytes(report['predicted_kv_peak_bytes'])})")
    return 0


def indices_sha256(chunks: list[list[torch.Tensor]]) -> str:
    """sha256 over the token indices of all scales, int64, in scale order; each scale's maps of
    every batch chunk stacked in image order (one chunk: `res.indices` as they are)."""
    digest = hashlib.sha256()
    for k in range(len(chunks[0])):
        scale = torch.cat([c[k] for c in chunks]).to(torch.int64).cpu().contiguous()
        digest.update(scale.numpy().tobytes())
    return digest.hexdigest()


def run_report(var, config, labels, batch_size: int, indices, kv_peak: int,
               transformer_s: float, decoder_s: float) -> dict:
    """The measured and predicted costs of a sampling run (`variant sample --json`)."""
    plan, settings, levers = config.plan, config.settings, config.levers
    sizes = [len(labels[i:i + batch_size]) for i in range(0, len(labels), batch_size)]
    largest = CostModel(var.config, settings.dtype, settings.rows(max(sizes)))
    flops = sum(CostModel(var.config, settings.dtype, settings.rows(n)).flops(
        plan, include_head=True, levers=levers) for n in sizes)
    return {"configuration": config.name, "plan": plan.name,
            "layer_sets": [list(s) for s in plan.layer_sets],
            "settings": settings.to_dict(), "batch_size": batch_size, "labels": list(labels),
            "num_images": len(labels), "kv_peak_bytes": int(kv_peak),
            "predicted_kv_peak_bytes": largest.kv_peak_bytes(plan, levers),
            "official_kv_bytes": largest.official_kv_bytes(),
            "token_layers": largest.token_layers(plan, levers), "gflops": flops / 1e9,
            "transformer_s": transformer_s, "decoder_s": decoder_s,
            "indices_sha256": indices_sha256(indices)}
