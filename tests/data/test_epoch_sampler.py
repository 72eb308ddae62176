"""EpochSampler and build_loader: sharding, per-epoch determinism, mid-epoch resume."""

import pytest
import torch

from variant.data import EpochSampler, build_loader, set_loader_epoch, steps_per_epoch


class _Indices(torch.utils.data.Dataset):
    """Item i is i, so a batch shows which indices the loader drew; records set_epoch calls."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


@pytest.mark.parametrize("n, world", [(103, 4), (100, 4), (5, 3), (2, 3)])
def test_ranks_cover_the_dataset_with_equal_contiguous_shards(n, world):
    samplers = [EpochSampler(n, seed=1, rank=r, world_size=world) for r in range(world)]
    orders = [s.rank_order() for s in samplers]
    per_rank = -(-n // world)
    assert all(len(order) == per_rank == len(s) for order, s in zip(orders, samplers))
    together = sum(orders, [])
    assert together == samplers[0].global_order().tolist()  # contiguous shards, in rank order
    assert set(together) == set(range(n))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1)).tolist()
    assert together[:n] == perm[: len(together[:n])]  # the official permutation
    padding = together[n:]
    assert padding == (perm * world)[: len(padding)]  # tail = repeated first indices
    if n % world == 0:
        assert len(set(together)) == len(together)  # disjoint when no padding is needed


def test_order_is_a_function_of_seed_and_epoch():
    a, b = EpochSampler(50, seed=3), EpochSampler(50, seed=3)
    for epoch in (0, 4):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert list(a) == list(b)
    a.set_epoch(0)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and sorted(a) == sorted(first)
    # Seeding is seed + epoch, as in the official sampler: (seed 3, epoch 1) == (seed 4, epoch 0).
    assert list(a) == list(EpochSampler(50, seed=4))
    assert list(EpochSampler(10, shuffle=False)) == list(range(10))


def test_start_index_yields_the_tail_of_the_same_order():
    sampler = EpochSampler(37, seed=0, rank=1, world_size=2)
    sampler.set_epoch(5)
    full = list(sampler)
    sampler.set_epoch(5, start_index=7)
    assert list(sampler) == full[7:] and len(sampler) == len(full) - 7
    with pytest.raises(ValueError, match="start_index"):
        sampler.set_epoch(5, start_index=len(full) + 1)


def _drain(loader, num_epochs):
    """Batches of an uninterrupted run from the loader's current position."""
    batches = []
    epoch = loader.sampler.epoch
    for e in range(epoch, epoch + num_epochs):
        if e != epoch:
            set_loader_epoch(loader, e)
        batches.extend(batch.tolist() for batch in loader)
    return batches


@pytest.mark.parametrize("start_step", [0, 3, 5, 8])
def test_resumed_loader_equals_the_uninterrupted_run(start_step):
    dataset = _Indices(23)
    reference = _drain(build_loader(dataset, 4, seed=11, rank=1, world_size=2), 3)
    assert len(reference) == 3 * steps_per_epoch(EpochSampler(23, world_size=2), 4)  # 3 per epoch
    resumed = build_loader(dataset, 4, seed=11, rank=1, world_size=2, start_step=start_step)
    epoch = resumed.sampler.epoch
    assert epoch == start_step // 3 and dataset.epoch == epoch
    tail = _drain(resumed, 3 - epoch)
    assert tail == reference[start_step:]


def test_loader_leaves_the_global_rng_alone_and_keeps_partial_batches_on_request():
    state = torch.get_rng_state()
    loader = build_loader(_Indices(10), 4, seed=0, drop_last=False)
    sizes = [len(batch) for batch in loader]
    assert sizes == [4, 4, 2]
    assert torch.equal(state, torch.get_rng_state())
    with pytest.raises(ValueError, match="drop_last"):
        build_loader(_Indices(3), 4, seed=0)
    with pytest.raises(ValueError, match="rank"):
        EpochSampler(10, rank=2, world_size=2)
