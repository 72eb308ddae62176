"""A small classifier of the built-in Shapes-10 dataset, used as an offline quality metric.

The network is five stride-2 stages (conv 3x3 + BatchNorm + ReLU, twice but in the first stage),
a global average pool and a linear head. Its softmax plays the part of Inception's logits: an
IS-like score, and the class accuracy of generated images w.r.t. their conditioning label.

Its features (FID, precision/recall) are the average-pooled activations of *all* stages (F = sum of
widths), each stage's block scaled to unit mean variance per dimension on real images
(`feature_scale`, fixed at the end of training). Why not the penultimate layer alone: Shapes-10's
fine texture carries no class information (by design), so a classifier's last layer learns to
ignore it and an FID there barely sees blurred or texture-less samples, which is exactly how
shallow late scales could fail. The early stages still respond to texture (measured on 1000 real
images vs blurred copies: 10x the real-vs-real FID with all stages, 7x with the last stage
only; docs/EVALUATION.md has the command).

It is trained on images rendered at random sizes from 16 px up to `image_size` and resized to
`image_size`, so it reads low-resolution or blurred samples; any input is resized to `image_size`.
The shipped weights live in `variant/assets/metric/` (safetensors + config.json, README with the
command that made them). Legend (the package's, see variant/__init__.py): B images, N samples,
F features, Y classes.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import config_from_dict, config_to_dict
from ..data.procedural import ProceduralImages
from ..jsonfile import read_json

log = logging.getLogger(__name__)

METRIC_ASSETS = Path(__file__).resolve().parent.parent / "assets" / "metric"
WEIGHTS_NAME = "metric_net.safetensors"
CONFIG_NAME = "config.json"
# Seeds of the dataset streams (ProceduralImages(seed=...)): disjoint from the default training
# stream (seed 0) of the generators, so the metric never saw the generator's training images.
TRAIN_SEED, VAL_SEED, REFERENCE_SEED = 1000, 1001, 1


@dataclass(frozen=True, kw_only=True)
class MetricNetConfig:
    image_size: int = 64  # every input is resized to this side
    num_classes: int = 10
    widths: tuple[int, ...] = (16, 32, 48, 64, 96)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be positive channel counts, got {self.widths}.")
        if self.image_size < 2 ** len(self.widths):
            raise ValueError(f"image_size must be >= {2 ** len(self.widths)} for "
                             f"{len(self.widths)} stride-2 stages, got {self.image_size}.")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}.")

    @property
    def feature_dim(self) -> int:
        return sum(self.widths)


def _conv(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _stage(c_in: int, c_out: int, first: bool) -> nn.Sequential:
    """Halve the side; a second conv except in the first stage (the widest maps, least use)."""
    layers = _conv(c_in, c_out, 2) + ([] if first else _conv(c_out, c_out, 1))
    return nn.Sequential(*layers)


class MetricNet(nn.Module):
    def __init__(self, config: MetricNetConfig):
        super().__init__()
        self.config = config
        widths = (3, *config.widths)
        self.stages = nn.Sequential(
            *(_stage(a, b, k == 0) for k, (a, b) in enumerate(zip(widths, widths[1:]))))
        self.head = nn.Linear(config.widths[-1], config.num_classes)
        # Per-dimension factor making each stage's block unit-variance on real images.
        self.register_buffer("feature_scale", torch.ones(config.feature_dim))

    def preprocess(self, images_B3HW: torch.Tensor) -> torch.Tensor:
        """uint8 in [0, 255] or float in [0, 1], any side -> float in [-1, 1] at image_size."""
        x = images_B3HW.to(self.head.weight.device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False)
        return x * 2.0 - 1.0

    def pooled(self, x_B3HW: torch.Tensor) -> list[torch.Tensor]:
        """Average-pooled activations of every stage, [(B, width)], of a preprocessed batch."""
        out = []
        for stage in self.stages:
            x_B3HW = stage(x_B3HW)
            out.append(x_B3HW.mean(dim=(2, 3)))
        return out

    def forward(self, images_B3HW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, F), logits (B, N)) of raw images (see `preprocess`)."""
        pooled = self.pooled(self.preprocess(images_B3HW))
        return torch.cat(pooled, dim=1) * self.feature_scale, self.head(pooled[-1])

    @torch.no_grad()
    def calibrate_feature_scale(self, images_NHW3: np.ndarray, batch_size: int = 256) -> None:
        """Set `feature_scale` so each stage's block has mean variance 1 on these real images."""
        self.feature_scale.fill_(1.0)
        feats = torch.cat([self(torch.from_numpy(images_NHW3[i:i + batch_size])
                                .permute(0, 3, 1, 2))[0]
                           for i in range(0, len(images_NHW3), batch_size)])
        var = feats.double().var(dim=0)
        scale, start = [], 0
        for width in self.config.widths:
            block = var[start:start + width].mean().clamp_min(1e-12)
            scale.append(torch.full((width,), float(block.rsqrt())))
            start += width
        self.feature_scale.copy_(torch.cat(scale))


def save_metric_net(net: MetricNet, directory: str | Path, meta: dict | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME))
    config = {"format": "variant-metric-net", "version": 1,
              "config": config_to_dict(net.config), "meta": meta or {}}
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def load_metric_net(directory: str | Path | None = None, device="cpu") -> MetricNet:
    """The metric network in `directory` (default: the one shipped with the package), eval mode."""
    directory = METRIC_ASSETS if directory is None else Path(directory)
    weights, config_path = directory / WEIGHTS_NAME, directory / CONFIG_NAME
    if not weights.is_file() or not config_path.is_file():
        raise FileNotFoundError(
            f"no metric network in {directory} (need {WEIGHTS_NAME} and {CONFIG_NAME}); reinstall "
            "the package or train one with `variant train-metric --out DIR` and pass "
            "--metric-net DIR.")
    data = read_json(config_path, "metric network config")
    net = MetricNet(config_from_dict(MetricNetConfig, data["config"]))
    net.load_state_dict(load_file(str(weights)), strict=True)
    return net.to(device).eval()


def metric_net_meta(directory: str | Path | None = None) -> dict:
    directory = METRIC_ASSETS if directory is None else Path(directory)
    return read_json(directory / CONFIG_NAME, "metric network config").get("meta", {})


# ---------------------------------------------------------------- training
def render_images(num_images: int, *, seed: int, num_classes: int, image_size: int,
                  min_render_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Shapes-10 images (N, image_size, image_size, 3) uint8 and labels (N,) int64.

    With `min_render_size`, image i is rendered at a side drawn from [min_render_size, image_size]
    (a pure function of (seed, i)) and resized to image_size, like a low-resolution sample.
    """
    dataset = ProceduralImages(num_images, image_size, seed, num_classes)
    images = np.empty((num_images, image_size, image_size, 3), np.uint8)
    sizes = np.random.default_rng([seed, 7]).integers(
        min_render_size or image_size, image_size + 1, size=num_images)
    for i in range(num_images):
        if sizes[i] == image_size:
            images[i] = dataset.render_uint8(i)
        else:
            small = ProceduralImages(num_images, int(sizes[i]), seed, num_classes).render_uint8(i)
            images[i] = np.asarray(Image.fromarray(small).resize(
                (image_size, image_size), Image.BICUBIC))
    labels = np.arange(num_images, dtype=np.int64) % num_classes
    return images, labels


@torch.no_grad()
def classify(net: MetricNet, images_NHW3: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predicted class per image (N,) for uint8 (N, H, W, 3) images."""
    preds = []
    for start in range(0, len(images_NHW3), batch_size):
        batch = torch.from_numpy(images_NHW3[start:start + batch_size]).permute(0, 3, 1, 2)
        preds.append(net(batch)[1].argmax(dim=1).cpu().numpy())
    return np.concatenate(preds)


def train_metric_net(out_dir: str | Path | None = None, *, image_size: int = 64,
                     num_classes: int = 10, num_train: int = 12000, num_val: int = 2000,
                     epochs: int = 3, batch_size: int = 128, lr: float = 3e-3,
                     min_render_size: int = 16, noise_std: float = 0.0,
                     seed: int = 0) -> tuple[MetricNet, dict]:
    """Train the metric network on rendered Shapes-10 images; save it to `out_dir` if given.

    Returns (net in eval mode, report) where the report holds the held-out accuracy, overall and
    for images rendered at full size, and the settings (written to config.json's "meta").
    """
    if epochs < 1 or num_train < batch_size:
        raise ValueError(f"need epochs >= 1 and num_train >= batch_size, got epochs={epochs}, "
                         f"num_train={num_train}, batch_size={batch_size}.")
    start = time.perf_counter()
    torch.manual_seed(seed)
    net = MetricNet(MetricNetConfig(image_size=image_size, num_classes=num_classes))
    train_x, train_y = render_images(num_train, seed=TRAIN_SEED, num_classes=num_classes,
                                     image_size=image_size, min_render_size=min_render_size)
    steps = epochs * (num_train // batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    net.train()
    step = 0
    for epoch in range(epochs):
        order = torch.randperm(num_train, generator=gen)
        for b in range(num_train // batch_size):
            idx = order[b * batch_size:(b + 1) * batch_size].numpy()
            x = net.preprocess(torch.from_numpy(train_x[idx]).permute(0, 3, 1, 2))
            if noise_std > 0:  # pixel noise of random strength up to noise_std (in [-1, 1] units)
                sigma = torch.rand(x.shape[0], 1, 1, 1, generator=gen) * noise_std
                x = x + sigma * torch.randn(x.shape, generator=gen)
            logits = net.head(net.pooled(x)[-1])
            loss = F.cross_entropy(logits, torch.from_numpy(train_y[idx]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        log.info("epoch %d/%d: loss %.4f (%.0f s)", epoch + 1, epochs, loss.item(),
                 time.perf_counter() - start)
    net.eval()
    net.calibrate_feature_scale(render_images(
        num_val, seed=VAL_SEED, num_classes=num_classes, image_size=image_size)[0])
    report = evaluate_metric_net(net, num_val, min_render_size)
    report.update(seed=seed, epochs=epochs, num_train=num_train, batch_size=batch_size, lr=lr,
                  min_render_size=min_render_size, noise_std=noise_std, train_seed=TRAIN_SEED,
                  train_seconds=round(time.perf_counter() - start, 1),
                  num_params=sum(p.numel() for p in net.parameters()))
    if out_dir is not None:
        save_metric_net(net, out_dir, report)
    return net, report


def evaluate_metric_net(net: MetricNet, num_val: int = 2000, min_render_size: int = 16) -> dict:
    """Held-out accuracy (VAL_SEED images), at mixed render sizes and at full size."""
    cfg = net.config
    report = {}
    for key, low in (("val_accuracy_mixed_sizes", min_render_size), ("val_accuracy", None)):
        x, y = render_images(num_val, seed=VAL_SEED, num_classes=cfg.num_classes,
                             image_size=cfg.image_size, min_render_size=low)
        report[key] = round(float((classify(net, x) == y).mean()), 4)
    if not math.isfinite(report["val_accuracy"]):
        raise AssertionError("metric-net evaluation produced a non-finite accuracy")
    return report
