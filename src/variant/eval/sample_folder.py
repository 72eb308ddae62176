"""Class-balanced, deterministic, resumable and shardable sampling into a PNG folder.

Layout: image `index = c * num_per_class + j` (class c, j-th image of that class) is written to
`{folder}/{index:06d}.png`, the order `create_npz_from_sample_folder` packs; `samples.json` records
the settings, and a rerun with other settings into the same folder is refused.

Determinism. The sampler draws a whole batch from one generator, so an image depends on its batch.
Batches are therefore fixed by the settings, never by the ranks: class c's images are cut into
chunks of `batch_size` (`j = k * batch_size ...`, the last chunk shorter), and chunk (c, k) is
sampled in one call seeded with `chunk_seed(seed, c, k)`. An image is a pure function of (model,
plan, seed, class, j, batch_size, num_per_class, cfg, top_k, top_p, dtype, device type); sharding
over any number of ranks and resuming give identical files. `batch_size=1` makes every image
independent of the others (slower). Every plan uses the same chunk seeds, so plans are compared on
the same random draws.

Resume. PNGs are written to a temporary name and renamed, so an interrupted write never leaves a
partial file under a final name; on a rerun, chunks whose images all exist (and pass PIL's
`verify`) are skipped, and a chunk with missing images is sampled again and only the missing files
are written.

Pixels: `round(255 * x)` clamped to [0, 255] (the official demo truncates with `astype(uint8)`,
which lowers every pixel by half a level on average; FIDs of the two conventions differ slightly).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..atomic import TMP_SUFFIX, write_text_atomic
from ..images import save_png, to_uint8
from ..sampling.plan import DepthPlan
from ..sampling.sampler import generate
from ..sampling.settings import SamplingConfig

log = logging.getLogger(__name__)

META_NAME = "samples.json"


@dataclass(frozen=True, kw_only=True)
class SamplingSpec:
    """What to sample: `num_per_class` images of each of `num_classes` classes, and how."""

    num_per_class: int
    num_classes: int
    batch_size: int = 50
    seed: int = 0  # base seed; chunk c of class k samples with chunk_seed(seed, k, c)
    settings: SamplingConfig = field(default_factory=SamplingConfig)  # its own seed is unused

    def __post_init__(self) -> None:
        if self.num_per_class < 1 or self.num_classes < 1 or self.batch_size < 1:
            raise ValueError(
                f"num_per_class, num_classes and batch_size must be >= 1, got "
                f"{self.num_per_class}, {self.num_classes}, {self.batch_size}.")
        if self.num_classes * self.num_per_class > 999_999:
            raise ValueError("at most 999999 images per folder (six-digit file names).")
        if self.settings.seed is not None:
            raise ValueError("give the base seed as SamplingSpec.seed; every chunk seeds its own "
                             "generator from it, so settings.seed must stay None.")

    def to_dict(self) -> dict:
        """Flat: the sampling settings next to the counts (as folders record them)."""
        settings = self.settings.to_dict()
        del settings["seed"]
        return {"num_per_class": self.num_per_class, "num_classes": self.num_classes,
                "batch_size": self.batch_size, "seed": self.seed, **settings}

    @property
    def num_images(self) -> int:
        return self.num_classes * self.num_per_class

    def labels(self) -> np.ndarray:
        """Class of every image index (N,) int64."""
        return np.arange(self.num_images, dtype=np.int64) // self.num_per_class


@dataclass(frozen=True)
class Chunk:
    """Images j in [start, stop) of class `class_id`, sampled in one call."""

    class_id: int
    chunk_index: int
    start: int
    stop: int

    def indices(self, num_per_class: int) -> range:
        base = self.class_id * num_per_class
        return range(base + self.start, base + self.stop)


@dataclass(frozen=True)
class FolderReport:
    num_images: int  # in the whole folder
    generated: int  # written by this call
    skipped: int  # already there (this rank's share)
    seconds: float  # sampling + writing, this call
    timings: dict  # summed GenerationResult.timings of this call


def chunk_seed(seed: int, class_id: int, chunk_index: int) -> int:
    """Seed of chunk (class_id, chunk_index): a pure, well-mixed function of the three numbers."""
    state = np.random.SeedSequence([int(seed), int(class_id), int(chunk_index)]).generate_state(2)
    return int(state[0]) << 31 ^ int(state[1])


def chunks(spec: SamplingSpec) -> list[Chunk]:
    out = []
    for c in range(spec.num_classes):
        for k, start in enumerate(range(0, spec.num_per_class, spec.batch_size)):
            out.append(Chunk(c, k, start, min(start + spec.batch_size, spec.num_per_class)))
    return out


def shard(all_chunks: list[Chunk], rank: int, world_size: int) -> list[Chunk]:
    """Rank `rank`'s chunks (round robin, so every rank gets every class)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}.")
    return all_chunks[rank::world_size]


def image_path(folder: str | Path, index: int) -> Path:
    return Path(folder) / f"{index:06d}.png"


def is_complete_png(path: Path, size: tuple[int, int] | None = None) -> bool:
    """True if `path` is a readable PNG (chunk CRCs checked) of the given (H, W)."""
    try:
        with Image.open(path) as img:
            if img.format != "PNG" or (size is not None and img.size != (size[1], size[0])):
                return False
            img.verify()
        return True
    except (OSError, SyntaxError, ValueError):
        return False


def folder_meta(spec: SamplingSpec, plan: DepthPlan, image_size: int, model: str) -> dict:
    return {"format": "variant-samples", "version": 1, "model": model,
            "image_size": int(image_size), "plan": plan.name,
            "layer_sets": [list(s) for s in plan.layer_sets], "spec": spec.to_dict()}


def prepare_folder(folder: str | Path, meta: dict) -> Path:
    """Create `folder` and its samples.json, or check an existing one has the same settings."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / META_NAME
    if path.is_file():
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
        if diff:
            details = "; ".join(f"{k}: {old.get(k)!r} there, {meta.get(k)!r} now" for k in diff)
            raise ValueError(
                f"{folder} holds samples made with other settings ({details}); pass another "
                "--out, or delete that folder to start again.")
        return folder
    # ranks write identical content, so the race is harmless
    write_text_atomic(path, json.dumps(meta, indent=2) + "\n")
    return folder


def missing_indices(folder: str | Path, spec: SamplingSpec, image_size: int) -> list[int]:
    size = (image_size, image_size)
    return [i for i in range(spec.num_images)
            if not is_complete_png(image_path(folder, i), size)]


@torch.no_grad()
def sample_to_folder(var, vae, plan: DepthPlan, folder: str | Path, spec: SamplingSpec, *,
                     model: str = "", rank: int = 0, world_size: int = 1,
                     progress: bool = False) -> FolderReport:
    """Write this rank's share of the `spec.num_images` PNGs of `plan` into `folder`."""
    plan = var.resolve_plan(plan)
    if spec.num_classes > var.num_classes:
        raise ValueError(f"spec asks for {spec.num_classes} classes but the model has "
                         f"{var.num_classes}; lower --num-classes.")
    image_size = vae.config.image_size
    folder = prepare_folder(folder, folder_meta(spec, plan, image_size, model))
    mine = shard(chunks(spec), rank, world_size)
    start, generated, skipped = time.perf_counter(), 0, 0
    timings: dict[str, float] = {}
    todo = []
    for chunk in mine:
        need = [i for i in chunk.indices(spec.num_per_class)
                if not is_complete_png(image_path(folder, i), (image_size, image_size))]
        skipped += chunk.stop - chunk.start - len(need)
        if need:
            todo.append((chunk, need))
    if progress and todo:
        todo = tqdm(todo, desc=f"{plan.name} rank {rank}", unit="batch")
    device = var.device
    for chunk, need in todo:
        n = chunk.stop - chunk.start
        labels = torch.full((n,), chunk.class_id, dtype=torch.long, device=device)
        settings = spec.settings.replace(
            seed=chunk_seed(spec.seed, chunk.class_id, chunk.chunk_index))
        result = generate(var, n, labels, settings=settings, plan=plan)
        for name, sec in result.timings.items():
            timings[name] = timings.get(name, 0.0) + sec
        images = to_uint8(result.images)
        first = chunk.class_id * spec.num_per_class + chunk.start
        for index in need:
            save_png(images[index - first], image_path(folder, index))
        generated += len(need)
    seconds = time.perf_counter() - start
    if skipped:
        log.info("%s: kept %d finished images, sampled %d", folder, skipped, generated)
    return FolderReport(spec.num_images, generated, skipped, seconds, timings)


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete the temporaries (`.*.tmp`) of interrupted writes; call when no rank is writing."""
    count = 0
    for path in Path(folder).glob(f".*{TMP_SUFFIX}"):
        path.unlink(missing_ok=True)
        count += 1
    return count


def wait_for_folder(folder: str | Path, spec: SamplingSpec, image_size: int, timeout: float,
                    poll: float = 5.0) -> list[int]:
    """Poll until every image exists or `timeout` seconds pass; returns the missing indices."""
    deadline = time.monotonic() + timeout
    while True:
        missing = missing_indices(folder, spec, image_size)
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
