"""`variant quantize`: save a model with quantised transformer weights (variant/precision.py).

    variant quantize --model builtin --weights int8 --out runs/builtin-int8
    variant sample --model runs/builtin-int8 --plan d4      # loads int8, as saved

The directory records its precision in config.json, so every command (and `variant serve`,
`variant studio`) loads it quantised, and their printed `variant sample` lines reproduce it.
"""

from __future__ import annotations

import argparse

from ..precision import PRECISIONS, inner_tensors, quantised_layers
from ..pretrained import read_model_config, save_pretrained
from ..units import fmt_bytes
from . import checks
from .common import add_model_args, load_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "quantize", help="save a model with int8/fp8 transformer weights",
        description="Quantise the transformer's linear layers (weight-only, torchao; extra "
                    "'quant') and save the model directory; it loads back quantised.")
    add_model_args(p)
    p.add_argument("--weights", choices=PRECISIONS, required=True,
                   help="int8 (cpu, cuda) or fp8 (cuda, compute capability >= 8.9)")
    p.add_argument("--out", type=checks.output_dir, required=True,
                   help="model directory to write (config.json + safetensors)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    var, vae = load_from_args(args)
    meta = read_model_config(args.model, revision=args.revision)[2]
    save_pretrained(args.out, var, vae, meta=meta)
    layers = quantised_layers(var)
    stored = sum(t.nbytes for _, m in layers for t in inner_tensors(m.weight).values())
    full = sum(m.weight.numel() * m.weight.dtype.itemsize for _, m in layers)
    print(f"wrote {args.out}: {len(layers)} linear layers at {args.weights}, "
          f"{fmt_bytes(stored)} (from {fmt_bytes(full)})")
    return 0
