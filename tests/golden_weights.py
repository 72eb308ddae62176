"""Deterministic weights and inputs for the golden fixtures in ``tests/fixtures/golden``.

The fixtures were produced by running the official VAR code (see
``tests/fixtures/make_golden.py``) on tiny models whose parameters were filled by
:func:`seeded_params`. No weights are stored: a test rebuilds the same parameters from the
parameter *names and shapes* and a seed, so any model whose state-dict names match the
official ones can be filled identically.

Rules (one ``torch.Generator().manual_seed(seed)``, names visited in sorted order, fp32):

* name ends with ``scale_mul_1H11``: ``log(4) + 0.1 * randn``
* 1-D GroupNorm affine weight (``norm1.weight``, ``norm2.weight``, ``norm.weight``,
  ``norm_out.weight``): ``1 + 0.1 * randn``
* any other 1-D tensor (biases, ``q_bias`` ...): ``0.02 * randn``
* >= 2-D, name ends with ``embedding.weight`` (VQ codebook): ``randn``
* >= 2-D, name ends with ``class_emb.weight``, ``lvl_embed.weight``, ``pos_1LC`` or
  ``pos_start``: ``0.5 * randn``
* any other >= 2-D tensor: ``randn / sqrt(numel // shape[0])``
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_GN_WEIGHTS = ("norm1.weight", "norm2.weight", "norm.weight", "norm_out.weight")
_HALF_STD = ("class_emb.weight", "lvl_embed.weight", "pos_1LC", "pos_start")


def seeded_params(
    named_shapes: list[tuple[str, tuple[int, ...]]], seed: int
) -> dict[str, torch.Tensor]:
    """Return deterministic fp32 tensors for ``(name, shape)`` pairs (see module docstring)."""
    g = torch.Generator().manual_seed(seed)
    shapes = dict(named_shapes)
    out: dict[str, torch.Tensor] = {}
    for name in sorted(shapes):
        shape = tuple(shapes[name])
        r = torch.randn(shape, generator=g, dtype=torch.float32)
        if name.endswith("scale_mul_1H11"):
            t = math.log(4.0) + 0.1 * r
        elif len(shape) == 1:
            t = 1.0 + 0.1 * r if name.endswith(_GN_WEIGHTS) else 0.02 * r
        elif name.endswith("embedding.weight"):
            t = r
        elif name.endswith(_HALF_STD):
            t = 0.5 * r
        else:
            fan_in = max(1, math.prod(shape) // shape[0])
            t = r / math.sqrt(fan_in)
        out[name] = t
    return out


@torch.no_grad()
def fill_module(module: nn.Module, seed: int) -> None:
    """Overwrite every parameter of ``module`` (not its buffers) with :func:`seeded_params`."""
    named = list(module.named_parameters())
    values = seeded_params([(n, tuple(p.shape)) for n, p in named], seed)
    for n, p in named:
        p.data.copy_(values[n])


def golden_images(seed: int, B: int, side: int) -> torch.Tensor:
    """Smooth random images ``(B, 3, side, side)`` in fp32 spanning exactly [-1, 1] per image.

    Uniform noise in [-1, 1) from ``torch.Generator().manual_seed(seed)``, a 9x9 box blur
    (``avg_pool2d``, stride 1, padding 4, ``count_include_pad=False``), then a per-image
    affine min-max rescale (over C, H, W) to [-1, 1].
    """
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(B, 3, side, side, generator=g, dtype=torch.float32) * 2 - 1
    img = F.avg_pool2d(img, 9, stride=1, padding=4, count_include_pad=False)
    lo = img.amin(dim=(1, 2, 3), keepdim=True)
    hi = img.amax(dim=(1, 2, 3), keepdim=True)
    return (img - lo) / (hi - lo) * 2 - 1
