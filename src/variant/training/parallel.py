"""Processes, devices and parallel wrapping (DDP by default, FSDP2 per block as an option).

Rank and device live in a `DistEnv` value handed to whoever needs them; nothing is stored in
module globals. Under `torchrun` the process group is created from its standard environment
variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT); a plain `python` run is one process.
The model file never sees any of this: `parallelize` wraps it from the outside.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(spec: str, local_rank: int = 0) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was requested but no CUDA device is available; "
                             "use --device cpu.")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def init_distributed(device: str = "auto") -> DistEnv:
    """One process, or the process group torchrun describes (NCCL on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistEnv(device=pick_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistEnv(rank, world_size, local_rank, dev)


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def parallelize(model: nn.Module, env: DistEnv, kind: str, find_unused: bool) -> nn.Module:
    """The module to call for forward/backward: the model itself, DDP around it, or FSDP2.

    FSDP2 shards each transformer block, then the root (embeddings, head); parameters stay fp32
    and autocast picks the compute dtype, as in the single-process run. With one process FSDP2
    applies only where the caller has made a process group (the GPU checks do, to run the
    sharded step at world size 1).
    """
    sharded = kind == "fsdp" and (env.distributed or dist.is_initialized())
    if not env.distributed and not sharded:
        return model
    if sharded:
        mesh = init_device_mesh(env.device.type, (env.world_size,))
        for block in model.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused,
        broadcast_buffers=False)


@contextlib.contextmanager
def gradient_sync(wrapped: nn.Module, enabled: bool):
    """Skip the gradient all-reduce on all micro-batches but the last of an optimizer step."""
    if enabled:
        yield
    elif isinstance(wrapped, nn.parallel.DistributedDataParallel):
        with wrapped.no_sync():
            yield
    elif hasattr(wrapped, "set_requires_gradient_sync"):  # FSDP2
        wrapped.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            wrapped.set_requires_gradient_sync(True)
    else:
        yield


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def grad_norm_and_clip(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Pre-clip global grad norm, a plain tensor also under FSDP2; clips if max_norm > 0."""
    limit = max_norm if max_norm > 0 else float("inf")
    norm = nn.utils.clip_grad_norm_(params, limit)
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm
