"""`variant tokenize`: pre-extract the multi-scale token indices of a dataset (both flips).

Under `torchrun --nproc_per_node=W -m variant tokenize ...` rank r writes shards r, r + W, ...
(ranks from the RANK / WORLD_SIZE variables torchrun sets). Rerunning skips complete shards.
"""

from __future__ import annotations

import argparse
import logging
import os

import torch

from ..builtin import BUILTIN
from ..data.tokens import DEFAULT_SHARD_SIZE, images_for_tokenizing, tokenize_dataset
from ..tokenizer_io import load_tokenizer
from . import checks

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "tokenize", help="pre-tokenise a dataset (both flips) into sharded files",
        description="Run a frozen tokenizer over a dataset (eval transform: resize + centre "
                    "crop) and its horizontal flip and write the token indices to sharded "
                    "safetensors files plus index.json, so `variant train --dataset tokens` "
                    "can skip the VQVAE encoder. Resumable; shardable with torchrun.")
    p.add_argument("--tokenizer", default=BUILTIN,
                   help="tokenizer or model directory, train-tokenizer run directory, VQVAE "
                        ".pth, or 'builtin' (the tokenizer of the built-in model)")
    p.add_argument("--patch-nums", default=None,
                   help="scale sides for a VQVAE .pth, comma-separated (default: official 256 px)")
    p.add_argument("--data", required=True,
                   help="'procedural' (built-in Shapes-10) or an image folder root/<class>/<img>")
    p.add_argument("--out", type=checks.output_dir, required=True, help="output directory")
    p.add_argument("--num-images", type=checks.natural, default=0,
                   help="number of procedural images (--data procedural)")
    p.add_argument("--data-seed", type=checks.seed, default=0, help="seed of the procedural images")
    p.add_argument("--shard-size", type=checks.count, default=DEFAULT_SHARD_SIZE,
                   help=f"samples per shard (default {DEFAULT_SHARD_SIZE})")
    p.add_argument("--batch-size", type=checks.count, default=64, help="images per tokenizer batch")
    p.add_argument("--workers", type=checks.natural, default=0, help="DataLoader worker processes")
    p.add_argument("--device", type=checks.device,
                   default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=checks.count, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _resolve_tokenizer(args: argparse.Namespace):
    patch_nums = None
    if args.patch_nums:
        patch_nums = tuple(int(x) for x in args.patch_nums.split(",") if x.strip())
    return load_tokenizer(args.tokenizer, patch_nums=patch_nums, device=args.device)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    vae = _resolve_tokenizer(args)
    dataset = images_for_tokenizing(args.data, vae.config.image_size,
                                    num_images=args.num_images, seed=args.data_seed)
    index = tokenize_dataset(vae, dataset, args.out, shard_size=args.shard_size,
                             batch_size=args.batch_size, rank=rank, world_size=world_size,
                             num_workers=args.workers, progress=not args.no_progress)
    if index is None:
        print(f"rank {rank}: shards done; index.json follows when every rank has finished")
    else:
        print(f"{args.out}: {index['num_samples']} samples x 2 flips, L={index['L']}, "
              f"{index['num_shards']} shards, {index['num_skipped']} files skipped, tokenizer "
              f"{index['fingerprint']}")
    return 0
