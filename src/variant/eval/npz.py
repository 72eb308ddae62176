"""The `.npz` files of the common FID toolkits (OpenAI's ADM evaluation suite), streamed.

- Sample / reference batches: `arr_0` uint8 (N, H, W, 3); class-conditional ADM sample files add
  `arr_1` int64 (N,) labels (`np.savez(path, images, labels)` in ADM's `image_sample.py`).
  `create_npz_from_sample_folder` reads `{i:06d}.png` for i < N, like the script of that name that
  VAR's README points to.
- Precomputed statistics: `mu` (F,) and `sigma` (F, F) float64 (ADM reference batches carry them
  next to `arr_0`). Ours may add `image_size` and `metric` so a mismatch is caught.

50 000 images of 256 px are 9.8 GB, so arrays are written and read row-batch by row-batch straight
from the zip member (stored uncompressed, zip64) instead of being held in memory.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import atomic_file


def _array_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(int(s) for s in shape)}
    np.lib.format.write_array_header_2_0(buf, header)  # magic string included
    return buf.getvalue()


def write_npz(path: str | Path, images: Iterable[np.ndarray], num_images: int,
              image_shape: tuple[int, int, int], labels: np.ndarray | None = None) -> Path:
    """Write `arr_0` uint8 (N, H, W, 3) from an iterable of uint8 batches (B, H, W, 3) or single
    images (H, W, 3), plus `arr_1` labels if given; atomically (temporary file, then rename)."""
    path = Path(path)
    with atomic_file(path) as tmp:
        _write_npz_members(tmp, path, images, num_images, image_shape, labels)
    return path


def _write_npz_members(tmp: Path, path: Path, images: Iterable[np.ndarray], num_images: int,
                       image_shape: tuple[int, int, int], labels: np.ndarray | None) -> None:
    shape = (int(num_images), *image_shape)
    written = 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("arr_0.npy", "w", force_zip64=True) as member:
            member.write(_array_header(shape, np.uint8))
            for batch in images:
                batch = np.asarray(batch)
                batch = batch[None] if batch.ndim == 3 else batch
                if batch.dtype != np.uint8 or batch.shape[1:] != tuple(image_shape):
                    raise ValueError(f"expected uint8 images of shape {image_shape}, got "
                                     f"{batch.dtype} {batch.shape[1:]}.")
                member.write(np.ascontiguousarray(batch).tobytes())
                written += batch.shape[0]
        if written != num_images:
            raise ValueError(f"expected {num_images} images for {path}, got {written}.")
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int64)
            if labels.shape != (num_images,):
                raise ValueError(f"need one label per image ({num_images}), got {labels.shape}.")
            with zf.open("arr_1.npy", "w") as member:
                member.write(_array_header(labels.shape, np.int64))
                member.write(labels.tobytes())


def npz_keys(path: str | Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return [n[:-4] for n in zf.namelist() if n.endswith(".npy")]


def _open_member(zf: zipfile.ZipFile, key: str, path):
    name = f"{key}.npy"
    if name not in zf.namelist():
        keys = [n[:-4] for n in zf.namelist()]
        raise ValueError(f"{path} has no array {key!r} (it holds {keys}); a batch of images needs "
                         "'arr_0' (N, H, W, 3) uint8, statistics need 'mu' and 'sigma'.")
    member = zf.open(name)
    version = np.lib.format.read_magic(member)
    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
            else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read(member)
    if fortran:
        raise ValueError(f"{path}: {key} is stored in Fortran order; re-save it with np.savez.")
    return member, shape, dtype


def npz_array_info(path: str | Path, key: str = "arr_0") -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of one array in an npz, without reading it."""
    with zipfile.ZipFile(path) as zf:
        member, shape, dtype = _open_member(zf, key, path)
        member.close()
    return shape, dtype


def iter_npz_batches(path: str | Path, key: str = "arr_0",
                     batch_size: int = 256) -> Iterator[np.ndarray]:
    """Rows of one array in batches (B, ...), read straight from the zip member."""
    with zipfile.ZipFile(path) as zf:
        member, shape, dtype = _open_member(zf, key, path)
        with member:
            row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
            for start in range(0, shape[0], batch_size):
                count = min(batch_size, shape[0] - start)
                data = member.read(count * row_bytes)
                if len(data) != count * row_bytes:
                    raise ValueError(f"{path}: {key} is truncated at row {start}.")
                yield np.frombuffer(bytearray(data), dtype=dtype).reshape(count, *shape[1:])


def read_npz_array(path: str | Path, key: str) -> np.ndarray:
    with np.load(path) as data:
        return np.asarray(data[key])


def check_image_batch(path: str | Path) -> tuple[int, int, int]:
    """(N, H, W) of an ADM image batch, or a ValueError saying what is wrong with it."""
    shape, dtype = npz_array_info(path, "arr_0")
    if len(shape) != 4 or shape[3] != 3 or dtype != np.uint8:
        raise ValueError(f"{path}: arr_0 must be uint8 (N, H, W, 3) images (ADM layout), got "
                         f"{dtype} {shape}.")
    return shape[0], shape[1], shape[2]


def save_statistics(path: str | Path, mu: np.ndarray, sigma: np.ndarray, **meta) -> Path:
    """Write `mu`, `sigma` (ADM keys) and scalar metadata such as image_size or metric."""
    path = Path(path)
    with atomic_file(path, suffix=".tmp.npz") as tmp:  # np.savez appends .npz to other names
        np.savez(tmp, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64),
                 **{k: np.asarray(v) for k, v in meta.items()})
    return path


def load_statistics(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(mu, sigma, meta) from an npz holding `mu` and `sigma`."""
    with np.load(path) as data:
        if "mu" not in data or "sigma" not in data:
            raise ValueError(f"{path} holds no statistics (keys {list(data.keys())}); expected "
                             "'mu' and 'sigma'.")
        meta = {k: data[k].item() for k in data.keys()
                if k not in ("mu", "sigma") and data[k].ndim == 0}
        return np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64), meta


def create_npz_from_sample_folder(folder: str | Path, num_images: int,
                                  out: str | Path | None = None,
                                  labels: np.ndarray | None = None) -> Path:
    """Pack `{folder}/{i:06d}.png`, i < num_images, into `{folder}.npz` (ADM layout)."""
    folder = Path(folder)
    out = Path(out) if out is not None else folder.with_suffix(".npz")
    files = [folder / f"{i:06d}.png" for i in range(num_images)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ValueError(f"{folder} lacks {len(missing)} of {num_images} images (first: "
                         f"{missing[0]}); finish sampling (rerun the same command) first.")
    first = np.asarray(Image.open(files[0]).convert("RGB"))

    def images():
        for f in files:
            with Image.open(f) as img:
                yield np.asarray(img.convert("RGB"))

    return write_npz(out, images(), num_images, first.shape, labels)
