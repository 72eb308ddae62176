"""What the trainer feeds the model: datasets, micro-batch order, and teacher-forcing inputs.

Two sample formats, declared by the dataset, never guessed:

* ``images`` (the default): items are ``(image (3, H, W) in [-1, 1], label)``; the frozen VQVAE
  tokenises them on the fly;
* ``tokens``: the dataset has ``sample_format = "tokens"`` and items are
  ``(idx_L LongTensor (L,), label)``, the scales' token indices concatenated in order.

Data order. With W ranks and A accumulation steps an optimizer step consumes W * A micro-batches.
They are the shards of `variant.data.EpochSampler` for W * A "slots" (rank r's micro-batch a is
slot r * A + a), so the samples of a step, and which of them share a micro-batch, depend only on
W * A and the micro batch size: one process accumulating 2 micro-batches sees exactly what two
ranks see with one each. The position is the step alone, so resuming needs no sampler state.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import torch

from ..data.folder import ImageFolder
from ..data.loader import EpochSampler
from ..data.procedural import ProceduralImages
from ..data.tokens import FlippedImages, load_token_dataset
from .config import TrainConfig

SAMPLE_FORMATS = ("images", "tokens")


def sample_format(dataset) -> str:
    fmt = getattr(dataset, "sample_format", "images")
    if fmt not in SAMPLE_FORMATS:
        raise ValueError(f"dataset.sample_format must be one of {SAMPLE_FORMATS}, got {fmt!r}.")
    return fmt


def build_dataset(config: TrainConfig, vae, num_classes: int):
    """The dataset named by the config, at the tokenizer's image size (tokens: checked against
    the tokenizer's fingerprint and scales)."""
    image_size = vae.config.image_size
    if config.dataset == "procedural":
        images = ProceduralImages(config.num_images, image_size, config.seed, num_classes)
        return FlippedImages(images, config.seed) if config.hflip else images
    if config.dataset == "folder":
        return ImageFolder(config.data_path, image_size, train=True, hflip=config.hflip,
                           seed=config.seed)
    return load_token_dataset(config.data_path, config.seed, hflip=config.hflip, tokenizer=vae)


class MicroBatchSampler(torch.utils.data.Sampler[list[int]]):
    """This rank's micro-batches, optimizer step after optimizer step (see module docstring)."""

    def __init__(self, num_samples: int, *, micro_batch: int, accum: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        slots = world_size * accum
        self.shards = [EpochSampler(num_samples, seed=seed, rank=rank * accum + a,
                                    world_size=slots) for a in range(accum)]
        self.micro_batch, self.accum = micro_batch, accum
        self.steps_per_epoch = self.shards[0].num_per_rank // micro_batch
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the dataset has {num_samples} samples, fewer than one global batch "
                f"({slots * micro_batch}); use more data or a smaller --global-batch.")
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Epoch `epoch`, skipping its first `start_step` optimizer steps (resume)."""
        self.epoch, self.start_step = int(epoch), int(start_step)

    def __iter__(self) -> Iterator[list[int]]:
        orders = []
        for shard in self.shards:
            shard.set_epoch(self.epoch)
            orders.append(shard.rank_order())
        mb = self.micro_batch
        for step in range(self.start_step, self.steps_per_epoch):
            for order in orders:
                yield order[step * mb:(step + 1) * mb]

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accum


def build_loader(dataset, sampler: MicroBatchSampler, num_workers: int, seed: int):
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=False,
        generator=torch.Generator().manual_seed(seed), persistent_workers=False,
        worker_init_fn=_leave_stop_signals_to_the_trainer if num_workers else None)


def _leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """A Ctrl-C or a scheduler's SIGTERM reaches the workers too; if they died of it, the
    DataLoader would abort the step the trainer is finishing. They exit when it shuts them down
    (or when its process is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class TeacherForcing:
    """Loader batch -> (label_B, gt_BL, x_BLCv_wo_first_l) on the device, via the frozen VQVAE."""

    def __init__(self, vae, patch_nums: tuple[int, ...], fmt: str, device: torch.device):
        self.vae, self.fmt, self.device = vae, fmt, device
        self.sizes = [p * p for p in patch_nums]

    @torch.no_grad()
    def __call__(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        data, label_B = batch
        label_B = torch.as_tensor(label_B).to(self.device, torch.long, non_blocking=True)
        data = data.to(self.device, non_blocking=True)
        if self.fmt == "tokens":
            if data.ndim != 2 or data.shape[1] != sum(self.sizes):
                raise ValueError(
                    f"pre-tokenised samples must be (L,) = ({sum(self.sizes)},) token indices for "
                    f"patch_nums with sides {self.sizes}, got a batch of shape "
                    f"{tuple(data.shape)}; re-tokenise with this model's tokenizer.")
            gt_BL = data.long()
            idx_Bl = list(gt_BL.split(self.sizes, dim=1))
        else:
            idx_Bl = self.vae.img_to_idxBl(data.float())
            gt_BL = torch.cat(idx_Bl, dim=1)
        return label_B, gt_BL, self.vae.idxBl_to_var_input(idx_Bl)
