"""`variant train-tokenizer`: train the multi-scale VQVAE from scratch or fine-tune one.

Flags: `--preset` plus one `--flag` per `TokenizerTrainConfig` field (generated from the
dataclass, so the defaults live in the preset only), and the run's paths.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging

import torch

from ..tokenizer.evaluate import format_report
from ..tokenizer.presets import TOKENIZER_PRESETS, TokenizerTrainConfig, tokenizer_preset
from ..tokenizer.trainer import TokenizerTrainer
from . import checks

log = logging.getLogger(__name__)

HELP = {
    "epochs": "passes over the training images",
    "num_images": "size of the procedural training set (--data procedural)",
    "l1_weight": "weight of the L1 reconstruction loss",
    "l2_weight": "weight of the L2 (MSE) reconstruction loss",
    "vq_weight": "weight of the quantiser's commitment + codebook loss",
    "perceptual_weight": "weight of the LPIPS-VGG16 loss (needs --perceptual-weights)",
    "adv_weight": "weight of the PatchGAN hinge loss (0: no discriminator)",
    "adv_start_step": "step at which the adversarial loss and the discriminator start",
    "adaptive_adv_weight": "scale the adversarial term by VQGAN's gradient-norm ratio",
    "precision": "auto (bf16 autocast on CUDA, fp32 elsewhere), fp32 or bf16",
    "eval_images": "held-out images for the per-epoch per-scale report",
    "hflip": "random horizontal flips",
}


def register(sub) -> None:
    p = sub.add_parser(
        "train-tokenizer", help="train or fine-tune the multi-scale VQVAE tokenizer",
        description="Train the multi-scale residual VQVAE: L1/L2 reconstruction + commitment/"
                    "codebook loss, optionally LPIPS (user-supplied VGG16/LPIPS weights) and a "
                    "PatchGAN hinge loss. Reports codebook usage and reconstruction error per "
                    "scale after every epoch; the tokenizer is saved to OUT/tokenizer.")
    p.add_argument("--preset", choices=sorted(TOKENIZER_PRESETS), default="builtin",
                   help="named configuration (default builtin: Shapes-10 at 64 px)")
    p.add_argument("--out", type=checks.output_dir, required=True,
                   help="run directory (checkpoints, metrics, tokenizer)")
    p.add_argument("--data", default="procedural",
                   help="'procedural' (built-in Shapes-10) or an image folder root/<class>/<img>")
    p.add_argument("--init", default=None,
                   help="fine-tune from a tokenizer/model directory or a VQVAE .pth (its "
                        "configuration replaces the preset's VQVAE)")
    p.add_argument("--perceptual-weights", nargs="+", default=(), metavar="PATH",
                   help="files with the VGG16 (torchvision layout) and LPIPS lin-layer weights")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--max-steps", type=checks.count, default=None,
                   help="stop (with a checkpoint) at this global step; the schedule is unchanged")
    p.add_argument("--device", type=checks.device,
                   default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=checks.natural, default=0, help="DataLoader worker processes")
    p.add_argument("--threads", type=checks.count, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    group = p.add_argument_group("configuration (TokenizerTrainConfig; default: the preset's)")
    for f in dataclasses.fields(TokenizerTrainConfig):
        if f.name != "vae":
            _add_field(group, f)
    p.set_defaults(func=run)


def _add_field(group, f: dataclasses.Field) -> None:
    flag = "--" + f.name.replace("_", "-")
    help_text = HELP.get(f.name, f.name.replace("_", " "))
    if isinstance(f.default, bool):
        group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
    elif isinstance(f.default, tuple):
        group.add_argument(flag, dest=f.name, type=checks.float_in(), nargs=len(f.default),
                           default=None,
                           help=help_text)
    else:
        group.add_argument(flag, dest=f.name, type=checks.scalar(type(f.default)), default=None,
                           help=help_text)


def resolve_config(args: argparse.Namespace) -> TokenizerTrainConfig:
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TokenizerTrainConfig)
                 if f.name != "vae" and getattr(args, f.name, None) is not None}
    return tokenizer_preset(args.preset, **overrides)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    config = resolve_config(args)
    if config.perceptual_weight > 0 and not args.perceptual_weights:
        raise ValueError("--perceptual-weight > 0 needs --perceptual-weights PATH [PATH ...] "
                         "(VGG16 features + LPIPS lin layers); nothing is downloaded.")
    trainer = TokenizerTrainer(config, args.out, data=args.data, init=args.init,
                               perceptual_weights=args.perceptual_weights, device=args.device,
                               num_workers=args.workers, resume=args.resume,
                               progress=not args.no_progress)
    report = trainer.train(max_steps=args.max_steps)
    if report is not None:
        print(format_report(report, trainer.vae.config.patch_nums))
    print(f"tokenizer: {trainer.out / 'tokenizer'} (step {trainer.step}/{trainer.total_steps})")
    return 0
