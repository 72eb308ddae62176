"""Images as the package writes them: uint8 arrays, grids and PNG files (written atomically).

One home for the conversion every image goes through: `variant sample`, the sample folders of
evaluation and tuning, the studio's grids and the served images all give the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_file


def to_uint8(images_B3HW: torch.Tensor) -> np.ndarray:
    """[0, 1] floats (B, 3, H, W) -> (B, H, W, 3) uint8, rounding to nearest (the official demo
    truncates)."""
    x = images_B3HW.detach().float().mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def make_grid(images_BHW3: np.ndarray, nrow: int, pad: int = 2) -> np.ndarray:
    """The images in rows of `nrow` on a white background, `pad` pixels apart."""
    B, H, W, _ = images_BHW3.shape
    rows = math.ceil(B / nrow)
    grid = np.full((rows * (H + pad) + pad, nrow * (W + pad) + pad, 3), 255, np.uint8)
    for i, img in enumerate(images_BHW3):
        r, c = divmod(i, nrow)
        top, left = pad + r * (H + pad), pad + c * (W + pad)
        grid[top:top + H, left:left + W] = img
    return grid


def save_png(array_HW3: np.ndarray, path: str | Path) -> None:
    """Write a PNG atomically (a unique temporary per process: ranks never share one)."""
    with atomic_file(Path(path)) as tmp:
        Image.fromarray(array_HW3).save(tmp, format="PNG")
