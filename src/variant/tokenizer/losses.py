"""Tokenizer training losses: reconstruction, LPIPS perceptual distance, hinge GAN terms.

LPIPS (Zhang et al. 2018, the VGG variant): both images are shifted/scaled to the ImageNet
statistics LPIPS uses, passed through VGG16's convolutional trunk, and at the five ReLU taps
(relu1_2, relu2_2, relu3_3, relu4_3, relu5_3) the channel-normalised features are subtracted,
squared, weighted per channel by a learned 1x1 conv ("lin" layer), averaged over space and summed.
The weights are never downloaded: the user supplies files holding
- the VGG16 trunk, torchvision layout (`features.{0,2,5,...,28}.{weight,bias}`, e.g.
  `vgg16-397923af.pth`) or the `lpips` package layout (`net.slice{1..5}.{i}.{weight,bias}`), and
- the five lin layers (`lin{0..4}.model.1.weight`, e.g. the `lpips` package's `weights/v0.1/vgg.pth`
  or taming-transformers' `vgg.pth`).
One file holding both (e.g. `LPIPS().state_dict()` saved from here) works as well.

Shape legend (the package's, see variant/__init__.py): B batch, C channels, H/W height/width.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..models.convert import CheckpointError, read_state_dict

# VGG16 `features`: channel widths of the 13 convs, "M" = 2x2 max-pool (torchvision's "D" config).
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
LPIPS_TAPS = (3, 8, 15, 22, 29)  # indices in `features` of relu1_2, relu2_2, relu3_3, ...
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


def reconstruction_loss(rec_B3HW: torch.Tensor, img_B3HW: torch.Tensor, *, l1_weight: float,
                        l2_weight: float) -> torch.Tensor:
    """`l1_weight * |rec - img| + l2_weight * (rec - img)^2`, averaged, in fp32."""
    diff = rec_B3HW.float() - img_B3HW.float()
    loss = diff.new_zeros(())
    if l1_weight:
        loss = loss + l1_weight * diff.abs().mean()
    if l2_weight:
        loss = loss + l2_weight * diff.square().mean()
    return loss


class LinearHead(nn.Module):
    """LPIPS "lin" layer: a bias-free 1x1 conv to one channel (key `model.1.weight`; slot 0 is
    the dropout of the original, inactive at p = 0)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.model(x_BCHW)


class LPIPS(nn.Module):
    """LPIPS-VGG16 distance; the state dict keys are `features.*` (torchvision) + `lin{k}.*`."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for spec in VGG16_LAYERS:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, spec, 3, padding=1), nn.ReLU(inplace=False)]
                in_channels = spec
        self.features = nn.Sequential(*layers)
        for k, channels in enumerate(LPIPS_CHANNELS):
            self.add_module(f"lin{k}", LinearHead(channels))
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)

    def forward(self, x_B3HW: torch.Tensor, y_B3HW: torch.Tensor) -> torch.Tensor:
        """Distance per image (B,) between images in [-1, 1]."""
        h_x = (x_B3HW - self.shift) / self.scale
        h_y = (y_B3HW - self.shift) / self.scale
        total = x_B3HW.new_zeros(x_B3HW.shape[0])
        taps = iter(range(len(LPIPS_TAPS)))
        for index, layer in enumerate(self.features[: LPIPS_TAPS[-1] + 1]):
            h_x, h_y = layer(h_x), layer(h_y)
            if index in LPIPS_TAPS:
                k = next(taps)
                diff = (_unit(h_x) - _unit(h_y)).square()
                total = total + getattr(self, f"lin{k}")(diff).mean(dim=(1, 2, 3))
        return total


def _unit(x_BCHW: torch.Tensor) -> torch.Tensor:
    return x_BCHW / (x_BCHW.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)


def normalize_lpips_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the torchvision / lpips / taming key layouts onto `LPIPS`'s; drop unrelated keys."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.").removeprefix("perceptual_loss.")
        key = re.sub(r"^net\.slice\d\.", "features.", key)  # lpips package: global indices kept
        if re.match(r"^(features\.\d+|lin\d\.model\.1)\.", key):
            out[key] = value
    return out


def load_lpips(paths: str | Path | Sequence[str | Path]) -> LPIPS:
    """A frozen `LPIPS` from one or more user-supplied weight files (merged in order)."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    if not paths:
        raise ValueError("the perceptual loss needs weights: pass --perceptual-weights with the "
                         "VGG16 (torchvision vgg16-397923af.pth) and LPIPS lin-layer (vgg.pth) "
                         "files.")
    state: dict[str, torch.Tensor] = {}
    for path in paths:
        if not Path(path).is_file():
            raise ValueError(f"perceptual-loss weights {path} not found; pass existing files, e.g. "
                             "--perceptual-weights vgg16-397923af.pth vgg.pth.")
        state.update(normalize_lpips_keys(read_state_dict(path)))
    with torch.device("meta"):  # no random init of 14.7M weights that are overwritten anyway
        model = LPIPS()
    model = model.to_empty(device="cpu")
    model.shift.copy_(torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
    model.scale.copy_(torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or wrong:
        has_vgg = any(k.startswith("features.") for k in state)
        need = "the LPIPS lin layers (lin0..lin4, e.g. lpips' vgg.pth)" if has_vgg else (
            "the VGG16 trunk (torchvision vgg16 features.*)")
        raise CheckpointError(
            f"perceptual-loss weights {[str(p) for p in paths]} do not fit LPIPS-VGG16: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(wrong)} with other shapes "
            f"(e.g. {wrong[:3]}). Likely missing: {need}; pass all needed files."
        )
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss `mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))`, halved."""
    real = F.relu(1.0 - logits_real.float()).mean()
    return 0.5 * (real + F.relu(1.0 + logits_fake.float()).mean())


def generator_adv_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator side of the hinge GAN: `-mean(D(G(z)))`."""
    return -logits_fake.float().mean()


def adaptive_adv_weight(nll: torch.Tensor, g_loss: torch.Tensor,
                        last_layer: torch.Tensor) -> torch.Tensor:
    """VQGAN's balance: ||d nll / d w|| / (||d g_loss / d w|| + 1e-4) at the decoder's last
    weight w, clamped to [0, 1e4] and detached (the graph is kept for the real backward)."""
    (nll_grad,) = torch.autograd.grad(nll, last_layer, retain_graph=True)
    (g_grad,) = torch.autograd.grad(g_loss, last_layer, retain_graph=True)
    return (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()
