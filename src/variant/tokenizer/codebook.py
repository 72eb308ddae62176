"""Dead-code restarts: re-seed unused codebook entries with residuals the quantiser must match.

A small VQVAE trained from scratch tends to use a few percent of its codebook: codes that lose
every nearest-neighbour contest early never receive a gradient again. Every few steps the codes
whose usage EMA (`ema_vocab_hit_SV`, summed over scales) is below a fraction of a uniform share
are replaced by vectors drawn from the batch's residuals z, the inputs of the nearest-code lookup
at every scale, so they start where the data is (as in Jukebox / SoundStream / Improved-VQGAN).

Shape legend (the package's, see variant/__init__.py): B batch, C (Cvae) latent channels,
h/w latent side, pn side of one scale, N positions over all scales, V codebook size, K scales.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def residual_vectors(quantize, f_BChw: torch.Tensor) -> torch.Tensor:
    """(N, C) fp32: the vectors each scale's nearest-code lookup sees for latent f (the loop of
    `MultiScaleQuantizer.f_to_idxBl_or_fhat`)."""
    f_rest_BChw = f_BChw.detach().float().clone()
    B, C, h, _ = f_rest_BChw.shape
    pieces = []
    for k, pn in enumerate(quantize.patch_nums):
        last = k == len(quantize.patch_nums) - 1
        z_BCpp = f_rest_BChw if last else F.interpolate(f_rest_BChw, (pn, pn), mode="area")
        z_NC = z_BCpp.permute(0, 2, 3, 1).reshape(-1, C)
        pieces.append(z_NC)
        h_BChw = quantize.embed_tokens(quantize.nearest_code(z_NC).view(B, pn * pn), pn)
        if not last:
            h_BChw = F.interpolate(h_BChw, size=(h, h), mode="bicubic")
        f_rest_BChw.sub_(quantize.quant_resi(k, h_BChw.contiguous()))
    return torch.cat(pieces)


@torch.no_grad()
def restart_dead_codes(quantize, f_BChw: torch.Tensor, *, threshold: float,
                       generator: torch.Generator) -> int:
    """Replace codes used less than `threshold` x a uniform share; returns how many."""
    hits_V = quantize.ema_vocab_hit_SV.sum(dim=0)
    uniform = hits_V.sum() / quantize.V
    dead_D = torch.nonzero(hits_V < threshold * uniform).flatten()
    if dead_D.numel() == 0 or uniform == 0:
        return 0
    z_NC = residual_vectors(quantize, f_BChw)
    pick = torch.randint(0, z_NC.shape[0], (dead_D.numel(),), generator=generator)
    weight_VC = quantize.embedding.weight
    weight_VC[dead_D.to(weight_VC.device)] = z_NC[pick.to(z_NC.device)].to(weight_VC.dtype)
    # Start them at twice the threshold: a code is restarted again only after it has stayed
    # unused for a while (about 70 steps with the EMA's 0.99 decay).
    num_scales = quantize.ema_vocab_hit_SV.shape[0]
    quantize.ema_vocab_hit_SV[:, dead_D] = 2 * threshold * uniform / num_scales
    return int(dead_D.numel())
