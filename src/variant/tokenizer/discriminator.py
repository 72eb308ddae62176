"""PatchGAN discriminator (pix2pix / VQGAN `NLayerDiscriminator` shape) for tokenizer training.

Each output logit judges one receptive-field patch of the image as real or reconstructed.
GroupNorm replaces the original BatchNorm so the logits of one image never depend on the rest of
the batch (no running statistics to synchronise or to checkpoint).

Shape legend (the package's, see variant/__init__.py): B batch, C channels, H/W height/width,
h/w height/width of the patch grid.
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4) or 1, channels)


class PatchDiscriminator(nn.Module):
    """`num_layers` stride-2 4x4 convs (widths `channels * min(2^n, 8)`), one stride-1 conv and a
    1-channel stride-1 conv: (B, 3, H, W) -> logits (B, 1, h, w)."""

    def __init__(self, *, in_channels: int = 3, channels: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        if num_layers < 1 or channels < 4:
            raise ValueError(f"need num_layers >= 1 and channels >= 4, got {num_layers}, "
                             f"{channels}.")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1),
                                   nn.LeakyReLU(0.2)]
        width = channels
        for n in range(1, num_layers + 1):
            out = channels * min(2**n, 8)
            stride = 2 if n < num_layers else 1
            layers += [nn.Conv2d(width, out, 4, stride, 1, bias=False), _norm(out),
                       nn.LeakyReLU(0.2)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """VQGAN's init: conv weights N(0, 0.02), norm weights N(1, 0.02), zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.GroupNorm):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, img_B3HW: torch.Tensor) -> torch.Tensor:
        return self.main(img_B3HW)
