"""ImageFolder dataset with the official VAR transforms, written with PIL + numpy (no torchvision).

Layout: ``root/<class_name>/**/<image>``; sorted class-folder names give the class indices, as in
torchvision's ``DatasetFolder``. Transforms (reference §5.1):

* train: resize the shorter side to ``round(mid_reso * final_reso)`` with LANCZOS (mid_reso 1.125:
  288 for 256 px), random crop ``final_reso``, optional horizontal flip, then ``x/255 * 2 - 1``;
* eval: the same resize, then a centre crop.

The random crop and flip of item ``i`` in epoch ``e`` are a pure function of ``(seed, e, i)``, so a
resumed run sees the same augmentations as an uninterrupted one; call ``set_epoch`` every epoch.

Bad data never stops training: an undecodable file is logged once, recorded in ``bad_files`` and
replaced by the next good index (deterministically). With ``num_workers > 0`` each worker process
keeps its own ``bad_files``; the warnings in the log are the complete record.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# What a broken or hostile file raises while PIL opens or decodes it.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


# ---------------------------------------------------------------------------------------------
# Loading and transforms
# ---------------------------------------------------------------------------------------------


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB.

    16-bit grey (``I;16*``, and ``I`` as PIL opens 16-bit PNGs) is scaled by 1/257 instead of
    clipped. Images with transparency are composited onto white: ``convert('RGB')`` alone (the
    official loader) would expose whatever colour hides under transparent pixels, often black.
    """
    if img.mode.startswith("I;16") or img.mode == "I":
        grey = np.asarray(img).astype(np.float64) / 257.0
        img = Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8), mode="L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Open and fully decode ``path`` as RGB; raises one of PIL's decode errors if it is broken."""
    with Image.open(path) as img:
        img.load()  # decode now, so a truncated file fails here and not later in a transform
        return to_rgb(img)


def resize_shorter_side(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` (LANCZOS), like torchvision ``Resize(int)``."""
    width, height = img.size
    short, long = min(width, height), max(width, height)
    new_long = int(size * long / short)  # torchvision truncates
    new_size = (size, new_long) if width <= height else (new_long, size)
    if new_size == img.size:
        return img
    return img.resize(new_size, Image.Resampling.LANCZOS)


def center_crop_box(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of torchvision's ``CenterCrop(size)``."""
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def random_crop_box(
    height: int, width: int, size: int, rng: np.random.Generator
) -> tuple[int, int]:
    """(top, left) of a uniformly random ``size`` x ``size`` crop."""
    return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))


def to_tensor_pm1(img_HW3: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1], with the official float steps."""
    x_3HW = img_HW3.transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    return torch.from_numpy(np.ascontiguousarray(x_3HW + x_3HW - np.float32(1.0)))


# ---------------------------------------------------------------------------------------------
# Scanning
# ---------------------------------------------------------------------------------------------


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _images_under(folder: Path) -> list[Path]:
    """Image files below ``folder`` (recursive, hidden files skipped), in a stable order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        found.extend(Path(dirpath, name) for name in sorted(filenames) if _is_image(name))
    return found


def _scan(root: Path) -> tuple[list[str], list[tuple[Path, int]], list[str]]:
    """-> (class names, (path, class index) samples, names of classes without images)."""
    expected = f"expected {root}/<class_name>/<image>, with images ending in {IMAGE_EXTENSIONS}"
    if not root.is_dir():
        raise ValueError(f"image folder root {root} is not an existing directory; {expected}.")
    entries = [e for e in os.scandir(root) if not e.name.startswith(".")]
    if not entries:
        raise ValueError(f"image folder root {root} is empty; {expected}.")
    classes = sorted(e.name for e in entries if e.is_dir())
    if not classes:
        raise ValueError(
            f"image folder root {root} has no class sub-folders ({len(entries)} files at the top "
            f"level); {expected}. Move the images into one sub-folder per class."
        )
    samples, empty = [], []
    for index, name in enumerate(classes):
        paths = _images_under(root / name)
        if not paths:
            empty.append(name)
        samples.extend((path, index) for path in paths)
    if not samples:
        raise ValueError(
            f"image folder root {root} has {len(classes)} class folders but no images; {expected}."
        )
    return classes, samples, empty


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FolderSummary:
    root: str
    images: int  # files found with an image extension
    classes: int
    empty_classes: tuple[str, ...]  # class folders without images (they keep their index)
    skipped: int  # files that failed to decode so far (in this process)


class ImageFolder(torch.utils.data.Dataset):
    """``root/<class>/<image>`` -> (image (3, S, S) float in [-1, 1], class index)."""

    def __init__(
        self,
        root: str | Path,
        image_size: int = 256,
        *,
        train: bool = True,
        mid_reso: float = 1.125,
        hflip: bool = False,
        seed: int = 0,
    ) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}.")
        if mid_reso < 1.0:
            raise ValueError(
                f"mid_reso must be >= 1 (the resize must not be smaller than the crop), "
                f"got {mid_reso}; the official value is 1.125."
            )
        self.root = Path(root)
        self.image_size = int(image_size)
        self.resize_to = round(mid_reso * image_size)
        self.train, self.hflip, self.seed = train, hflip, int(seed)
        self.epoch = 0
        self.classes, self.samples, self.empty_classes = _scan(self.root)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        self.targets = [label for _, label in self.samples]
        self.bad_files: list[Path] = []
        self._bad_indices: set[int] = set()
        for name in self.empty_classes:
            logger.warning("class folder %s has no images; it keeps its index", self.root / name)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def set_epoch(self, epoch: int) -> None:
        """Pick the augmentation stream: item i of epoch e always gets the same crop and flip."""
        self.epoch = int(epoch)

    def summary(self) -> FolderSummary:
        return FolderSummary(
            root=str(self.root),
            images=len(self.samples),
            classes=len(self.classes),
            empty_classes=tuple(self.empty_classes),
            skipped=len(self.bad_files),
        )

    def transform(self, img: Image.Image, index: int) -> torch.Tensor:
        """Official train/eval transform of one image; randomness from (seed, epoch, index)."""
        img = resize_shorter_side(img, self.resize_to)
        width, height = img.size
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            top, left = random_crop_box(height, width, self.image_size, rng)
            flip = bool(rng.random() < 0.5) and self.hflip
        else:
            top, left = center_crop_box(height, width, self.image_size)
            flip = False
        arr = np.asarray(img.crop((left, top, left + self.image_size, top + self.image_size)))
        return to_tensor_pm1(arr[:, ::-1] if flip else arr)

    def _load_good(self, index: int) -> tuple[Image.Image, int]:
        """Decode item ``index``, or the next good one after it (wrapping around)."""
        for offset in range(len(self.samples)):
            candidate = (index + offset) % len(self.samples)
            if candidate in self._bad_indices:
                continue
            path, label = self.samples[candidate]
            try:
                return load_rgb(path), label
            except _DECODE_ERRORS as err:
                self._bad_indices.add(candidate)
                self.bad_files.append(path)
                logger.warning(
                    "skipping unreadable image %s (%s: %s)", path, type(err).__name__, err
                )
        raise RuntimeError(f"none of the {len(self.samples)} images under {self.root} decode.")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self.samples):
            raise IndexError(f"index {index} out of range for {len(self.samples)} images.")
        img, label = self._load_good(index)
        return self.transform(img, index), label
