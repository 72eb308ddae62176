"""Datasets and loaders: the built-in Shapes-10 dataset, ImageFolder, deterministic sampling."""

from variant.data.folder import IMAGE_EXTENSIONS, FolderSummary, ImageFolder, load_rgb
from variant.data.loader import EpochSampler, build_loader, set_loader_epoch, steps_per_epoch
from variant.data.procedural import (
    CLASS_NAMES,
    ProceduralImages,
    render,
    save_as_image_folder,
)

__all__ = [
    "CLASS_NAMES",
    "IMAGE_EXTENSIONS",
    "EpochSampler",
    "FolderSummary",
    "ImageFolder",
    "ProceduralImages",
    "build_loader",
    "load_rgb",
    "render",
    "save_as_image_folder",
    "set_loader_epoch",
    "steps_per_epoch",
]
