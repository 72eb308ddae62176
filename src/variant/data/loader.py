"""Deterministic, distributed-aware sampling and loader construction.

``EpochSampler`` follows the official ``DistInfiniteBatchSampler`` (reference §5.1): epoch ``e``
draws ``torch.randperm(n)`` from a generator seeded with ``seed + e`` (the same on every rank),
pads the tail by repeating the first indices until the length divides ``world_size``, and gives
each rank one **contiguous shard** of that order (rank r: ``perm[r*m : (r+1)*m]``, m = padded
n / world), as the official ``linspace`` split does. Every rank therefore gets the same count, the
shards are disjoint apart from the padding, and together they cover the dataset.

Resuming mid-epoch: ``set_epoch(e, start_index=k)`` skips the first k samples of this rank's order
for epoch e, so the rest of the epoch is exactly the tail an uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sized

import torch

logger = logging.getLogger(__name__)


class EpochSampler(torch.utils.data.Sampler[int]):
    """Per-rank sample order for one epoch at a time (see the module docstring)."""

    def __init__(
        self,
        data: int | Sized,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        num_samples = data if isinstance(data, int) else len(data)
        if num_samples < 1:
            raise ValueError(f"EpochSampler needs a non-empty dataset, got {num_samples} samples.")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}."
            )
        self.num_samples = int(num_samples)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.shuffle = shuffle
        self.epoch = 0
        self.start_index = 0

    @property
    def num_per_rank(self) -> int:
        """Samples each rank sees in a full epoch (after padding)."""
        return -(-self.num_samples // self.world_size)

    def set_epoch(self, epoch: int, start_index: int = 0) -> None:
        """Select epoch ``epoch``; skip the first ``start_index`` samples of this rank's order."""
        if not 0 <= start_index <= self.num_per_rank:
            raise ValueError(
                f"start_index must be in [0, {self.num_per_rank}] (samples per rank per epoch), "
                f"got {start_index}."
            )
        self.epoch, self.start_index = int(epoch), int(start_index)

    def global_order(self) -> torch.Tensor:
        """All ranks' indices for this epoch, padded: LongTensor (world_size * num_per_rank,)."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        total = self.num_per_rank * self.world_size
        repeats = -(-total // self.num_samples)  # > 1 only when num_samples < world_size
        return order.repeat(repeats)[:total]

    def rank_order(self) -> list[int]:
        """This rank's full order for the epoch, ignoring ``start_index``."""
        begin = self.rank * self.num_per_rank
        return self.global_order()[begin : begin + self.num_per_rank].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.rank_order()[self.start_index :])

    def __len__(self) -> int:
        return self.num_per_rank - self.start_index


def steps_per_epoch(sampler: EpochSampler, batch_size: int, drop_last: bool = True) -> int:
    """Batches per rank in a full epoch."""
    per_rank = sampler.num_per_rank
    return per_rank // batch_size if drop_last else -(-per_rank // batch_size)


def set_loader_epoch(loader: torch.utils.data.DataLoader, epoch: int, start_index: int = 0) -> None:
    """Move a loader from ``build_loader`` to ``epoch``: its sampler and, if any, its dataset."""
    loader.sampler.set_epoch(epoch, start_index)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)


def build_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    *,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    drop_last: bool = True,
    start_step: int = 0,
    shuffle: bool = True,
) -> torch.utils.data.DataLoader:
    """A DataLoader over ``EpochSampler``, positioned at global step ``start_step``.

    ``batch_size`` is per rank. ``start_step`` counts batches from the start of epoch 0, so the
    loader starts in epoch ``start_step // steps_per_epoch`` after skipping the batches already
    taken in it; ``loader.sampler.epoch`` tells the caller which epoch that is. At each later
    epoch, call ``set_loader_epoch(loader, epoch)``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}.")
    sampler = EpochSampler(dataset, seed=seed, rank=rank, world_size=world_size, shuffle=shuffle)
    num_steps = steps_per_epoch(sampler, batch_size, drop_last)
    if num_steps < 1:
        raise ValueError(
            f"batch_size {batch_size} exceeds the {sampler.num_per_rank} samples per rank with "
            "drop_last=True; lower batch_size or pass drop_last=False."
        )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=False,
        # An explicit generator keeps the loader from drawing worker seeds from the global RNG.
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,  # workers must copy the dataset after set_epoch
    )
    epoch, step_in_epoch = divmod(start_step, num_steps)
    set_loader_epoch(loader, epoch, step_in_epoch * batch_size)
    return loader
