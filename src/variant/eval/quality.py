"""Sample quality against a reference: FID, IS, precision/recall and class accuracy.

    metric = build_metric("builtin", image_size=64, num_classes=10)      # offline, CPU, seconds
    metric = build_metric("inception", "VIRTUAL_imagenet256_labeled.npz", image_size=256)
    row = metric.evaluate("samples/full", labels)                       # folder, .npz or array
    row = evaluate_quality(images, labels, reference, metric="builtin")  # one-shot

A reference is an ADM `.npz` batch (`arr_0`; its `mu`/`sigma`, if present, are ignored: FID uses
the statistics of the same extractor on both sides), an image folder, a statistics `.npz`
(`mu`, `sigma`: FID only), or for the built-in metric "builtin": Shapes-10 images rendered at the
samples' resolution (`reference_count` of them, `REFERENCE_SEED`). Building the metric checks
everything a run can get wrong (extractor, weights, reference and its resolution) so the CLI does
it before sampling anything.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_file
from .features import build_extractor, extract_features, source_info
from .fid_is import (
    feature_statistics,
    frechet_distance,
    inception_score,
    precision_recall,
    too_few_samples,
)
from .metric_net import REFERENCE_SEED, render_images
from .npz import load_statistics, npz_keys, save_statistics

log = logging.getLogger(__name__)

BUILTIN_REFERENCE = "builtin"


@dataclass(frozen=True, kw_only=True, eq=False)
class Reference:
    mu: np.ndarray  # (F,)
    sigma: np.ndarray  # (F, F)
    features: np.ndarray | None  # (M, F); None for statistics-only references
    image_size: int | None  # None when unknown (statistics without metadata)
    num_images: int | None
    source: str


class QualityMetric:
    """An extractor plus reference statistics; `evaluate` scores one set of images."""

    def __init__(self, extractor, reference: Reference, batch_size: int = 100):
        self.extractor, self.reference, self.batch_size = extractor, reference, batch_size

    @property
    def name(self) -> str:
        return self.extractor.name

    def check_images(self, num_images: int, height: int, width: int) -> list[str]:
        """ValueError if the images cannot be compared with the reference; warnings otherwise."""
        size = self.reference.image_size
        if size is not None:
            check_resolution(self.reference.source, size, size, height, width)
        notes = []
        if size is None:
            notes.append(f"the reference {self.reference.source} does not say its resolution; "
                         f"make sure it is {width}x{height} like the samples.")
        few = too_few_samples(num_images, self.extractor.feature_dim)
        if few:
            notes.append(few)
        if self.reference.features is None:
            notes.append("precision/recall need reference images, not statistics; skipped.")
        return notes

    def evaluate(self, images, labels=None, *, pr_k: int = 3) -> dict:
        """FID, IS (mean, std), precision, recall and class accuracy of a set of images."""
        n, h, w = source_info(images)
        notes = self.check_images(n, h, w)
        labels = self._check_labels(labels, n)  # before the (possibly long) feature pass
        for note in notes:
            warnings.warn(note, UserWarning, stacklevel=2)
        feats, logits = extract_features(self.extractor, images, self.batch_size)
        ref = self.reference
        row = {"metric": self.name, "num_images": int(n), "image_size": int(h),
               "reference": ref.source,
               "fid": frechet_distance(*feature_statistics(feats), ref.mu, ref.sigma)}
        row["inception_score"], row["inception_score_std"] = inception_score(logits)
        row["precision"] = row["recall"] = None
        if ref.features is not None:
            row["precision"], row["recall"] = precision_recall(
                ref.features, feats, k=pr_k, device=self.extractor.device)
        row["class_accuracy"] = (None if labels is None
                                 else float((logits.argmax(axis=1) == labels).mean()))
        row["warnings"] = notes
        return row

    def _check_labels(self, labels, n: int) -> np.ndarray | None:
        """Labels as (N,) int64 when the extractor's classes are the generator's, else None."""
        if labels is None or not self.extractor.labels_are_classes:
            return None
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if labels.shape[0] != n:
            raise ValueError(f"got {labels.shape[0]} labels for {n} images; give one per image.")
        classes = self.extractor.num_classes
        if labels.min() < 0 or labels.max() >= classes:
            raise ValueError(f"labels must be in 0..{classes - 1} for the {self.name} "
                             f"classifier, got {labels.min()}..{labels.max()}.")
        return labels


def check_resolution(reference: str, ref_h: int, ref_w: int, height: int, width: int) -> None:
    if (ref_h, ref_w) == (height, width):
        return
    adm = (f" (ADM: VIRTUAL_imagenet{width}_labeled.npz)"
           if height == width and width in (64, 128, 256, 512) else "")
    raise ValueError(
        f"the reference {reference} is {ref_w}x{ref_h} but the samples are {width}x{height}; "
        f"FID across resolutions is meaningless. Use a reference of {width}x{height} "
        f"images{adm}.")


def _file_key(path: Path) -> str:
    """Identity of a reference file or folder for the feature cache (path, sizes, mtimes)."""
    paths = sorted(path.rglob("*")) if path.is_dir() else [path]
    h = hashlib.sha1(str(path.resolve()).encode())
    for p in paths:
        if p.is_file():
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def _builtin_reference(extractor, image_size: int, num_classes: int, count: int,
                       batch_size: int) -> Reference:
    images, _ = render_images(count, seed=REFERENCE_SEED, num_classes=num_classes,
                              image_size=image_size)
    feats, _ = extract_features(extractor, images, batch_size)
    mu, sigma = feature_statistics(feats)
    return Reference(mu=mu, sigma=sigma, features=feats, image_size=image_size, num_images=count,
                     source=f"builtin Shapes-{num_classes} ({count} images, seed {REFERENCE_SEED})")


def _image_reference(extractor, path, batch_size: int, cache_dir,
                     image_size: int | None) -> Reference:
    """Features of reference images: a folder, an ADM .npz batch, or an array (no cache)."""
    n, h, w = source_info(path)
    name = str(path) if isinstance(path, (str, Path)) else f"{n} images in memory"
    if image_size is not None:  # before the (possibly long) feature pass
        check_resolution(name, h, w, image_size, image_size)
    if h != w:
        raise ValueError(f"reference {name} has {w}x{h} images; square images expected.")
    cache = None
    if cache_dir is not None and isinstance(path, Path):
        cache = Path(cache_dir) / f"reference-{extractor.name}-{_file_key(path)}.npz"
        if cache.is_file():
            with np.load(cache) as data:
                feats = data["features"]
            log.info("reference features from cache %s", cache)
    if cache is None or not cache.is_file():
        log.info("computing %s features of %d reference images (%s)", extractor.name, n, name)
        feats, _ = extract_features(extractor, path, batch_size)
        if cache is not None:
            with atomic_file(cache, suffix=".tmp.npz") as tmp:  # np.savez appends .npz
                np.savez(tmp, features=feats)
    mu, sigma = feature_statistics(feats)
    return Reference(mu=mu, sigma=sigma, features=feats, image_size=h, num_images=n, source=name)


def load_reference(reference, extractor, *, image_size: int | None = None,
                   num_classes: int = 10, reference_count: int = 5000, batch_size: int = 100,
                   cache_dir=None) -> Reference:
    """Reference statistics (and features when images are available) in the extractor's space."""
    if isinstance(reference, Reference):
        return reference
    if not isinstance(reference, (str, Path, type(None))):  # images in memory
        return _image_reference(extractor, reference, batch_size, None, image_size)
    if reference is None or reference == BUILTIN_REFERENCE:
        if extractor.name != "metric-net":
            raise ValueError(
                "--metric inception needs --reference: an ADM reference batch such as "
                "VIRTUAL_imagenet256_labeled.npz, an image folder, or a statistics .npz.")
        if image_size is None:
            raise ValueError("the builtin reference needs the samples' image_size.")
        return _builtin_reference(extractor, image_size, num_classes, reference_count,
                                  batch_size)
    path = Path(reference).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"reference {path} does not exist.")
    if path.is_file() and path.suffix == ".npz" and "arr_0" not in npz_keys(path):
        mu, sigma, meta = load_statistics(path)
        if mu.shape != (extractor.feature_dim,):
            raise ValueError(
                f"the statistics in {path} have {mu.shape[0]} dimensions but the {extractor.name} "
                f"features have {extractor.feature_dim}; they come from another metric.")
        if meta.get("metric") not in (None, extractor.name):
            raise ValueError(f"{path} holds {meta['metric']} statistics, not {extractor.name}.")
        size = meta.get("image_size")
        return Reference(mu=mu, sigma=sigma, features=None,
                         image_size=None if size is None else int(size),
                         num_images=meta.get("num_images"), source=str(path))
    return _image_reference(extractor, path, batch_size, cache_dir, image_size)


def save_reference_statistics(reference: Reference, path: str | Path, metric: str) -> Path:
    """Write a reference's `mu`/`sigma` (plus image_size, metric) for later FID-only runs."""
    meta = {"metric": metric}
    if reference.image_size is not None:
        meta["image_size"] = reference.image_size
    if reference.num_images is not None:
        meta["num_images"] = reference.num_images
    return save_statistics(path, reference.mu, reference.sigma, **meta)


def build_metric(metric: str = "builtin", reference=None, *, image_size: int | None = None,
                 num_classes: int = 10, device="cpu", inception_weights=None, metric_net=None,
                 reference_count: int = 5000, batch_size: int = 100,
                 cache_dir=None) -> QualityMetric:
    """Load the extractor and the reference; raises ValueError for every unusable combination."""
    extractor = build_extractor(metric, device=device, inception_weights=inception_weights,
                                metric_net=metric_net)
    if extractor.labels_are_classes and num_classes > extractor.num_classes:
        raise ValueError(f"the built-in metric classifies {extractor.num_classes} Shapes-10 "
                         f"classes but the model has {num_classes}; use --metric inception "
                         "for other datasets.")
    ref = load_reference(reference, extractor, image_size=image_size, num_classes=num_classes,
                         reference_count=reference_count, batch_size=batch_size,
                         cache_dir=cache_dir)
    if image_size is not None and ref.image_size is not None:
        check_resolution(ref.source, ref.image_size, ref.image_size, image_size, image_size)
    return QualityMetric(extractor, ref, batch_size)


def evaluate_quality(images_or_folder, labels=None, reference=None, metric: str = "builtin",
                     **kwargs) -> dict:
    """One-shot `build_metric(...).evaluate(...)`; for several sets build the metric once."""
    if isinstance(metric, QualityMetric):
        return metric.evaluate(images_or_folder, labels)
    _, h, _ = source_info(images_or_folder)
    kwargs.setdefault("image_size", h)
    if labels is not None and "num_classes" not in kwargs:
        kwargs["num_classes"] = int(np.max(np.asarray(labels))) + 1
    with torch.no_grad():
        return build_metric(metric, reference, **kwargs).evaluate(images_or_folder, labels)
