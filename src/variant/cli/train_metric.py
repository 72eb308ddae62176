"""`variant train-metric`: train the Shapes-10 classifier behind `variant eval --metric builtin`."""

from __future__ import annotations

import argparse
import json

import torch

from ..eval.metric_net import train_metric_net
from . import checks


def register(sub) -> None:
    p = sub.add_parser(
        "train-metric", help="train the built-in dataset's metric network",
        description="Train the small Shapes-10 classifier whose features give FID/precision/recall "
                    "and whose softmax gives class accuracy and an IS-like score for "
                    "`variant eval --metric builtin`. The package ships one (assets/metric/); "
                    "retrain it only for another image size or class count.")
    p.add_argument("--out", type=checks.output_dir, required=True,
                   help="output folder (safetensors + config.json)")
    p.add_argument("--image-size", type=checks.count, default=64,
                   help="input side in pixels (default 64)")
    p.add_argument("--num-classes", type=checks.count, default=10,
                   help="Shapes-10 classes (default 10)")
    p.add_argument("--num-train", type=checks.count, default=12000,
                   help="training images (default 12000)")
    p.add_argument("--num-val", type=checks.count, default=2000,
                   help="held-out images (default 2000)")
    p.add_argument("--epochs", type=checks.count, default=3, help="epochs (default 3)")
    p.add_argument("--batch-size", type=checks.count, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=checks.float_in(0), default=3e-3,
                   help="peak learning rate (one-cycle)")
    p.add_argument("--min-render-size", type=checks.count, default=16,
                   help="smallest side images are rendered at before resizing (default 16)")
    p.add_argument("--noise-std", type=checks.float_in(0), default=0.0,
                   help="pixel-noise augmentation, largest std in [-1, 1] units (default 0: off)")
    p.add_argument("--threads", type=checks.count, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=checks.seed, default=0,
                   help="initialisation and batch-order seed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    _, report = train_metric_net(
        args.out, image_size=args.image_size, num_classes=args.num_classes,
        num_train=args.num_train, num_val=args.num_val, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, min_render_size=args.min_render_size,
        noise_std=args.noise_std, seed=args.seed)
    print(json.dumps(report, indent=2))
    print(f"saved to {args.out}")
    return 0
