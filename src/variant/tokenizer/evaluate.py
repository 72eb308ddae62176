"""Per-scale tokenizer report: reconstruction error of every scale prefix and codebook usage.

For k = 1..K the image decoded from the cumulative f_hat of the first k scales (what
`img_to_reconstructed_img(img, last_one=False)` returns) is compared with the input: MSE in the
[-1, 1] pixel space and PSNR in the [0, 1] space. Usage is the share of the V codes that the
tokens of a scale hit at least once over the evaluation images.

Shape legend (the package's, see variant/__init__.py): B batch, K scales, V codebook size,
l tokens of one scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


@torch.no_grad()
def evaluate_tokenizer(vae, batches: Iterable, device: torch.device | str = "cpu") -> dict:
    """{"mse": [K], "psnr": [K], "l1": [K], "usage": [K] (% of codes), "usage_all": %,
    "num_images": n} over `batches` of `(img (B, 3, H, W) in [-1, 1], label)`."""
    was_training = vae.training
    vae.eval()
    q = vae.quantize
    K, V = len(q.patch_nums), q.V
    sq_K = torch.zeros(K, dtype=torch.float64)
    abs_K = torch.zeros(K, dtype=torch.float64)
    hits_KV = torch.zeros(K, V, dtype=torch.bool)
    num_images = 0
    for img_B3HW, _ in batches:
        img_B3HW = img_B3HW.to(device, torch.float32)
        # One encoder pass for both outputs (img_to_reconstructed_img + img_to_idxBl would
        # encode twice); the prefix images are exactly img_to_reconstructed_img(last_one=False).
        f_BChw = vae.img_to_f(img_B3HW)
        idx_list = q.f_to_idxBl_or_fhat(f_BChw, to_fhat=False)
        f_hats = q.f_to_idxBl_or_fhat(f_BChw, to_fhat=True)
        for k, (idx_Bl, f_hat_BChw) in enumerate(zip(idx_list, f_hats)):
            diff = vae.fhat_to_img(f_hat_BChw).double() - img_B3HW.double()
            sq_K[k] += diff.square().mean(dim=(1, 2, 3)).sum().cpu()
            abs_K[k] += diff.abs().mean(dim=(1, 2, 3)).sum().cpu()
            hits_KV[k, idx_Bl.flatten().cpu()] = True
        num_images += img_B3HW.shape[0]
    vae.train(was_training)
    if num_images == 0:
        raise ValueError("evaluate_tokenizer got no images; pass a non-empty loader.")
    mse_K = (sq_K / num_images).tolist()
    return {
        "mse": mse_K,
        "psnr": [psnr_from_mse(m) for m in mse_K],
        "l1": (abs_K / num_images).tolist(),
        "usage": (hits_KV.float().mean(dim=1) * 100).tolist(),
        "usage_all": float(hits_KV.any(dim=0).float().mean() * 100),
        "num_images": num_images,
    }


def psnr_from_mse(mse_pm1: float) -> float:
    """PSNR (dB) of images in [0, 1] from the MSE measured in [-1, 1] (4x larger)."""
    return 10.0 * math.log10(4.0 / max(mse_pm1, 1e-12))


def format_report(report: dict, patch_nums: tuple[int, ...]) -> str:
    """A small table: one row per scale prefix."""
    lines = ["scale  side   mse(-1..1)  psnr(dB)  usage(%)"]
    for k, pn in enumerate(patch_nums):
        lines.append(f"{k + 1:>5}  {pn:>4}   {report['mse'][k]:>10.5f}  {report['psnr'][k]:>8.2f}"
                     f"  {report['usage'][k]:>8.1f}")
    lines.append(f"codes used by any scale: {report['usage_all']:.1f}% "
                 f"({report['num_images']} images)")
    return "\n".join(lines)
