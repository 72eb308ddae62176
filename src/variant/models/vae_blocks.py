"""Convolutional encoder and decoder of the multi-scale VQVAE (official `vae_ch160v4096z32` layout).

Module and parameter names are the official state-dict keys (`conv_in`, `down.{i}.block.{j}`,
`down.{i}.attn.{j}`, `down.{i}.downsample.conv`, `mid.block_1`, `mid.attn_1`, `mid.block_2`,
`up.{i}.block.{j}`, `up.{i}.upsample.conv`, `nin_shortcut`, `norm_out`, `conv_out`), so official
checkpoints load with `strict=True`.

Shape legend (the package's, see variant/__init__.py):
    B batch, C channels, H/W image or feature height/width, N = H*W positions,
    Cvae latent channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORM_GROUPS = 32
NORM_EPS = 1e-6


def group_norm(num_channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(NORM_GROUPS, num_channels, eps=NORM_EPS, affine=True)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)


def conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)



def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU on a fresh normalisation output; in place when no graph is recorded (sampling),
    which saves allocating (and page-faulting) a full-resolution activation per call."""
    return F.silu(x, inplace=not torch.is_grad_enabled())

class ResnetBlock(nn.Module):
    """`shortcut(x) + conv2(dropout(silu(norm2(conv1(silu(norm1(x)))))))`.

    The 1x1 `nin_shortcut` exists only when the channel count changes (no keys otherwise).
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 1e-6 else nn.Identity()
        self.conv2 = conv3x3(out_channels, out_channels)
        self.nin_shortcut = (
            conv1x1(in_channels, out_channels) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        h_BCHW = self.conv1(silu(self.norm1(x_BCHW)))
        h_BCHW = self.conv2(self.dropout(silu(self.norm2(h_BCHW))))
        return self.nin_shortcut(x_BCHW) + h_BCHW


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, with one fused `qkv` 1x1 conv.

    The output channels of `qkv` are ordered [q | k | v]; logits are scaled by C^-1/2.
    Plain `bmm` + softmax (not SDPA) on purpose: it reproduces the official rounding, and a
    changed rounding here can flip near-tied codebook lookups downstream.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = conv1x1(channels, 3 * channels)
        self.proj_out = conv1x1(channels, channels)
        self.logit_scale = channels**-0.5

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x_BCHW.shape
        q_BCN, k_BCN, v_BCN = self.qkv(self.norm(x_BCHW)).reshape(B, 3, C, H * W).unbind(1)
        q_BNC = q_BCN.transpose(1, 2).contiguous()
        attn_BNN = torch.bmm(q_BNC, k_BCN.contiguous()).mul_(self.logit_scale)
        attn_BNN = F.softmax(attn_BNN, dim=2)
        # out[c, i] = sum_j v[c, j] attn[i, j]
        out_BCN = torch.bmm(v_BCN.contiguous(), attn_BNN.transpose(1, 2).contiguous())
        return x_BCHW + self.proj_out(out_BCN.view(B, C, H, W))


class Downsample2x(nn.Module):
    """Zero-pad right and bottom by one, then a 3x3 stride-2 conv without padding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x_BCHW, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample2x(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv3x3(channels, channels)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x_BCHW, scale_factor=2, mode="nearest"))


class MidBlock(nn.Module):
    """ResnetBlock, AttnBlock, ResnetBlock at the lowest resolution."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x_BCHW)))


class Level(nn.Module):
    """One resolution level: res-blocks (each followed by attention if `use_attn`), then an
    optional resampler stored under `resample_name` (`downsample` or `upsample`)."""

    def __init__(
        self,
        channels: list[int],
        *,
        use_attn: bool,
        resample: nn.Module | None,
        resample_name: str,
        dropout: float,
    ) -> None:
        super().__init__()
        pairs = list(zip(channels[:-1], channels[1:]))
        self.block = nn.ModuleList(ResnetBlock(i, o, dropout) for i, o in pairs)
        self.attn = nn.ModuleList(AttnBlock(o) for _, o in pairs) if use_attn else nn.ModuleList()
        self.resample_name = resample_name
        if resample is not None:
            self.add_module(resample_name, resample)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        for index, block in enumerate(self.block):
            x_BCHW = block(x_BCHW)
            if len(self.attn):
                x_BCHW = self.attn[index](x_BCHW)
        resample = getattr(self, self.resample_name, None)
        return x_BCHW if resample is None else resample(x_BCHW)


class Encoder(nn.Module):
    """Image (B, 3, H, W) -> latent (B, Cvae, H / 2^(levels-1), W / 2^(levels-1)).

    Level i has `num_res_blocks` blocks at width `ch * ch_mult[i]` and a Downsample2x except at
    the last (lowest-resolution) level, which instead has an AttnBlock after every block.
    """

    def __init__(
        self,
        *,
        ch: int,
        ch_mult: tuple[int, ...],
        num_res_blocks: int,
        z_channels: int,
        dropout: float = 0.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.conv_in = conv3x3(in_channels, ch)
        last = len(ch_mult) - 1
        levels = []
        width = ch
        for index, mult in enumerate(ch_mult):
            widths = [width] + [ch * mult] * num_res_blocks
            width = widths[-1]
            levels.append(
                Level(
                    widths,
                    use_attn=index == last,
                    resample=Downsample2x(width) if index != last else None,
                    resample_name="downsample",
                    dropout=dropout,
                )
            )
        self.down = nn.ModuleList(levels)
        self.mid = MidBlock(width, dropout)
        self.norm_out = group_norm(width)
        self.conv_out = conv3x3(width, z_channels)

    def forward(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        h_BCHW = self.conv_in(img_B3HW)
        for level in self.down:
            h_BCHW = level(h_BCHW)
        h_BCHW = self.mid(h_BCHW)
        return self.conv_out(silu(self.norm_out(h_BCHW)))


class Decoder(nn.Module):
    """Latent (B, Cvae, h, w) -> image (B, 3, h * 2^(levels-1), w * 2^(levels-1)), unclamped.

    `up[i]` mirrors encoder level i with `num_res_blocks + 1` blocks; levels run from the last
    (lowest resolution, with attention after every block) to `up[0]`, each but `up[0]`
    followed by an Upsample2x.
    """

    def __init__(
        self,
        *,
        ch: int,
        ch_mult: tuple[int, ...],
        num_res_blocks: int,
        z_channels: int,
        dropout: float = 0.0,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        last = len(ch_mult) - 1
        width = ch * ch_mult[last]
        self.conv_in = conv3x3(z_channels, width)
        self.mid = MidBlock(width, dropout)
        levels: list[Level] = []
        for index in reversed(range(len(ch_mult))):
            widths = [width] + [ch * ch_mult[index]] * (num_res_blocks + 1)
            width = widths[-1]
            level = Level(
                widths,
                use_attn=index == last,
                resample=Upsample2x(width) if index != 0 else None,
                resample_name="upsample",
                dropout=dropout,
            )
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(width)
        self.conv_out = conv3x3(width, out_channels)

    def forward(self, z_BCHW: torch.Tensor) -> torch.Tensor:
        h_BCHW = self.mid(self.conv_in(z_BCHW))
        for level in reversed(self.up):
            h_BCHW = level(h_BCHW)
        return self.conv_out(silu(self.norm_out(h_BCHW)))
