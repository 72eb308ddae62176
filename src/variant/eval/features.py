"""Feature extractors (Inception via torch-fidelity, the built-in metric network) and image sources.

An extractor maps uint8 images (B, 3, H, W) to (features (B, F), logits (B, C)) as float32.
- `InceptionExtractor`: torch-fidelity's TF-compatible InceptionV3 ('inception-v3-compat'): pool_3
  features (F = 2048) and 'logits_unbiased' (C = 1008), the features of the ADM suite and of
  torch-fidelity's FID/IS. torch-fidelity (and torchvision, which it imports) is an optional extra.
- `MetricNetExtractor`: the Shapes-10 classifier shipped with the package (see metric_net).

An image source is a folder of images (searched recursively, sorted by path), an ADM `.npz` batch
(`arr_0`), or an array/tensor: uint8 (N, H, W, 3) or float (N, 3, H, W) in [0, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..images import to_uint8
from .metric_net import load_metric_net
from .npz import check_image_batch, iter_npz_batches

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
# torch-fidelity's download name, and pytorch-fid's name for the same converted TF weights.
INCEPTION_FILES = ("weights-inception-2015-12-05-6726825d.pth",
                   "pt_inception-2015-12-05-6726825d.pth")


class MetricNetExtractor:
    """Features and logits of the built-in Shapes-10 metric network."""

    labels_are_classes = True  # its logits index the generator's classes

    def __init__(self, directory: str | Path | None = None, device="cpu"):
        self.net = load_metric_net(directory, device)
        self.device = torch.device(device)
        self.name = "metric-net"
        self.feature_dim = self.net.config.feature_dim
        self.num_classes = self.net.config.num_classes

    @torch.no_grad()
    def __call__(self, images_B3HW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, logits = self.net(images_B3HW)
        return feats.float().cpu(), logits.float().cpu()


def inception_weight_candidates() -> list[Path]:
    """Where the Inception weights are looked for: torch hub's checkpoint folder, both names."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return [hub / name for name in INCEPTION_FILES]


def _missing_weights_message(reason: str) -> str:
    places = ", ".join(str(p) for p in inception_weight_candidates())
    return (f"the InceptionV3 weights are not available ({reason}). Download {INCEPTION_URL} "
            f"on a machine with internet access and either put it at {places.split(', ')[0]} "
            "(torch hub's cache; $TORCH_HOME moves it) or pass --inception-weights PATH. "
            f"Looked in: {places}.")


def _import_torch_fidelity():
    try:
        # lazy: torch-fidelity is an optional extra ('variant[eval]')
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as err:
        raise ValueError(
            "--metric inception needs torch-fidelity (and torchvision); install them with "
            "`pip install 'variant[eval]'` (a torchvision build matching your torch), or use "
            f"--metric builtin for the built-in dataset. Import error: {err}") from err
    return FeatureExtractorInceptionV3


class InceptionExtractor:
    """torch-fidelity's InceptionV3 with weights from `weights`, the hub cache, or a download."""

    labels_are_classes = False  # 1008 TF classes, not the generator's class ids
    feature_dim = 2048
    num_classes = 1008

    def __init__(self, weights: str | Path | None = None, device="cpu",
                 allow_download: bool = True):
        extractor_cls = _import_torch_fidelity()
        path = self._find_weights(weights)
        if path is None and not allow_download:
            raise ValueError(_missing_weights_message("not found and downloading is off"))
        weights_arg = None if path is None else str(path)  # None: torch-fidelity downloads
        try:
            model = extractor_cls("inception-v3-compat", ["2048", "logits_unbiased"],
                                  feature_extractor_weights_path=weights_arg)
        except (OSError, RuntimeError) as err:  # URLError is an OSError
            raise ValueError(_missing_weights_message(
                f"{'loading ' + str(path) if path else 'download'} failed: {err}")) from err
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.name = "inception-v3-compat"
        self.weights = path

    @staticmethod
    def _find_weights(weights: str | Path | None) -> Path | None:
        if weights is not None:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise ValueError(_missing_weights_message(f"--inception-weights {path} does not "
                                                          "exist"))
            return path
        return next((p for p in inception_weight_candidates() if p.is_file()), None)

    @torch.no_grad()
    def __call__(self, images_B3HW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images_B3HW.dtype != torch.uint8:
            raise ValueError("the Inception extractor takes uint8 images in [0, 255].")
        feats, logits = self.model(images_B3HW.to(self.device))
        return feats.float().cpu(), logits.float().cpu()


def build_extractor(metric: str, *, device="cpu", inception_weights=None, metric_net=None):
    if metric == "builtin":
        return MetricNetExtractor(metric_net, device)
    if metric == "inception":
        return InceptionExtractor(inception_weights, device)
    raise ValueError(f"unknown metric {metric!r}; use 'builtin' (Shapes-10 metric network) or "
                     "'inception' (torch-fidelity InceptionV3, the FID/IS of the papers).")


# ---------------------------------------------------------------- image sources
def list_image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    return files


def _image_size_of_file(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size[1], img.size[0]


def source_info(source) -> tuple[int, int, int]:
    """(N, H, W) of an image source, read cheaply (first image of a folder)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            files = list_image_files(path)
            return (len(files), *_image_size_of_file(files[0]))
        if path.suffix == ".npz":
            return check_image_batch(path)
        raise ValueError(f"{path} is neither an image folder nor an .npz file.")
    array = _as_uint8_NHW3(source)
    return array.shape[0], array.shape[1], array.shape[2]


def _as_uint8_NHW3(images) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        if images.dtype == torch.uint8:
            images = images.cpu().numpy()
            images = images.transpose(0, 2, 3, 1) if images.shape[1] == 3 else images
        else:
            images = to_uint8(images)
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError("images must be uint8 (N, H, W, 3), uint8 (N, 3, H, W) or float "
                         f"(N, 3, H, W) in [0, 1]; got {images.dtype} {images.shape}.")
    return images


def iter_image_batches(source, batch_size: int = 100) -> Iterator[np.ndarray]:
    """uint8 (B, H, W, 3) batches of a source; every image must have the first image's size."""
    if isinstance(source, (str, Path)) and Path(source).suffix == ".npz":
        yield from iter_npz_batches(source, "arr_0", batch_size)
        return
    if isinstance(source, (str, Path)):
        files = list_image_files(Path(source))
        expected = None
        for start in range(0, len(files), batch_size):
            batch = []
            for f in files[start:start + batch_size]:
                with Image.open(f) as img:
                    array = np.asarray(img.convert("RGB"))
                expected = expected or array.shape
                if array.shape != expected:
                    raise ValueError(f"{f} is {array.shape[1]}x{array.shape[0]} but {files[0]} is "
                                     f"{expected[1]}x{expected[0]}; a set must have one size.")
                batch.append(array)
            yield np.stack(batch)
        return
    images = _as_uint8_NHW3(source)
    for start in range(0, images.shape[0], batch_size):
        yield images[start:start + batch_size]


def extract_features(extractor, source, batch_size: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, F), logits (N, C)) float32 of every image of `source`."""
    feats, logits = [], []
    for batch in iter_image_batches(source, batch_size):
        f, lg = extractor(torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2))
        feats.append(f.numpy())
        logits.append(lg.numpy())
    return np.concatenate(feats), np.concatenate(logits)
