"""Multi-scale residual vector quantiser (official `VectorQuantizer2` state-dict layout).

An image latent f (B, Cvae, h, w) is explained by K token maps of growing side `patch_nums`.
At scale k the residual is area-downsampled to pn_k x pn_k, each position takes its nearest
codebook entry, the embedded map is bicubic-upsampled back to h x w and refined by a Phi conv
(`0.5 * x + 0.5 * conv(x)`); the result is added to f_hat and subtracted from the residual.
The last scale (pn_K = h) skips both interpolations.

State-dict keys (official): `ema_vocab_hit_SV` (K, V) buffer, `embedding.weight` (V, Cvae), and
the Phi convs under `quant_resi`: `quant_resi.{k}` (share_quant_resi=0, one per scale),
`quant_resi.qresi` (1, one shared), `quant_resi.qresi_ls.{0..n-1}` (n > 1, partially shared).

Shape legend (the package's, see variant/__init__.py): B batch, C (Cvae) latent channels,
V codebook size, K scales (the official buffer name `ema_vocab_hit_SV` writes them S), h/w latent
height/width, pn side of one scale (`pp` in a suffix: a pn x pn map), l = pn*pn tokens of one
scale, L all tokens, N flat positions (here B*l).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PHI_RATIO_EPS = 1e-6  # |quant_resi| below this: Phi is the identity (no conv, no keys)


def phi_index_table(num_phi: int, num_scales: int) -> tuple[int, ...]:
    """Which of `num_phi` Phi convs each of `num_scales` scales uses.

    Scale k sits at k / (K - 1) in [0, 1]; the Phi whose tick is nearest wins (first on ties).
    The ticks are numpy float64 linspaces (margin 1/(3n) for n = 4, else 1/(2n)); scales 2 and 7
    of 10 are exact mathematical ties that only this float64 rounding decides, giving
    (0, 0, 1, 1, 1, 2, 2, 3, 3, 3) for n = 4, K = 10. Do not recompute it another way.
    """
    margin = 1 / 3 / num_phi if num_phi == 4 else 1 / 2 / num_phi
    ticks = np.linspace(margin, 1 - margin, num_phi)
    positions = [k / (num_scales - 1) if num_scales > 1 else 0.0 for k in range(num_scales)]
    return tuple(int(np.argmin(np.abs(ticks - p))) for p in positions)


class Phi(nn.Conv2d):
    """3x3 conv refinement `(1 - r) * h + r * conv(h)` with r = |quant_resi| (a Conv2d, so its
    keys are `weight` and `bias` directly)."""

    def __init__(self, channels: int, quant_resi: float) -> None:
        super().__init__(channels, channels, kernel_size=3, stride=1, padding=1)
        self.resi_ratio = abs(quant_resi)

    def forward(self, h_BChw: torch.Tensor) -> torch.Tensor:
        return h_BChw.mul(1 - self.resi_ratio) + super().forward(h_BChw).mul_(self.resi_ratio)


class PhiBank(nn.Module):
    """The Phi convs and the scale -> Phi mapping, registered under the official child names."""

    def __init__(
        self, channels: int, num_scales: int, share_quant_resi: int, quant_resi: float
    ) -> None:
        super().__init__()

        def make() -> nn.Module:
            if abs(quant_resi) > PHI_RATIO_EPS:
                return Phi(channels, quant_resi)
            return nn.Identity()

        if share_quant_resi == 0:  # one Phi per scale, children named "0", "1", ...
            for k in range(num_scales):
                self.add_module(str(k), make())
            self.phi_index = phi_index_table(num_scales, num_scales)
        elif share_quant_resi == 1:
            self.qresi = make()
            self.phi_index = (0,) * num_scales
        else:
            self.qresi_ls = nn.ModuleList(make() for _ in range(share_quant_resi))
            self.phi_index = phi_index_table(share_quant_resi, num_scales)
        self.share_quant_resi = share_quant_resi

    def for_scale(self, scale_index: int) -> nn.Module:
        j = self.phi_index[scale_index]
        if self.share_quant_resi == 0:
            return self._modules[str(j)]
        if self.share_quant_resi == 1:
            return self.qresi
        return self.qresi_ls[j]

    def forward(self, scale_index: int, h_BChw: torch.Tensor) -> torch.Tensor:
        return self.for_scale(scale_index)(h_BChw)


class MultiScaleQuantizer(nn.Module):
    """Multi-scale residual quantiser, compatible with the official `VectorQuantizer2`."""

    def __init__(
        self,
        *,
        V: int,
        Cvae: int,
        patch_nums: Sequence[int],
        beta: float = 0.25,
        quant_resi: float = 0.5,
        share_quant_resi: int = 4,
        using_znorm: bool = False,
    ) -> None:
        super().__init__()
        self.V, self.Cvae = V, Cvae
        self.patch_nums = tuple(int(p) for p in patch_nums)
        self.beta = beta
        self.using_znorm = using_znorm
        self.quant_resi = PhiBank(Cvae, len(self.patch_nums), share_quant_resi, quant_resi)
        # Codebook-usage EMA from tokenizer training: statistics only, never used by inference.
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(len(self.patch_nums), V))
        self.embedding = nn.Embedding(V, Cvae)
        self.num_usage_updates = 0

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    def extra_repr(self) -> str:
        return f"patch_nums={self.patch_nums}, phi_index={self.quant_resi.phi_index}"

    # ---------------------------------------------------------------------------------------
    # building blocks

    @torch.no_grad()
    def nearest_code(self, z_NC: torch.Tensor) -> torch.Tensor:
        """Index (N,) of the nearest codebook entry; first index on ties."""
        codebook_VC = self.embedding.weight.detach()
        if self.using_znorm:
            sim_NV = F.normalize(z_NC, dim=-1) @ F.normalize(codebook_VC.T, dim=0)
            return torch.argmax(sim_NV, dim=1)
        # ||z||^2 + ||e||^2 - 2 z.e in exactly this order: other formulations flip near-ties.
        dist_NV = torch.sum(z_NC.square(), dim=1, keepdim=True) + torch.sum(
            codebook_VC.square(), dim=1, keepdim=False
        )
        dist_NV.addmm_(z_NC, codebook_VC.T, alpha=-2, beta=1)
        return torch.argmin(dist_NV, dim=1)

    def embed_tokens(self, idx_Bl: torch.Tensor, pn: int) -> torch.Tensor:
        """Codebook vectors of one scale as (B, Cvae, pn, pn).

        The result is a channels-last strided view, the same memory layout the official code
        produces; the interpolation and conv kernels round identically only on equal layouts.
        """
        B = idx_Bl.shape[0]
        return self.embedding(idx_Bl).view(B, pn, pn, self.Cvae).permute(0, 3, 1, 2)

    def _upsample(self, h_BCpp: torch.Tensor, side: int) -> torch.Tensor:
        return F.interpolate(h_BCpp, size=(side, side), mode="bicubic")

    def check_token_maps(self, idx_list: Sequence[torch.Tensor], min_len: int) -> None:
        """ValueError unless `idx_list` holds `min_len` to K maps of shape (B, pn_k * pn_k)."""
        if not min_len <= len(idx_list) <= self.num_scales:
            raise ValueError(
                f"got {len(idx_list)} token maps but this VQVAE needs {min_len} to "
                f"{self.num_scales} (patch_nums={self.patch_nums}); pass one (B, pn*pn) "
                "LongTensor per scale."
            )
        B = idx_list[0].shape[0]
        for k, idx_Bl in enumerate(idx_list):
            pn = self.patch_nums[k]
            if idx_Bl.ndim != 2 or tuple(idx_Bl.shape) != (B, pn * pn):
                raise ValueError(
                    f"token map {k} has shape {tuple(idx_Bl.shape)}, expected ({B}, {pn * pn}) "
                    f"for scale side {pn}; flatten each (B, pn, pn) map row-major to (B, pn*pn)."
                )

    # ---------------------------------------------------------------------------------------
    # tokenisation and the teacher-forcing / sampling inputs

    def f_to_idxBl_or_fhat(self, f_BChw: torch.Tensor, to_fhat: bool) -> list[torch.Tensor]:
        """Quantise a latent: the token map of each scale (B, pn*pn) int64, or, with `to_fhat`,
        the cumulative f_hat (B, Cvae, h, w) after each scale."""
        B, C, h, w = f_BChw.shape
        if h != self.patch_nums[-1] or w != self.patch_nums[-1]:
            raise ValueError(
                f"latent is {h}x{w} but the last scale is {self.patch_nums[-1]}; "
                "the latent side must equal patch_nums[-1]."
            )
        f_rest_BChw = f_BChw.detach().clone()
        f_hat_BChw = torch.zeros_like(f_rest_BChw)
        outputs: list[torch.Tensor] = []
        for k, pn in enumerate(self.patch_nums):
            last = k == self.num_scales - 1
            z_BCpp = f_rest_BChw if last else F.interpolate(f_rest_BChw, size=(pn, pn), mode="area")
            idx_N = self.nearest_code(z_BCpp.permute(0, 2, 3, 1).reshape(-1, C))
            h_BChw = self.embed_tokens(idx_N.view(B, pn * pn), pn)
            h_BChw = (h_BChw if last else self._upsample(h_BChw, h)).contiguous()
            h_BChw = self.quant_resi(k, h_BChw)
            f_hat_BChw.add_(h_BChw)
            f_rest_BChw.sub_(h_BChw)
            outputs.append(f_hat_BChw.clone() if to_fhat else idx_N.reshape(B, pn * pn))
        return outputs

    def idxBl_to_var_input(self, idx_list: Sequence[torch.Tensor]) -> torch.Tensor:
        """Teacher-forcing input (B, L - first_l, Cvae) fp32: for each scale after the first, the
        area-downsampled cumulative f_hat of all earlier scales. The last map is not needed."""
        self.check_token_maps(idx_list, max(1, self.num_scales - 1))
        B, side = idx_list[0].shape[0], self.patch_nums[-1]
        f_hat_BChw = idx_list[0].new_zeros(B, self.Cvae, side, side, dtype=torch.float32)
        next_inputs: list[torch.Tensor] = []
        for k in range(self.num_scales - 1):
            h_BChw = self._upsample(self.embed_tokens(idx_list[k], self.patch_nums[k]), side)
            f_hat_BChw.add_(self.quant_resi(k, h_BChw))
            pn_next = self.patch_nums[k + 1]
            next_BCpp = F.interpolate(f_hat_BChw, size=(pn_next, pn_next), mode="area")
            next_inputs.append(next_BCpp.view(B, self.Cvae, -1).transpose(1, 2))
        if not next_inputs:
            return f_hat_BChw.new_zeros(B, 0, self.Cvae)
        return torch.cat(next_inputs, dim=1)

    def get_next_autoregressive_input(
        self, scale_index: int, num_scales: int, f_hat: torch.Tensor, h_BChw: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling step: add scale `scale_index`'s embedded map h (B, Cvae, pn, pn) to f_hat
        (B, Cvae, h, w) **in place**; return (f_hat, next scale's input (B, Cvae, pn', pn')), or
        (f_hat, f_hat) after the last scale."""
        if num_scales != self.num_scales:
            raise ValueError(
                f"num_scales={num_scales} but this quantiser has {self.num_scales} scales "
                f"(patch_nums={self.patch_nums}); pass len(patch_nums)."
            )
        if scale_index == num_scales - 1:
            f_hat.add_(self.quant_resi(scale_index, h_BChw))
            return f_hat, f_hat
        side = self.patch_nums[-1]
        f_hat.add_(self.quant_resi(scale_index, self._upsample(h_BChw, side)))
        pn_next = self.patch_nums[scale_index + 1]
        return f_hat, F.interpolate(f_hat, size=(pn_next, pn_next), mode="area")

    def embed_to_fhat(
        self,
        ms_h_BChw: Sequence[torch.Tensor],
        all_to_max_scale: bool = True,
        last_one: bool = False,
    ) -> list[torch.Tensor] | torch.Tensor:
        """Accumulate embedded maps (one (B, Cvae, pn, pn) per scale) into f_hat: the final
        f_hat if `last_one`, else one per scale. `all_to_max_scale=False` is the official
        experimental variant that grows f_hat scale by scale (it returns maps of growing size)."""
        if len(ms_h_BChw) != self.num_scales:
            raise ValueError(f"need {self.num_scales} embedded maps, got {len(ms_h_BChw)}.")
        B, side = ms_h_BChw[0].shape[0], self.patch_nums[-1]
        f_hats: list[torch.Tensor] = []
        if all_to_max_scale:
            f_hat_BChw = ms_h_BChw[0].new_zeros(B, self.Cvae, side, side, dtype=torch.float32)
            for k, h_BChw in enumerate(ms_h_BChw):
                if k < self.num_scales - 1:
                    h_BChw = self._upsample(h_BChw, side)
                f_hat_BChw.add_(self.quant_resi(k, h_BChw))
                if not last_one:
                    f_hats.append(f_hat_BChw.clone())
        else:
            pn0 = self.patch_nums[0]
            f_hat_BChw = ms_h_BChw[0].new_zeros(B, self.Cvae, pn0, pn0, dtype=torch.float32)
            for k, pn in enumerate(self.patch_nums):
                f_hat_BChw = F.interpolate(f_hat_BChw, size=(pn, pn), mode="bicubic")
                f_hat_BChw.add_(self.quant_resi(k, ms_h_BChw[k]))
                f_hats.append(f_hat_BChw)
        return f_hat_BChw if last_one else f_hats

    # ---------------------------------------------------------------------------------------
    # tokenizer training

    def forward(
        self,
        f_BChw: torch.Tensor,
        all_reduce_hits: Callable[[torch.Tensor], object] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (straight-through f_hat (B, Cvae, h, w) fp32, codebook usage per scale
        (S,) in percent, vq loss).

        vq loss = mean over scales of `beta * mse(f_hat.detach(), f) + mse(f_hat, f.detach())`,
        f_hat being the cumulative reconstruction after that scale: the first term commits the
        encoder, the second trains the codebook and the Phi convs. `all_reduce_hits`, if given,
        sums a (V,) hit-count tensor in place across processes (e.g. `dist.all_reduce`), once per
        scale; the usage EMA (`ema_vocab_hit_SV`) changes in training mode only.
        """
        f32_BChw = f_BChw.float()
        B, C, h, w = f32_BChw.shape
        with torch.autocast(device_type=f32_BChw.device.type, enabled=False):
            f_no_grad_BChw = f32_BChw.detach()
            f_rest_BChw = f_no_grad_BChw.clone()
            f_hat_BChw = torch.zeros_like(f_rest_BChw)
            loss_sum = f32_BChw.new_zeros(())
            for k, pn in enumerate(self.patch_nums):
                last = k == self.num_scales - 1
                z_BCpp = f_rest_BChw if last else F.interpolate(f_rest_BChw, (pn, pn), mode="area")
                idx_N = self.nearest_code(z_BCpp.permute(0, 2, 3, 1).reshape(-1, C))
                hits_V = idx_N.bincount(minlength=self.V).float()
                if all_reduce_hits is not None:
                    all_reduce_hits(hits_V)
                if self.training:
                    self._update_usage_ema(k, hits_V)
                h_BChw = self.embed_tokens(idx_N.view(B, pn * pn), pn)
                h_BChw = (h_BChw if last else self._upsample(h_BChw, h)).contiguous()
                h_BChw = self.quant_resi(k, h_BChw)
                f_hat_BChw = f_hat_BChw + h_BChw
                f_rest_BChw.sub_(h_BChw.detach())
                commit = F.mse_loss(f_hat_BChw.detach(), f32_BChw).mul_(self.beta)
                loss_sum = loss_sum + (commit + F.mse_loss(f_hat_BChw, f_no_grad_BChw))
            vq_loss = loss_sum * (1.0 / self.num_scales)
            f_hat_st_BChw = (f_hat_BChw.detach() - f_no_grad_BChw).add_(f32_BChw)
        if self.training:
            self.num_usage_updates += 1
        # A code counts as used when its EMA hit count reaches 8% of a uniform share of the
        # last scale's positions (all processes together: hits_V is the all-reduced count).
        margin = hits_V.sum() * (0.08 / self.V)
        usages_K = (self.ema_vocab_hit_SV >= margin).float().mean(dim=1) * 100
        return f_hat_st_BChw, usages_K, vq_loss

    @torch.no_grad()
    def _update_usage_ema(self, scale_index: int, hits_V: torch.Tensor) -> None:
        row_V = self.ema_vocab_hit_SV[scale_index]
        if self.num_usage_updates == 0:
            row_V.copy_(hits_V)
        elif self.num_usage_updates < 100:
            row_V.mul_(0.9).add_(hits_V, alpha=0.1)
        else:
            row_V.mul_(0.99).add_(hits_V, alpha=0.01)

    # ---------------------------------------------------------------------------------------
    # loading

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # A checkpoint trained with another number of scales has another number of usage rows.
        # They are statistics only, so keep ours; swap into a new dict, never the caller's.
        key = prefix + "ema_vocab_hit_SV"
        saved = state_dict.get(key)
        if saved is not None and saved.shape[0] != self.ema_vocab_hit_SV.shape[0]:
            state_dict = {**state_dict, key: self.ema_vocab_hit_SV}
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
