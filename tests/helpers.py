"""Helpers shared by several test modules."""

import contextlib
import io

import torch

from variant.models.var import VAR
from variant.sampling.configuration import Configuration
from variant.sampling.kv_cache import LeanKVCache
from variant.sampling.levers import Levers
from variant.sampling.plan import DepthPlan
from variant.sampling.sampler import RowGroup, generate, scale_loop
from variant.sampling.settings import SamplingConfig


def cached_logits(var: VAR, label_B, x_BLCv, plan: DepthPlan, dtype=torch.float32, *,
                  grow_late=None):
    """Run the sampler's scale loop with the KV cache on teacher inputs -> logits (B, L, V).

    The policy replays the teacher's tokenizer-side inputs `x_BLCv` (B, L - 1, C) instead of
    sampling, so this is the sampling path of `variant.sampling.sampler.scale_loop` itself.
    """
    sizes = [p * p for p in var.patch_nums]
    starts = [sum(sizes[:k]) - 1 for k in range(len(sizes))]  # offsets in x_BLCv (no scale 0)
    logits = []

    def teacher(k, logits_BlV):
        logits.append(logits_BlV)
        if k + 1 < len(sizes):
            return x_BLCv[:, starts[k + 1]:starts[k + 1] + sizes[k + 1]]
        return None

    num_heads, head_dim = var.kv_layout
    cache = LeanKVCache(plan, var.patch_nums, var.depth, x_BLCv.shape[0], num_heads, head_dim,
                        dtype, x_BLCv.device, grow_late=grow_late)
    levers = Levers.neutral(plan, var.num_scales)
    scale_loop(var, [RowGroup(label_B, plan, cache, var.num_scales)], teacher, levers)
    cache.release_all()
    assert cache.live_bytes == 0
    return torch.cat(logits, 1), cache


# ------------------------------------------------------------------ the lever tests' runs
LABELS = {1: [3], 2: [1, 7], 3: [0, 4, 9]}  # class labels per batch size


def same_indices(a, b) -> bool:
    return len(a.indices) == len(b.indices) and all(
        torch.equal(x, y) for x, y in zip(a.indices, b.indices))


def run(var, B=2, plan=None, **settings):
    """A seeded sampling call of B images with these settings (seed 3 unless given)."""
    settings.setdefault("seed", 3)
    return generate(var, B, LABELS[B], settings=SamplingConfig(**settings), plan=plan)


def levers_of(var, settings: SamplingConfig, plan) -> Levers:
    return Configuration.of(var, plan, settings).levers


def main_in_process(argv: list[str]) -> tuple[object, str]:
    """`variant ARGV` in this process: (exit code, stderr); stdout is discarded."""
    from variant.cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_info:
            code = exit_info.code
    return code, err.getvalue()
