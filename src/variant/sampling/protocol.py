"""The per-scale model interface: the steps of next-scale prediction, as the sampler drives them.

A model family (VAR today; a text-to-image next-scale model tomorrow) implements `ScaleModel` and
reuses the depth plans, the lean KV cache, the sampler, the trainer's schedules and the
benchmarks unchanged. One sampling call runs, for every scale k of the plan:

    x_RlD, ctx = model.start(label_R)                     # scale 0's input from the condition
    for k in range(num_scales):
        h_RlD = model.run_layers(k, x_RlD, ctx, plan.layers_at(k), cache)
        logits_RlV = model.logits(h_RlD, ctx)             # guidance and sampling: the sampler's
        f_hat, x_BlC = model.advance(k, f_hat, model.embed_tokens(idx_Bl))
        x_RlD = model.scale_input(k + 1, x_BlC, ctx)      # rows repeated for guidance
    images = model.decode(f_hat)

The loop itself lives once, in `variant.sampling.sampler.scale_loop`; the teacher-forced
equivalence tests and the benchmark's per-scale timers drive these same methods.

Shape legend (the package's, see variant/__init__.py): B images, R rows of a transformer pass
(B, or 2B under classifier-free guidance: conditional rows first), K scales, l tokens of one scale
(`patch_nums[k] ** 2`), D width, A attention heads, E head dim, V vocab, C tokenizer latent
channels, H W image height and width, h w latent height and width (`patch_nums[-1]`).
A scale's l tokens are its p x p map in row-major order (token pruning upsamples hidden states
over that grid), and a row's tokens may be any subset of them in `run_layers` (pruning runs the
pivotal positions only; their input carries its own position embedding).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:  # typing only: the engine does not depend on any model family at run time
    from .kv_cache import KVCache


@runtime_checkable
class ScaleModel(Protocol):
    """What the sampler, the KV cache and the benchmarks need from a next-scale model."""

    patch_nums: tuple[int, ...]  # side of each scale's token map, coarse to fine
    num_classes: int  # condition ids 0..num_classes-1; id num_classes is the null condition
    depth: int  # transformer layers; plans select among 0..depth-1
    training: bool  # sampling refuses train mode (drop-path, class dropout)

    @property
    def num_scales(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def kv_layout(self) -> tuple[int, int]:
        """(A, E): heads and head dim of the keys/values one layer keeps per token."""
        ...

    def check_labels(self, label_B: torch.Tensor, allow_null: bool) -> None:
        """Raise ValueError unless `label_B` is a 1-D integer tensor of valid condition ids."""
        ...

    def start(self, label_R: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Scale 0's input x (R, l0, D) and the per-row condition context (opaque to callers)."""
        ...

    def run_layers(self, scale_index: int, x_RlD: torch.Tensor, ctx: Any,
                   layers: Sequence[int], cache: KVCache) -> torch.Tensor:
        """Run `layers` (in order) on one scale's tokens against the cache -> h (R, l, D)."""
        ...

    def logits(self, h_RlD: torch.Tensor, ctx: Any) -> torch.Tensor:
        """Token logits (R, l, V), float32."""
        ...

    def embed_tokens(self, idx_Bl: torch.Tensor) -> torch.Tensor:
        """Codebook vectors of sampled token ids -> (B, l, C)."""
        ...

    def embed_probs(self, probs_BlV: torch.Tensor) -> torch.Tensor:
        """Probability-weighted codebook vectors (soft tokens) -> (B, l, C)."""
        ...

    def new_latent(self, B: int) -> torch.Tensor:
        """The empty accumulated latent f_hat (B, C, h, w), float32."""
        ...

    def advance(self, scale_index: int, f_hat: torch.Tensor,
                h_BlC: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Add scale k's latent to f_hat through the tokenizer; return (f_hat, next scale's
        tokenizer-side input (B, l', C), or None after the last scale)."""
        ...

    def scale_input(self, scale_index: int, x_BlC: torch.Tensor, ctx: Any) -> torch.Tensor:
        """Scale k's transformer input (B, l, D) from its tokenizer-side input (k >= 1)."""
        ...

    def decode(self, f_hat: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1], float32, from the accumulated latent."""
        ...
