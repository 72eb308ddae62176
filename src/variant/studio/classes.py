"""Class names for the studio's class picker, and reading a class selection.

Where names come from, first match wins:
- the model's `meta["class_names"]` (a model directory may record its own);
- the built-in Shapes-10 names for models of the built-in data (`meta["dataset"]` names it, or
  `meta["training"]["dataset"]` is "procedural");
- the ILSVRC-2012 names (`assets/imagenet_classes.txt`, one per line in index order) for
  1000-class models;
- otherwise "class 0", "class 1", ...
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import torch

from ..builtin import ASSETS
from ..data.procedural import CLASS_NAMES as SHAPES_CLASS_NAMES

IMAGENET_CLASSES_FILE = ASSETS / "imagenet_classes.txt"
IMAGENET_NUM_CLASSES = 1000


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    names = tuple(IMAGENET_CLASSES_FILE.read_text().splitlines())
    assert len(names) == IMAGENET_NUM_CLASSES, f"{IMAGENET_CLASSES_FILE}: {len(names)} names"
    return names


def _trained_on_builtin_data(meta: dict) -> bool:
    training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
    return "Shapes-10" in str(meta.get("dataset", "")) or training.get("dataset") == "procedural"


def class_names(num_classes: int, meta: dict | None = None) -> tuple[str, ...]:
    """One display name per class id of a model with `num_classes` classes (module docstring)."""
    meta = meta or {}
    own = meta.get("class_names")
    if isinstance(own, list) and len(own) == num_classes:
        return tuple(str(name) for name in own)
    if _trained_on_builtin_data(meta) and num_classes <= len(SHAPES_CLASS_NAMES):
        return SHAPES_CLASS_NAMES[:num_classes]
    if num_classes == IMAGENET_NUM_CLASSES:
        return imagenet_class_names()
    return tuple(f"class {i}" for i in range(num_classes))


def class_choices(names: Sequence[str]) -> list[tuple[str, int]]:
    """(label, class id) pairs for a searchable picker: "golden retriever (207)"."""
    return [(f"{name} ({i})", i) for i, name in enumerate(names)]


def resolve_classes(selection: Iterable[int | str], names: Sequence[str]) -> list[int]:
    """Class ids of a selection of ids ("207", 207), names ("golden retriever") or picker
    labels ("golden retriever (207)"); names are matched without regard to case."""
    by_name: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        by_name.setdefault(name.lower(), []).append(i)
    labels = {label.lower(): i for label, i in class_choices(names)}
    out = []
    for item in selection:
        text = str(item).strip()
        if text.lstrip("-").isdigit():
            index = int(text)
            if not 0 <= index < len(names):
                raise ValueError(f"class {index} does not exist: this model has {len(names)} "
                                 f"classes (0..{len(names) - 1}).")
            out.append(index)
        elif text.lower() in labels:
            out.append(labels[text.lower()])
        elif len(by_name.get(text.lower(), ())) == 1:
            out.append(by_name[text.lower()][0])
        elif text.lower() in by_name:
            ids = by_name[text.lower()]
            raise ValueError(f"class name {text!r} is ambiguous (classes {ids}); pick it by id.")
        else:
            hint = ", ".join(names[:3])
            raise ValueError(f"unknown class {text!r}: pick a class from the list, or give its "
                             f"id (0..{len(names) - 1}) or its name (e.g. {hint}).")
    return out


def labels_for(classes: Sequence[int], num_images: int, num_classes: int,
               seed: int) -> list[int]:
    """One class per image: the chosen classes in turn, or, with none chosen, random classes
    drawn as `variant sample` draws them without --labels."""
    if classes:
        return [int(classes[i % len(classes)]) for i in range(num_images)]
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_classes, (num_images,), generator=g).tolist()
