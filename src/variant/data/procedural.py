"""Shapes-10: the built-in procedural, class-conditional image dataset (no downloads).

Why it looks the way it does. VARiant rests on a *scale-depth asymmetry*: the early, coarse scales
fix the global layout and the class, the late, fine scales only add detail. A toy dataset can show
that asymmetry only if its images are built the same way, so every image is two independent layers:

* **Global structure decides the class.** Each class is one layout drawn with soft (anti-aliased)
  signed-distance shapes and its own two-colour scheme: a big disc, two bars, a ring, a triangle,
  a 2x2 checker of quadrants, a cross, a filled square, twin discs, a diagonal split and a square
  frame. All of them span most of the canvas, so the class is visible at 1/16 resolution (4x4
  pixels at 64 px). Per image the layout moves (centre +-0.25 of the half-width), scales
  (x0.8-1.2), rotates (over a full symmetry period for symmetric layouts, +-30 degrees for the
  others) and its colours jitter in hue, saturation and value; a faint linear shading adds coarse
  variation that carries no class information.
* **Fine texture carries no class information.** On top, every image gets a luminance texture with
  a period of 2-4 pixels whatever the image side: stripes of random orientation, a crosshatch,
  white noise or a dot grid, with random phase and amplitude. The texture is drawn from the same
  distribution for every class and is added equally to all three channels.

So a classifier that sees only a 4x4 area-average of an image is far above chance, while one that
sees only the high-pass residual (image minus its blur) is near chance; ``tests/data`` checks both.
At 64 px a nearest-centroid classifier scores about 98% on 4x4 RGB averages, about 69% on 4x4
luminance with colour and contrast normalised away (layout alone), and about 17% on the residual
after a Gaussian blur of sigma 1 px (chance: 10%).
Image ``i`` is a pure function of ``(seed, i)`` (``numpy.random.default_rng([seed, i])``) and its
label is ``i % num_classes``, so the classes are balanced and any subset can be rendered on its own.
"""

from __future__ import annotations

import colorsys
import functools
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = (
    "disc", "two_bars", "ring", "triangle", "checker",
    "cross", "square", "twin_discs", "split", "frame",
)  # fmt: skip

# (background, foreground) RGB in [0, 1]; every class has its own scheme.
_SCHEMES: tuple[tuple[tuple[float, float, float], tuple[float, float, float]], ...] = (
    ((0.10, 0.15, 0.45), (0.95, 0.60, 0.15)),  # disc: orange on navy
    ((0.80, 0.85, 0.75), (0.35, 0.15, 0.45)),  # two_bars: purple on pale green
    ((0.08, 0.08, 0.08), (0.20, 0.85, 0.90)),  # ring: cyan on black
    ((0.95, 0.92, 0.65), (0.80, 0.15, 0.15)),  # triangle: red on pale yellow
    ((0.20, 0.65, 0.25), (0.85, 0.25, 0.75)),  # checker: green / magenta quadrants
    ((0.15, 0.20, 0.30), (0.95, 0.95, 0.70)),  # cross: cream on slate
    ((0.15, 0.50, 0.50), (0.95, 0.65, 0.75)),  # square: pink on teal
    ((0.45, 0.30, 0.15), (0.60, 0.80, 0.95)),  # twin_discs: light blue on brown
    ((0.20, 0.35, 0.85), (0.95, 0.85, 0.20)),  # split: blue / yellow halves
    ((0.92, 0.92, 0.92), (0.10, 0.40, 0.20)),  # frame: dark green on white
)
# Largest random rotation per class, in degrees: a full symmetry period where the layout has one
# (disc, ring, triangle, cross, square, frame), so their edges land anywhere; less for the others.
_MAX_ROTATION = (180.0, 30.0, 180.0, 60.0, 30.0, 45.0, 45.0, 30.0, 30.0, 45.0)
MAX_CLASSES = len(CLASS_NAMES)


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1], each (size, size) float32; y grows downwards."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(t, t, indexing="ij")
    return x, y


def _box(u: np.ndarray, v: np.ndarray, half_u: float, half_v: float) -> np.ndarray:
    """Signed distance to an axis-aligned box centred at the origin."""
    du, dv = np.abs(u) - half_u, np.abs(v) - half_v
    outside = np.hypot(np.maximum(du, 0.0), np.maximum(dv, 0.0))
    return outside + np.minimum(np.maximum(du, dv), 0.0)


def _triangle(u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    """Signed distance to an upward-pointing equilateral triangle (Quilez's formula)."""
    k = np.sqrt(3.0)
    p, q = np.abs(u) - radius, -v + radius / k
    flip = p + k * q > 0.0
    p, q = np.where(flip, (p - k * q) / 2.0, p), np.where(flip, (-k * p - q) / 2.0, q)
    p = p - np.clip(p, -2.0 * radius, 0.0)
    return -np.hypot(p, q) * np.sign(q)


def _shape_field(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance of the class layout in layout units (< 0 is foreground)."""
    if label == 0:
        return np.hypot(u, v) - 0.6
    if label == 1:
        return np.minimum(_box(u, v - 0.38, 0.75, 0.16), _box(u, v + 0.38, 0.75, 0.16))
    if label == 2:
        return np.abs(np.hypot(u, v) - 0.55) - 0.15
    if label == 3:
        return _triangle(u, v - 0.1, 0.8)
    if label == 4:  # the sign of u*v picks the quadrant; its distance is min(|u|, |v|)
        return np.sign(u * v) * np.minimum(np.abs(u), np.abs(v))
    if label == 5:
        return np.minimum(_box(u, v, 0.75, 0.18), _box(u, v, 0.18, 0.75))
    if label == 6:
        return _box((u + v) / np.sqrt(2.0), (v - u) / np.sqrt(2.0), 0.5, 0.5)
    if label == 7:
        return np.minimum(np.hypot(u - 0.48, v) - 0.33, np.hypot(u + 0.48, v) - 0.33)
    if label == 8:
        return (u - v) / np.sqrt(2.0)
    if label == 9:
        return np.abs(_box(u, v, 0.58, 0.58)) - 0.13
    raise ValueError(f"label must be in [0, {MAX_CLASSES}), got {label}.")


def _jitter_colour(rgb: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    h = (h + rng.uniform(-0.04, 0.04)) % 1.0
    s = float(np.clip(s * rng.uniform(0.85, 1.15), 0.0, 1.0))
    v = float(np.clip(v * rng.uniform(0.85, 1.15), 0.0, 1.0))
    return np.asarray(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Zero-mean luminance texture (size, size), period 2-4 pixels, the same for every class."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    kind = int(rng.integers(4))
    period = rng.uniform(2.2, 4.0)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    theta = rng.uniform(0.0, np.pi)
    along = xx * np.cos(theta) + yy * np.sin(theta)
    across = -xx * np.sin(theta) + yy * np.cos(theta)
    if kind == 0:  # stripes
        tex = np.sin(2.0 * np.pi * along / period + phase)
    elif kind == 1:  # crosshatch
        tex = np.sin(2.0 * np.pi * along / period + phase) * np.sin(2.0 * np.pi * across / period)
        tex = tex * 1.6
    elif kind == 2:  # white noise
        tex = rng.standard_normal((size, size)).astype(np.float32) * 0.7
    else:  # dot grid
        dots = np.cos(2.0 * np.pi * along / period + phase) * np.cos(2.0 * np.pi * across / period)
        tex = (dots > 0.4).astype(np.float32)
        tex = (tex - tex.mean()) * 2.0
    return tex * np.float32(rng.uniform(0.09, 0.18))


def render(label: int, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Draw one image of class ``label`` as uint8 (size, size, 3), consuming randomness from rng."""
    if not 0 <= label < MAX_CLASSES:
        raise ValueError(f"label must be in [0, {MAX_CLASSES}), got {label}.")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}.")
    x, y = _grid(size)
    cx, cy = rng.uniform(-0.25, 0.25, size=2)
    scale = rng.uniform(0.8, 1.2)
    angle = np.deg2rad(rng.uniform(-1.0, 1.0) * _MAX_ROTATION[label])
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    dx, dy = x - np.float32(cx), y - np.float32(cy)
    u = (cos * dx + sin * dy) / np.float32(scale)
    v = (-sin * dx + cos * dy) / np.float32(scale)
    # Soft mask: about one pixel of anti-aliasing (size / 2 pixels per unit of x).
    dist = _shape_field(label, u, v) * np.float32(scale * size / 2.0)
    mask = np.clip(0.5 - dist, 0.0, 1.0)[..., None]
    background, foreground = (_jitter_colour(c, rng) for c in _SCHEMES[label])
    img = background * (1.0 - mask) + foreground * mask  # (size, size, 3)
    gx, gy = rng.uniform(-0.06, 0.06, size=2)
    img = img + (gx * x + gy * y)[..., None]
    img = img + _texture(rng, size)[..., None]
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class ProceduralImages(torch.utils.data.Dataset):
    """Shapes-10 as a map-style dataset: item i -> (image (3, H, W) float in [-1, 1], label int)."""

    def __init__(
        self, num_images: int, image_size: int = 64, seed: int = 0, num_classes: int = 10
    ) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}.")
        if not 2 <= num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be in [2, {MAX_CLASSES}], got {num_classes}.")
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8 pixels, got {image_size}.")
        self.num_images = int(num_images)
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.num_classes = int(num_classes)
        self.class_names: tuple[str, ...] = CLASS_NAMES[:num_classes]

    def __len__(self) -> int:
        return self.num_images

    def label_of(self, index: int) -> int:
        return index % self.num_classes

    def render_uint8(self, index: int) -> np.ndarray:
        """Image ``index`` as uint8 (H, W, 3); a pure function of (seed, index)."""
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images.")
        rng = np.random.default_rng([self.seed, index])
        return render(self.label_of(index), rng, self.image_size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        # numpy, not torch: small tensor ops pay torch's intra-op thread start-up on every item.
        # x/255 then 2x-1, the same float32 steps as the official ToTensor + normalize_01_into_pm1.
        img_3HW = self.render_uint8(index).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        img_3HW = img_3HW + img_3HW - np.float32(1.0)
        return torch.from_numpy(np.ascontiguousarray(img_3HW)), self.label_of(index)


def save_as_image_folder(
    root: str | Path,
    num_per_class: int,
    *,
    image_size: int = 64,
    seed: int = 0,
    num_classes: int = 10,
) -> Path:
    """Write ``num_per_class`` PNGs per class into ``root/<class_name>/`` (ImageFolder layout).

    The images are items ``0 .. num_per_class * num_classes - 1`` of
    ``ProceduralImages(..., image_size, seed, num_classes)``, so they match the in-memory dataset.
    """
    if num_per_class < 1:
        raise ValueError(f"num_per_class must be >= 1, got {num_per_class}.")
    root = Path(root)
    dataset = ProceduralImages(num_per_class * num_classes, image_size, seed, num_classes)
    for name in dataset.class_names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for index in range(len(dataset)):
        name = dataset.class_names[dataset.label_of(index)]
        Image.fromarray(dataset.render_uint8(index)).save(root / name / f"{index:06d}.png")
    logger.info("wrote %d Shapes-10 images of %d px to %s", len(dataset), image_size, root)
    return root
