"""Next-scale sampling with classifier-free guidance, top-k/top-p and a lean KV cache.

Semantics follow the official VAR sampler: guidance ramps linearly `t = cfg * k / (K - 1)`,
`logits = (1 + t) * cond - t * uncond` with the conditional rows first; top-k keeps ties at the
threshold; top-p removes the ascending-sorted tail whose cumulative mass is <= 1 - p but always
keeps the arg-max; one multinomial draw (with replacement) per scale on a generator seeded per
call. With `cfg == 0` the unconditional half is skipped (guidance would be a no-op).

Shape legend: B images, B2 rows in the pass (2B with CFG), l tokens of one scale, D width,
C VAE channels, V vocab.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ..models.plan import DepthPlan
from .kv_cache import LeanKVCache

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class GenerationResult:
    images: torch.Tensor  # (B, 3, H, W) in [0, 1], float32
    indices: list[torch.Tensor]  # one LongTensor (B, pn * pn) per scale
    labels: torch.Tensor  # (B,) class ids used
    kv_peak_bytes: int  # largest key/value bytes held at once by the cache
    plan: DepthPlan
    timings: dict[str, float] = field(default_factory=dict)  # seconds: transformer, decoder


def sample_top_k_top_p_(logits_BlV: torch.Tensor, top_k: int, top_p: float,
                        rng: torch.Generator | None) -> torch.Tensor:
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
    probs = logits_BlV.softmax(dim=-1).view(-1, V)
    return torch.multinomial(probs, num_samples=1, replacement=True, generator=rng).view(B, num_tok)


def _gumbel_soft(logits_BlV, tau: float, rng):
    gumbels = -torch.empty_like(logits_BlV).exponential_(generator=rng).log()
    return ((logits_BlV + gumbels) / tau).softmax(-1)


def _labels(var, B: int, label_B, rng, device) -> torch.Tensor:
    if label_B is None:
        uniform = torch.full((1, var.num_classes), 1.0 / var.num_classes, device=device)
        return torch.multinomial(uniform, B, replacement=True, generator=rng).reshape(B)
    if isinstance(label_B, int):
        return torch.full((B,), var.num_classes if label_B < 0 else label_B, device=device)
    label_B = torch.as_tensor(label_B, device=device).long().reshape(-1)
    if label_B.numel() != B:
        raise ValueError(f"got {label_B.numel()} labels for B={B} images; give one per image.")
    return label_B


def _check_args(var, vae, B, cfg, top_k, top_p):
    if vae is None:
        raise ValueError("this VAR has no tokenizer attached; build it with "
                         "variant.build_var(vae, ...) or call var.attach_vae(vae).")
    if not isinstance(B, int) or B <= 0:
        raise ValueError(f"batch size B must be a positive integer, got {B!r}.")
    if top_k < 0 or not 0.0 <= top_p <= 1.0 or cfg < 0:
        raise ValueError(f"need top_k >= 0, 0 <= top_p <= 1 and cfg >= 0; got top_k={top_k}, "
                         f"top_p={top_p}, cfg={cfg}.")


@torch.no_grad()
def generate(var, vae, B: int, label_B=None, *, cfg: float = 1.5, top_k: int = 900,
             top_p: float = 0.96, seed: int | None = None, plan: DepthPlan | None = None,
             more_smooth: bool = False, dtype: torch.dtype = torch.float32,
             progress: bool = False) -> GenerationResult:
    """Sample B images from `var` under `plan` (None: the full network).

    `label_B`: None (uniform random classes, drawn first from the seeded generator), an int
    (negative: unconditional), or a sequence/tensor of B class ids. `seed=None` uses the global RNG.
    `dtype`: compute dtype (bf16/fp16 run under autocast; the residual stream stays fp32).
    """
    _check_args(var, vae, B, cfg, top_k, top_p)
    plan = var.resolve_plan(plan)
    device = var.pos_1LC.device
    rng = None if seed is None else torch.Generator(device=device).manual_seed(int(seed))
    unconditional = isinstance(label_B, int) and label_B < 0
    label_B = _labels(var, B, label_B, rng, device)
    var._check_labels(label_B, allow_null=unconditional)
    if var.training:
        raise ValueError("call var.eval() before sampling (drop-path is active in train mode).")
    use_cfg = cfg != 0
    rows = torch.cat((label_B, torch.full_like(label_B, var.num_classes))) if use_cfg else label_B
    cache = LeanKVCache(plan, var.patch_nums, var.depth, rows.numel(), var.config.heads,
                        var.config.head_dim, dtype, device)
    timer = _Timer(device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        f_hat, indices = _scale_loop(var, vae, B, rows, plan, cache, rng, cfg, top_k, top_p,
                                     more_smooth, use_cfg, progress)
        cache.release_all()
        timer.lap("transformer")
        # channels_last lets oneDNN pick faster convolution kernels on CPU (same values to ~1e-5)
        f_hat = f_hat.contiguous(memory_format=torch.channels_last)
        images = vae.fhat_to_img(f_hat).float().contiguous().add_(1).mul_(0.5)
    timer.lap("decoder")
    return GenerationResult(images, indices, label_B, cache.peak_bytes, plan, timer.laps)


def _scale_loop(var, vae, B, rows, plan, cache, rng, cfg, top_k, top_p, more_smooth, use_cfg,
                progress):
    B2, K = rows.numel(), var.num_scales
    sos = cond_BD = var.condition(rows)
    cond = var.shared_ada_lin(cond_BD)
    lvl_pos = var.lvl_embed(var.lvl_1L) + var.pos_1LC
    x_BlD = (sos.unsqueeze(1).expand(B2, var.first_l, -1)
             + var.pos_start.expand(B2, var.first_l, -1) + lvl_pos[:, :var.first_l])
    side = var.patch_nums[-1]
    f_hat = sos.new_zeros(B, var.Cvae, side, side, dtype=torch.float32)
    embedding = vae.quantize.embedding
    indices = []
    scales = range(K)
    if progress:
        from tqdm.auto import tqdm

        scales = tqdm(scales, desc="scales", leave=False)
    for k in scales:
        pn, ratio = var.patch_nums[k], k / max(1, K - 1)
        for layer in plan.layers_at(k):
            x_BlD = var.blocks[layer](x_BlD, cond, kv=cache.callback(layer, k))
        logits_BlV = var.get_logits(x_BlD, cond_BD)
        if use_cfg:
            t = cfg * ratio
            logits_BlV = (1 + t) * logits_BlV[:B] - t * logits_BlV[B:]
        idx_Bl = sample_top_k_top_p_(logits_BlV, top_k, top_p, rng)
        indices.append(idx_Bl)
        if more_smooth:
            tau = max(0.27 * (1 - 0.95 * ratio), 0.005)
            h_BlC = _gumbel_soft(logits_BlV.mul(1 + ratio), tau, rng) @ embedding.weight
        else:
            h_BlC = embedding(idx_Bl)
        h_BChw = h_BlC.transpose(1, 2).reshape(B, var.Cvae, pn, pn)
        f_hat, next_BCpp = vae.quantize.get_next_autoregressive_input(k, K, f_hat, h_BChw)
        if k != K - 1:
            begin, end = var.begin_ends[k + 1]
            nxt = next_BCpp.view(B, var.Cvae, -1).transpose(1, 2)
            x_BlD = var.word_embed(nxt) + lvl_pos[:, begin:end]
            x_BlD = x_BlD.repeat(2, 1, 1) if use_cfg else x_BlD
    return f_hat, indices


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
