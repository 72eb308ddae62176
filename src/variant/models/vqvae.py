"""The multi-scale residual VQVAE tokenizer (official `vae_ch160v4096z32` compatible).

`VQVAE` has the official submodules `encoder`, `decoder`, `quantize`, `quant_conv` and
`post_quant_conv`, so an official checkpoint loads with `strict=True`, and the official method
names (`img_to_idxBl`, `idxBl_to_img`, `fhat_to_img`, `img_to_reconstructed_img`,
`idxBl_to_var_input`). Images are RGB in [-1, 1]; decoded images are clamped to [-1, 1].

Shape legend (the package's, see variant/__init__.py):
    B batch, H/W image height/width (both `config.image_size`), Cvae latent channels,
    h/w latent height/width (= patch_nums[-1]), pn side of one scale, l = pn*pn,
    L all tokens, V codebook size, K scales.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import nn

from variant.config import PATCH_NUMS_256, VAEConfig
from variant.models.quant import MultiScaleQuantizer
from variant.models.vae_blocks import Decoder, Encoder, conv3x3


class VQVAE(nn.Module):
    """Encoder -> quant_conv -> multi-scale quantiser -> post_quant_conv -> decoder."""

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        config = VAEConfig() if config is None else config
        self.config = config
        self.V, self.Cvae = config.V, config.Cvae
        self.downsample = config.downsample
        blocks = dict(
            ch=config.ch,
            ch_mult=config.ch_mult,
            num_res_blocks=config.num_res_blocks,
            z_channels=config.Cvae,
            dropout=config.dropout,
        )
        self.encoder = Encoder(**blocks)
        self.decoder = Decoder(**blocks)
        self.quantize = MultiScaleQuantizer(
            V=config.V,
            Cvae=config.Cvae,
            patch_nums=config.patch_nums,
            beta=config.beta,
            quant_resi=config.quant_resi,
            share_quant_resi=config.share_quant_resi,
            using_znorm=config.using_znorm,
        )
        self.quant_conv = conv3x3(config.Cvae, config.Cvae)
        self.post_quant_conv = conv3x3(config.Cvae, config.Cvae)

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return self.config.patch_nums

    def freeze(self) -> VQVAE:
        """Eval mode, no parameter gradients: the state VAR training and sampling use."""
        self.eval()
        self.requires_grad_(False)
        return self

    def check_images(self, img_B3HW: torch.Tensor) -> None:
        size = self.config.image_size
        if img_B3HW.ndim != 4 or img_B3HW.shape[1] != 3 or img_B3HW.shape[2:] != (size, size):
            raise ValueError(
                f"expected images of shape (B, 3, {size}, {size}) in [-1, 1] (RGB, side "
                f"{self.downsample} * patch_nums[-1]), got {tuple(img_B3HW.shape)}; resize or "
                "crop the images, or build the VQVAE with matching patch_nums."
            )

    def img_to_f(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        """Continuous latent f (B, Cvae, h, w) before quantisation."""
        self.check_images(img_B3HW)
        return self.quant_conv(self.encoder(img_B3HW))

    # ---------------------------------------------------------------------------------------
    # tokenizer training

    def forward(
        self,
        img_B3HW: torch.Tensor,
        all_reduce_hits: Callable[[torch.Tensor], object] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction (B, 3, H, W), unclamped; codebook usage per scale (S,)
        in percent; vq loss). Gradients reach the decoder directly and the encoder through the
        straight-through estimator and the commitment term (see `MultiScaleQuantizer.forward`).
        """
        f_hat_BChw, usages_K, vq_loss = self.quantize(self.img_to_f(img_B3HW), all_reduce_hits)
        return self.decoder(self.post_quant_conv(f_hat_BChw)), usages_K, vq_loss

    # ---------------------------------------------------------------------------------------
    # tokens <-> images

    def fhat_to_img(self, f_hat_BChw: torch.Tensor) -> torch.Tensor:
        """Decode a cumulative latent (B, Cvae, h, w) to images (B, 3, H, W) in [-1, 1]."""
        return self.decoder(self.post_quant_conv(f_hat_BChw)).clamp_(-1, 1)

    def img_to_idxBl(self, img_B3HW: torch.Tensor) -> list[torch.Tensor]:
        """Tokenise images in [-1, 1]: one LongTensor (B, pn*pn) per scale, row-major."""
        return self.quantize.f_to_idxBl_or_fhat(self.img_to_f(img_B3HW), to_fhat=False)

    def idxBl_to_img(
        self, ms_idx_Bl: Sequence[torch.Tensor], same_shape: bool = True, last_one: bool = True
    ) -> list[torch.Tensor] | torch.Tensor:
        """Decode token maps (one (B, pn*pn) per scale) to images in [-1, 1]: the final image
        if `last_one`, else one image per scale (the prefix reconstructions).
        `same_shape=False` is the official experimental progressive variant."""
        if len(ms_idx_Bl) != len(self.patch_nums):
            raise ValueError(
                f"idxBl_to_img needs all {len(self.patch_nums)} token maps "
                f"(patch_nums={self.patch_nums}), got {len(ms_idx_Bl)}."
            )
        self.quantize.check_token_maps(ms_idx_Bl, len(self.patch_nums))
        ms_h_BChw = [
            self.quantize.embed_tokens(idx_Bl, pn) for idx_Bl, pn in zip(ms_idx_Bl, self.patch_nums)
        ]
        return self.embed_to_img(ms_h_BChw, all_to_max_scale=same_shape, last_one=last_one)

    def embed_to_img(
        self, ms_h_BChw: Sequence[torch.Tensor], all_to_max_scale: bool, last_one: bool = False
    ) -> list[torch.Tensor] | torch.Tensor:
        """Decode embedded maps (one (B, Cvae, pn, pn) per scale), as `idxBl_to_img`."""
        f_hats = self.quantize.embed_to_fhat(
            ms_h_BChw, all_to_max_scale=all_to_max_scale, last_one=last_one
        )
        if last_one:
            return self.fhat_to_img(f_hats)
        return [self.fhat_to_img(f_hat_BChw) for f_hat_BChw in f_hats]

    def img_to_reconstructed_img(
        self, img_B3HW: torch.Tensor, last_one: bool = True
    ) -> list[torch.Tensor] | torch.Tensor:
        """Tokenise and decode: the full reconstruction if `last_one`, else one per prefix."""
        f_hats = self.quantize.f_to_idxBl_or_fhat(self.img_to_f(img_B3HW), to_fhat=True)
        if last_one:
            return self.fhat_to_img(f_hats[-1])
        return [self.fhat_to_img(f_hat_BChw) for f_hat_BChw in f_hats]

    def idxBl_to_var_input(self, ms_idx_Bl: Sequence[torch.Tensor]) -> torch.Tensor:
        """Teacher-forcing input of VAR, (B, L - first_l, Cvae) fp32."""
        return self.quantize.idxBl_to_var_input(ms_idx_Bl)


def build_vae(
    V: int = 4096,
    Cvae: int = 32,
    ch: int = 160,
    share_quant_resi: int = 4,
    patch_nums: Sequence[int] = PATCH_NUMS_256,
    *,
    frozen: bool = True,
    **overrides,
) -> VQVAE:
    """Build the VQVAE with the official defaults (`vae_ch160v4096z32`).

    `overrides` are further `VAEConfig` fields (`ch_mult`, `num_res_blocks`, `quant_resi`,
    `beta`, ...). Like the official builder (`test_mode=True`) the result is frozen (eval mode,
    no gradients); pass `frozen=False` to train a tokenizer.
    """
    known = {f.name for f in dataclasses.fields(VAEConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown VAEConfig fields {unknown}; known fields: {sorted(known)}.")
    config = VAEConfig(
        V=V,
        Cvae=Cvae,
        ch=ch,
        share_quant_resi=share_quant_resi,
        patch_nums=tuple(patch_nums),
        **overrides,
    )
    vae = VQVAE(config)
    return vae.freeze() if frozen else vae
