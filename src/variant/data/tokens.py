"""Pre-tokenised datasets: the multi-scale token indices of every image, both flips, on disk.

`tokenize_dataset` runs the frozen tokenizer once over a dataset (deterministic eval transform:
resize + centre crop) and its horizontal flip, so VAR training can skip the VQVAE encoder.
`TokenDataset` reads the result and yields `(idx_L LongTensor (L,), label)`, the scales' indices
concatenated in order, picking the flip of item i in epoch e as `flip_choice(seed, e, i)`.
`FlippedImages` applies the same choice to images, so on-the-fly tokenisation through it gives
exactly the batches a `TokenDataset` gives.

Layout of an output directory:
- `shard-00000.safetensors`, ...: `idx` (n, 2, L) int16 (int32 if V > 32768; [:, 0] unflipped,
  [:, 1] flipped) and `label` (n,) int64 for source items [k * shard_size, (k + 1) * shard_size),
  minus undecodable files. One metadata entry `variant` (JSON) names the shard and tokenizer.
- `index.json`: format, L, patch_nums, V, tokenizer fingerprint, the source, shard counts and the
  number of skipped files; written once every shard exists.
Every file is written to a temporary name and renamed, so a complete shard is never half-written
and a rerun skips it. With n processes (e.g. `torchrun`), rank r writes shards r, r + n, ...

Shape legend (the package's, see variant/__init__.py): N samples, L all tokens of one image,
l tokens of one scale, B batch.
"""

from __future__ import annotations

import bisect
import json
import logging
from pathlib import Path

import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from ..atomic import atomic_file, write_text_atomic
from ..jsonfile import read_json
from ..tokenizer_io import tokenizer_fingerprint
from .folder import ImageFolder, load_rgb
from .procedural import ProceduralImages

log = logging.getLogger(__name__)

FORMAT = "variant-tokens"
VERSION = 1
INDEX_FILE = "index.json"
DEFAULT_SHARD_SIZE = 10_000
_MASK64 = (1 << 64) - 1
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def _mix64(x: int) -> int:
    """SplitMix64 finaliser: a well-mixed 64-bit hash of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def flip_choice(seed: int, epoch: int, index: int) -> int:
    """1 if item `index` is horizontally flipped in `epoch`, else 0 (a fair coin per triple)."""
    return _mix64(_mix64(_mix64(seed & _MASK64) ^ (epoch & _MASK64)) ^ (index & _MASK64)) >> 63


def shard_name(shard_index: int) -> str:
    return f"shard-{shard_index:05d}.safetensors"


class FlippedImages(torch.utils.data.Dataset):
    """Images flipped exactly as `TokenDataset(seed)` picks its flips (on-the-fly counterpart)."""

    def __init__(self, dataset, seed: int = 0) -> None:
        self.dataset, self.seed, self.epoch = dataset, int(seed), 0

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int):
        img_3HW, label = self.dataset[index]
        if flip_choice(self.seed, self.epoch, index):
            img_3HW = torch.flip(img_3HW, dims=(-1,))
        return img_3HW, label


# ---------------------------------------------------------------------------------------------
# Writing


def images_for_tokenizing(data: str, image_size: int, *, num_images: int = 0, seed: int = 0):
    """The source dataset: 'procedural' (Shapes-10, `num_images` items) or an image folder root
    (eval transform: resize the shorter side, centre crop)."""
    if data == "procedural":
        if num_images < 1:
            raise ValueError("the procedural dataset needs --num-images N (N >= 1).")
        return ProceduralImages(num_images, image_size, seed=seed)
    dataset = ImageFolder(data, image_size, train=False)
    if num_images:
        raise ValueError("--num-images applies to --data procedural only; an image folder is "
                         "tokenised whole (make a smaller folder to tokenise a subset).")
    return dataset


class _Source(torch.utils.data.Dataset):
    """Item i -> (image, label, decoded?). Undecodable folder images are reported, not replaced
    by another image as `ImageFolder` does, so each stored sample is one real file."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, bool]:
        if not isinstance(self.dataset, ImageFolder):
            img_3HW, label = self.dataset[index]
            return img_3HW, int(label), True
        path, label = self.dataset.samples[index]
        try:
            img_3HW = self.dataset.transform(load_rgb(path), index)
        except _DECODE_ERRORS as err:
            log.warning("skipping unreadable image %s (%s: %s)", path, type(err).__name__, err)
            size = self.dataset.image_size
            return torch.zeros(3, size, size), label, False
        return img_3HW, label, True


def describe_source(dataset) -> dict:
    """What the index records about the images: origin, size and classes."""
    info = {"type": type(dataset).__name__, "num_items": len(dataset)}
    for attr in ("root", "image_size", "seed", "num_classes"):
        if hasattr(dataset, attr):
            value = getattr(dataset, attr)
            info[attr] = str(Path(value).resolve()) if isinstance(value, Path) else value
    classes = getattr(dataset, "classes", None) or getattr(dataset, "class_names", None)
    if classes is not None:
        info["classes"] = list(classes)
    return info


def _header(vae, source: dict, shard_size: int) -> dict:
    patch_nums = tuple(vae.config.patch_nums)
    return {"format": FORMAT, "version": VERSION, "fingerprint": tokenizer_fingerprint(vae),
            "patch_nums": list(patch_nums), "L": sum(p * p for p in patch_nums),
            "V": vae.config.V, "image_size": vae.config.image_size, "shard_size": shard_size,
            "source": source}


def _same_run(found: dict, header: dict, where: Path) -> None:
    keys = ("fingerprint", "patch_nums", "shard_size", "source")
    diff = [k for k in keys if found.get(k) != header[k]]
    if diff:
        raise ValueError(
            f"{where} was written by another tokenize run (different {', '.join(diff)}); "
            "pass a new --out directory, or delete the old one to rebuild it."
        )


@torch.no_grad()
def _tokenize_shard(vae, source: _Source, start: int, stop: int, batch_size: int,
                    num_workers: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Tokens (n, 2, L), labels (n,) and the number of skipped items of source[start:stop]."""
    subset = torch.utils.data.Subset(source, range(start, stop))
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=num_workers)
    device = next(vae.parameters()).device
    dtype = torch.int16 if vae.config.V <= 2**15 else torch.int32
    tokens, labels, skipped = [], [], 0
    for img_B3HW, label_B, good_B in loader:
        skipped += int((~good_B).sum())
        img_B3HW = img_B3HW[good_B].to(device)
        if img_B3HW.shape[0] == 0:
            continue
        both = [torch.cat(vae.img_to_idxBl(x), dim=1) for x in (img_B3HW, img_B3HW.flip(-1))]
        tokens.append(torch.stack(both, dim=1).to("cpu", dtype))
        labels.append(label_B[good_B].long())
    if not tokens:
        L = sum(p * p for p in vae.config.patch_nums)
        return torch.zeros(0, 2, L, dtype=dtype), torch.zeros(0, dtype=torch.long), skipped
    return torch.cat(tokens), torch.cat(labels), skipped


def _read_shard_meta(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("variant", "{}"))


def tokenize_dataset(vae, dataset, out: str | Path, *, shard_size: int = DEFAULT_SHARD_SIZE,
                     batch_size: int = 64, rank: int = 0, world_size: int = 1,
                     num_workers: int = 0, progress: bool = False) -> dict | None:
    """Write this rank's shards of `dataset` (items `(img (3, H, W) in [-1, 1], label)`) under
    `out`, skipping complete ones. Returns the index once all shards exist, else None (other
    ranks still at work: the last one to finish writes `index.json`)."""
    if shard_size < 1 or batch_size < 1:
        raise ValueError(f"shard_size and batch_size must be >= 1, got {shard_size}, {batch_size}.")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vae.eval()
    header = _header(vae, describe_source(dataset), shard_size)
    if (out / INDEX_FILE).is_file():
        _same_run(read_index(out), header, out / INDEX_FILE)
    source, total = _Source(dataset), len(dataset)
    num_shards = -(-total // shard_size)
    mine = range(rank, num_shards, world_size)
    bar = _progress(len(mine), progress)
    for k in mine:
        path, start, stop = out / shard_name(k), k * shard_size, min(total, (k + 1) * shard_size)
        meta = {**header, "shard": k, "start": start, "stop": stop}
        if path.is_file():
            _same_run(_read_shard_meta(path), header, path)
            log.debug("shard %d exists, skipping", k)
        else:
            tokens, labels, skipped = _tokenize_shard(vae, source, start, stop, batch_size,
                                                      num_workers)
            meta.update(num_samples=int(tokens.shape[0]), num_skipped=skipped)
            blob = {"variant": json.dumps(meta, sort_keys=True)}
            tensors = {"idx": tokens.contiguous(), "label": labels.contiguous()}
            with atomic_file(path) as tmp:
                save_file(tensors, str(tmp), metadata=blob)
            log.info("wrote %s (%d samples, %d skipped)", path.name, tokens.shape[0], skipped)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return _finish_index(out, header, num_shards)


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    return tqdm(total=total, desc="tokenize", unit="shard")


def _finish_index(out: Path, header: dict, num_shards: int) -> dict | None:
    paths = [out / shard_name(k) for k in range(num_shards)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        log.info("%d shards still missing (other ranks): %s...", len(missing), missing[:3])
        return None
    metas = [_read_shard_meta(p) for p in paths]
    index = {**header, "num_shards": num_shards, "shards": [p.name for p in paths],
             "shard_samples": [m["num_samples"] for m in metas],
             "num_samples": sum(m["num_samples"] for m in metas),
             "num_skipped": sum(m["num_skipped"] for m in metas)}
    text = json.dumps(index, indent=2, sort_keys=True)
    write_text_atomic(out / INDEX_FILE, text)
    log.info("tokenised %d samples into %d shards (%d files skipped): %s",
             index["num_samples"], num_shards, index["num_skipped"], out)
    return index


# ---------------------------------------------------------------------------------------------
# Reading


def read_index(root: str | Path) -> dict:
    path = Path(root) / INDEX_FILE
    if not path.is_file():
        shards = sorted(Path(root).glob("shard-*.safetensors")) if Path(root).is_dir() else []
        hint = (f"it holds {len(shards)} shards but no index: the run is incomplete; rerun "
                "`variant tokenize` with the same arguments to finish it" if shards else
                "create it with `variant tokenize`")
        raise ValueError(f"{root} is not a pre-tokenised dataset ({INDEX_FILE} missing); {hint}.")
    index = read_json(path, "token index", hint="create it again with `variant tokenize`")
    if not isinstance(index, dict):
        raise ValueError(f"{path} is not a {FORMAT} index (a JSON object); create it again with "
                         "`variant tokenize`.")
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise ValueError(f"{path} is not a {FORMAT} v{VERSION} index (format "
                         f"{index.get('format')!r}, version {index.get('version')!r}).")
    return index


class TokenDataset(torch.utils.data.Dataset):
    """Pre-tokenised samples: item i -> (idx_L LongTensor (L,), label int).

    The flip of item i in epoch e is `flip_choice(seed, e, i)` (always unflipped if
    `hflip=False`); call `set_epoch` every epoch. `patch_nums` and `tokenizer` (a VQVAE or a
    fingerprint string), if given, must match what the tokens were made with.
    """

    sample_format = "tokens"

    def __init__(self, root: str | Path, seed: int = 0, *, hflip: bool = True,
                 patch_nums: tuple[int, ...] | None = None, tokenizer=None) -> None:
        self.root = Path(root)
        self.index = read_index(self.root)
        self.seed, self.hflip, self.epoch = int(seed), hflip, 0
        self.check_compatible(tokenizer, patch_nums=patch_nums)
        counts = self.index["shard_samples"]
        self._starts = [sum(counts[:k]) for k in range(len(counts))]
        self._handles: dict[int, object] = {}
        self.labels = torch.cat([self._open(k).get_tensor("label") for k in range(len(counts))])
        self._handles.clear()  # opened again lazily, in each DataLoader worker
        if self.labels.numel() != self.index["num_samples"]:
            raise ValueError(f"{self.root}: shards hold {self.labels.numel()} samples but the "
                             f"index says {self.index['num_samples']}; re-run variant tokenize.")

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return tuple(self.index["patch_nums"])

    @property
    def fingerprint(self) -> str:
        return self.index["fingerprint"]

    @property
    def num_classes(self) -> int:
        source = self.index["source"]
        if "num_classes" in source:
            return int(source["num_classes"])
        return int(self.labels.max()) + 1 if len(self) else 0

    def check_compatible(self, tokenizer=None, *, patch_nums=None) -> None:
        """Raise ValueError unless the tokens come from `tokenizer` / use `patch_nums`."""
        if tokenizer is not None and patch_nums is None and not isinstance(tokenizer, str):
            patch_nums = tokenizer.config.patch_nums
        if patch_nums is not None and tuple(patch_nums) != self.patch_nums:
            raise ValueError(
                f"{self.root} holds tokens for patch_nums {self.patch_nums}, but the model uses "
                f"{tuple(patch_nums)}; re-tokenise with the model's tokenizer (variant tokenize)."
            )
        if tokenizer is None:
            return
        want = tokenizer if isinstance(tokenizer, str) else tokenizer_fingerprint(tokenizer)
        if want != self.fingerprint:
            raise ValueError(
                f"{self.root} was tokenised by tokenizer {self.fingerprint} "
                f"({self.index['source'].get('type', '?')} data), but the model's tokenizer is "
                f"{want}; re-tokenise with `variant tokenize --tokenizer <the model>`."
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.index["num_samples"])

    def _open(self, shard: int):
        if shard not in self._handles:
            self._handles[shard] = safe_open(str(self.root / self.index["shards"][shard]), "pt")
        return self._handles[shard]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}}  # file handles do not cross processes

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples.")
        shard = bisect.bisect_right(self._starts, index) - 1
        row = index - self._starts[shard]
        flip = flip_choice(self.seed, self.epoch, index) if self.hflip else 0
        idx_L = self._open(shard).get_slice("idx")[row : row + 1, flip]
        return idx_L[0].long(), int(self.labels[index])


def load_token_dataset(root: str | Path, seed: int = 0, **kwargs) -> TokenDataset:
    """`TokenDataset(root, seed, **kwargs)`; the entry point the VAR trainer uses."""
    return TokenDataset(root, seed, **kwargs)
