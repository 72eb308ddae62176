"""Next-scale sampling with classifier-free guidance, top-k/top-p and a lean KV cache.

Semantics follow the official VAR sampler: guidance ramps linearly `t = cfg * k / (K - 1)`,
`logits = (1 + t) * cond - t * uncond` with the conditional rows first; top-k keeps ties at the
threshold; top-p removes the ascending-sorted tail whose cumulative mass is <= 1 - p but always
keeps the arg-max; one multinomial draw (with replacement) per scale on a generator seeded per
call. With `cfg == 0` the unconditional half is skipped (guidance would be a no-op).

The sampler drives any `ScaleModel` (sampling/protocol.py); the scale loop exists once, here.
The rows run as the groups of the configuration's work (sampling/work.py), each a `RowGroup`
with its own cache, all counted by one `KVMeter`: with every lever neutral one group of the
conditional and unconditional rows under one lean cache, as the official sampler runs them;
under levers (sampling/levers.py) the conditional rows under the plan and the guiding rows under
their own plan up to their last scale. `predict_kv_peak_bytes`
runs this same loop on the meta device with a model that does no arithmetic: the cost model's
KV prediction, exact by construction of the order of allocations.
Shape legend: the package's (variant/__init__.py); R rows as in sampling/protocol.py.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from ..compiling import CompiledSteps
from .configuration import Configuration
from .kv_cache import ChunkKVCache, KVCache, KVMeter, LeanKVCache, RowGroupsCache
from .levers import Levers, gather_positions, pivotal_positions, restore_positions
from .protocol import ScaleModel
from .settings import SamplingConfig
from .work import run_together

if TYPE_CHECKING:
    from .plan import DepthPlan

# Called as trace(event, scale_index) at "scale" (a scale starts), "layers" (its layers are
# done) and "decode" (the decoder starts, scale_index -1): the benchmark's per-scale timers.
Trace = Callable[[str, int], None]


def _no_trace(event: str, scale_index: int) -> None:
    pass


@dataclass
class GenerationResult:
    images: torch.Tensor  # (B, 3, H, W) in [0, 1], float32
    indices: list[torch.Tensor]  # one LongTensor (B, pn * pn) per scale
    labels: torch.Tensor  # (B,) class ids used
    kv_peak_bytes: int  # largest key/value bytes held at once by the cache(s)
    plan: DepthPlan
    timings: dict[str, float] = field(default_factory=dict)  # seconds: transformer, decoder
    settings: SamplingConfig = field(default_factory=SamplingConfig)
    levers: Levers | None = None  # the normalised levers that ran


@dataclass(eq=False)
class RowGroup:
    """Transformer rows that run together: their conditions, plan, cache and per-scale state."""

    rows: torch.Tensor  # (R,) condition ids
    plan: DepthPlan
    cache: KVCache
    stop: int  # scales 0..stop-1 run
    x: torch.Tensor | None = None  # this scale's input (R, l, D)
    ctx: Any = None
    h_prev: torch.Tensor | None = None  # the previous scale's final hidden states, for pruning


def row_groups(model: ScaleModel, label_B: torch.Tensor, levers: Levers, dtype: torch.dtype,
               device) -> list[RowGroup]:
    """The row groups of one call (sampling/work.py), their caches sharing one `KVMeter`."""
    num_heads, head_dim = model.kv_layout
    null = torch.full_like(label_B, model.num_classes)
    rows_of = {"own": lambda: label_B, "null": lambda: null,
               "own+null": lambda: torch.cat((label_B, null))}
    cache_type = (functools.partial(ChunkKVCache, visible=levers.visible)
                  if levers.restricts_context else LeanKVCache)
    sizes = levers.sizes(model.patch_nums)
    formats = [levers.storage(k) for k in range(len(sizes))]
    meter = KVMeter()
    groups = []
    for group in levers.groups:
        rows = rows_of[group.condition]()
        pn, own = model.patch_nums[:group.stop], sizes[:group.stop]
        cache = cache_type(group.plan, pn, model.depth, rows.numel(), num_heads, head_dim, dtype,
                           device, sizes=own, meter=meter, formats=formats[:group.stop])
        groups.append(RowGroup(rows, group.plan, cache, group.stop))
    return groups


# One generator for the call ('batch' stream), one per image ('per-image'), or None (global RNG).
Streams = torch.Generator | list[torch.Generator] | None


def image_seed(seed: int, index: int) -> int:
    """The seed of image `index`'s own stream in a call seeded `seed` (rng 'per-image')."""
    digest = hashlib.sha256(f"variant-image:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def random_streams(settings: SamplingConfig, B: int, image_keys, device) -> Streams:
    """The call's random streams. `image_keys`: per-image streams only, the (seed, index) of each
    image (default: (settings.seed, 0..B-1)), so a server can batch images of several requests
    and each still draws from the stream its own request gives it."""
    if settings.rng == "batch":
        if image_keys is not None:
            raise ValueError("image_keys need per-image streams: set rng='per-image'.")
        return None if settings.seed is None else torch.Generator(device=device).manual_seed(
            int(settings.seed))
    if image_keys is None:
        seed = settings.seed if settings.seed is not None else int(torch.randint(2**62, ()))
        image_keys = [(seed, i) for i in range(B)]
    if len(image_keys) != B:
        raise ValueError(f"got {len(image_keys)} image keys for B={B} images; give one per image.")
    return [torch.Generator(device=device).manual_seed(image_seed(seed, index))
            for seed, index in image_keys]


def sample_top_k_top_p_(logits_BlV: torch.Tensor, top_k: int, top_p: float,
                        rng: Streams) -> torch.Tensor:
    """Mask `logits_BlV` in place by top-k then top-p and draw one index per row -> (B, l)."""
    B, num_tok, V = logits_BlV.shape
    if top_k > 0:
        kth = logits_BlV.topk(min(top_k, V), largest=True, sorted=False, dim=-1)[0]
        logits_BlV.masked_fill_(logits_BlV < kth.amin(dim=-1, keepdim=True), -torch.inf)
    if top_p > 0:
        sorted_logits, sorted_idx = logits_BlV.sort(dim=-1, descending=False)
        remove = sorted_logits.softmax(dim=-1).cumsum_(dim=-1) <= (1 - top_p)
        remove[..., -1:] = False
        logits_BlV.masked_fill_(remove.scatter(-1, sorted_idx, remove), -torch.inf)
    if isinstance(rng, list):  # per-image streams: each image's draws from its own generator
        return torch.stack([torch.multinomial(p_lV, num_samples=1, replacement=True, generator=g)
                            .view(num_tok) for p_lV, g in zip(logits_BlV.softmax(dim=-1), rng)])
    probs = logits_BlV.softmax(dim=-1).view(-1, V)
    return torch.multinomial(probs, num_samples=1, replacement=True, generator=rng).view(B, num_tok)


def _gumbel_soft(logits_BlV, tau: float, rng):
    if isinstance(rng, list):
        noise = torch.stack([torch.empty_like(x).exponential_(generator=g)
                             for x, g in zip(logits_BlV, rng)])
    else:
        noise = torch.empty_like(logits_BlV).exponential_(generator=rng)
    gumbels = -noise.log()
    return ((logits_BlV + gumbels) / tau).softmax(-1)


def _labels(model: ScaleModel, B: int, label_B, rng, device) -> torch.Tensor:
    if label_B is None:
        uniform = torch.full((1, model.num_classes), 1.0 / model.num_classes, device=device)
        if isinstance(rng, list):  # per-image streams: each image draws its own class
            return torch.cat([torch.multinomial(uniform, 1, generator=g).reshape(1) for g in rng])
        return torch.multinomial(uniform, B, replacement=True, generator=rng).reshape(B)
    if isinstance(label_B, int):
        return torch.full((B,), model.num_classes if label_B < 0 else label_B, device=device)
    label_B = torch.as_tensor(label_B, device=device).long().reshape(-1)
    if label_B.numel() != B:
        raise ValueError(f"got {label_B.numel()} labels for B={B} images; give one per image.")
    return label_B


@torch.no_grad()
def generate(model: ScaleModel, B: int, label_B=None, *,
             configuration: Configuration | None = None, settings: SamplingConfig | None = None,
             plan: DepthPlan | str | None = None, progress: bool = False,
             trace: Trace | None = None, image_keys=None) -> GenerationResult:
    """Sample B images from `model` under a configuration (plan, settings and levers).

    `configuration`: resolved once by the caller (`Configuration.of`/`resolve`); without it,
    one is built here from `plan` (None: the full network) and `settings` (default: the official
    ones, `SamplingConfig()`). `label_B`: None (uniform random classes, drawn first from the
    seeded generator), an int (negative: unconditional), or a sequence/tensor of B class ids.
    bf16/fp16 run under autocast while the residual stream stays fp32. `image_keys`: with
    `settings.rng == 'per-image'`, the (seed, index) stream of each image (`random_streams`).
    """
    if configuration is None:
        configuration = Configuration.of(model, plan, settings)
    elif plan is not None or settings is not None:
        raise ValueError("give a configuration, or a plan and settings, not both.")
    settings, levers = configuration.settings, configuration.levers
    levers.check_model(model)
    if not isinstance(B, int) or B <= 0:
        raise ValueError(f"batch size B must be a positive integer, got {B!r}.")
    device = model.device
    rng = random_streams(settings, B, image_keys, device)
    unconditional = isinstance(label_B, int) and label_B < 0
    label_B = _labels(model, B, label_B, rng, device)
    model.check_labels(label_B, allow_null=unconditional)
    if model.training:
        raise ValueError("call model.eval() before sampling (drop-path is active in train mode).")
    dtype = settings.torch_dtype
    if settings.compile:  # the same steps, each scale's under torch.compile
        model = CompiledSteps(model)
    groups = row_groups(model, label_B, levers, dtype, device)
    timer = _Timer(device)
    trace = trace or _no_trace
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        tokens = TokenSampler(model, B, settings, rng)
        scale_loop(model, groups, tokens, levers, progress, trace)
        for group in groups:
            group.cache.release_all()
        timer.lap("transformer")
        trace("decode", -1)
        images = model.decode(tokens.f_hat)
    timer.lap("decoder")
    return GenerationResult(images, tokens.indices, label_B, groups[0].cache.peak_bytes,
                            configuration.plan, timer.laps, settings, levers)


# Given scale k's logits (R, l, V), choose its tokens and return the next scale's
# tokenizer-side input (B, l', C), or None after the last scale.
TokenPolicy = Callable[[int, torch.Tensor], "torch.Tensor | None"]


def scale_loop(model: ScaleModel, groups: Sequence[RowGroup], policy: TokenPolicy,
               levers: Levers, progress: bool = False,
               trace: Trace = _no_trace) -> None:
    """The scale loop of next-scale prediction, the only one in the package.

    `groups`: the row groups (conditional rows first); their logits are concatenated in that
    order for `policy`, which chooses each scale's tokens: `TokenSampler` samples them
    (guidance, top-k, top-p); the equivalence tests replay teacher tokens. Inputs with fewer
    rows than a group (the B images under guidance) are repeated to its rows. Under pruning
    only the pivotal positions run the layers (sampling/levers.py).
    """
    K = model.num_scales
    thin = levers.thins_tokens
    for group in groups:
        group.x, group.ctx = model.start(group.rows)
    joint = {}  # the context of groups run together, by their positions in `groups`
    pivots = None  # (B, n) positions that run the layers at this scale; None: all
    for k in tqdm(range(K), desc="scales", leave=False) if progress else range(K):
        trace("scale", k)
        logits = []
        for batch in run_together(groups, k):
            xs = [g.x if pivots is None else gather_positions(g.x, pivots) for g in batch]
            if len(batch) == 1:
                x_RlD, ctx, cache = xs[0], batch[0].ctx, batch[0].cache
            else:  # one pass over the groups' rows: the weights are read once
                key = tuple(map(id, batch))
                if key not in joint:
                    joint[key] = model.start(torch.cat([g.rows for g in batch]))[1]
                x_RlD, ctx = torch.cat(xs), joint[key]
                cache = RowGroupsCache([g.cache for g in batch], [g.rows.numel() for g in batch])
            h_RlD = model.run_layers(k, x_RlD, ctx, batch[0].plan.layers_at(k), cache)
            if pivots is not None:
                h_prev = torch.cat([g.h_prev for g in batch]) if len(batch) > 1 else batch[0].h_prev
                h_RlD = restore_positions(h_RlD, pivots, h_prev, model.patch_nums[k])
            if thin:
                for g, h in zip(batch, h_RlD.split([g.rows.numel() for g in batch])):
                    g.h_prev = h
            logits.append(model.logits(h_RlD, ctx))
        trace("layers", k)
        x_BlC = policy(k, logits[0] if len(logits) == 1 else torch.cat(logits))
        if x_BlC is None:
            continue
        pivots = _pivots(levers, k + 1, x_BlC)
        for group in groups:
            if k + 1 < group.stop:
                x_RlD = model.scale_input(k + 1, x_BlC, group.ctx)
                R = group.rows.numel()
                group.x = x_RlD if x_RlD.shape[0] == R else x_RlD.repeat(R // x_RlD.shape[0], 1, 1)
            else:
                group.x = group.h_prev = None


def _pivots(levers: Levers, scale_index: int, x_BlC: torch.Tensor):
    if not levers.thins_tokens:
        return None
    n = levers.tokens_run(scale_index, x_BlC.shape[1])
    return None if n == x_BlC.shape[1] else pivotal_positions(x_BlC, n)


class TokenSampler:
    """The sampling policy: guidance, top-k/top-p draws, then the tokenizer's next input.

    Holds the accumulated latent `f_hat` (B, C, h, w) and the drawn token ids per scale.
    """

    def __init__(self, model: ScaleModel, B: int, settings: SamplingConfig, rng: Streams):
        self.model, self.B, self.settings, self.rng = model, B, settings, rng
        self.f_hat = model.new_latent(B)
        self.indices: list[torch.Tensor] = []

    def __call__(self, k: int, logits_RlV: torch.Tensor) -> torch.Tensor | None:
        B, s = self.B, self.settings
        ratio = k / max(1, self.model.num_scales - 1)
        logits_BlV = logits_RlV
        if logits_RlV.shape[0] != B:  # conditional rows first, then the guiding rows
            t = s.cfg * ratio
            logits_BlV = (1 + t) * logits_RlV[:B] - t * logits_RlV[B:]
        idx_Bl = sample_top_k_top_p_(logits_BlV, s.top_k, s.top_p, self.rng)
        self.indices.append(idx_Bl)
        if s.more_smooth:
            tau = max(0.27 * (1 - 0.95 * ratio), 0.005)
            h_BlC = self.model.embed_probs(_gumbel_soft(logits_BlV.mul(1 + ratio), tau, self.rng))
        else:
            h_BlC = self.model.embed_tokens(idx_Bl)
        self.f_hat, x_BlC = self.model.advance(k, self.f_hat, h_BlC)
        return x_BlC


class _Timer:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.laps: dict[str, float] = {}
        self.t = self._now()

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def lap(self, name: str) -> None:
        now = self._now()
        self.laps[name] = now - self.t
        self.t = now


# -------------------------------------------------------------------- KV prediction
class _ShapeModel:
    """A `ScaleModel` that only has shapes: runs the cache's bookkeeping, no arithmetic."""

    def __init__(self, patch_nums, depth, kv_layout, dtype):
        self.patch_nums, self.depth, self.kv_layout = tuple(patch_nums), depth, kv_layout
        self.num_scales, self.num_classes, self.dtype = len(patch_nums), 1, dtype

    def start(self, label_R):
        return torch.empty(label_R.shape[0], 1, 1, device="meta"), None

    def run_layers(self, scale_index, x_RlD, ctx, layers, cache):
        A, E = self.kv_layout
        new = torch.empty(x_RlD.shape[0], A, x_RlD.shape[1], E, dtype=self.dtype, device="meta")
        for layer in layers:
            cache.callback(layer, scale_index)(new, new)
        return x_RlD

    def logits(self, h_RlD, ctx):
        return h_RlD

    def scale_input(self, scale_index, x_BlC, ctx):
        return x_BlC


@functools.lru_cache(maxsize=512)
def predict_kv_peak_bytes(patch_nums: tuple[int, ...], depth: int, kv_layout: tuple[int, int],
                          batch: int, levers: Levers, dtype: torch.dtype) -> int:
    """The peak key/value bytes of one sampling call of `batch` images, without running a
    model: `scale_loop` with the same row groups and caches as `generate`, on the meta device.
    The one KV prediction of the package (the cost model's)."""
    model = _ShapeModel(patch_nums, depth, kv_layout, dtype)
    # labels on the meta device: a dry run allocates nothing that grows with the batch
    labels = torch.zeros(batch, dtype=torch.long, device="meta")
    groups = row_groups(model, labels, levers, dtype, "meta")
    sides = [p * p for p in patch_nums]

    def shapes_only(k, logits):
        return None if k + 1 == len(sides) else torch.empty(batch, sides[k + 1], 1,
                                                            device="meta")

    scale_loop(model, groups, shapes_only, levers)
    return groups[0].cache.peak_bytes
