"""A second model family needs only the `ScaleModel` protocol: a toy next-scale model, unrelated to
VAR's classes, runs through the sampler, the lean cache, depth plans and the per-scale timers."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from variant import DepthPlan
from variant.efficiency.bench import ScaleTimer
from variant.sampling.attention import multi_part_attention
from variant.sampling.protocol import ScaleModel
from variant.sampling.sampler import generate
from variant.sampling.settings import SamplingConfig


class ToyLayer(nn.Module):
    """One residual attention layer over the cache (two heads, no AdaLN, no MLP)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads, self.qkv, self.out = heads, nn.Linear(width, 3 * width), nn.Linear(width, width)

    def forward(self, x_RlD, kv):
        R, n, D = x_RlD.shape
        q, k, v = self.qkv(x_RlD).view(R, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        keys = kv(k, v)
        scale = 1 / math.sqrt(q.shape[-1])
        if keys.num_parts == 1:
            a = F.scaled_dot_product_attention(q, keys.k, keys.v, scale=scale)
        else:
            a = multi_part_attention(q, keys, scale)
        return x_RlD + self.out(a.transpose(1, 2).reshape(R, n, D))


class ToyNextScale(nn.Module):
    """Condition -> tokens at sides (1, 2, 3) with a 5-word, 2-channel codebook; the "tokenizer"
    accumulates nearest-upsampled codes and the next input is the area-downsampled residual."""

    def __init__(self, depth: int = 3, width: int = 8, heads: int = 2, num_classes: int = 3):
        super().__init__()
        self.patch_nums, self.num_classes, self.depth = (1, 2, 3), num_classes, depth
        self.heads, self.width, self.vocab, self.channels = heads, width, 5, 2
        self.cond = nn.Embedding(num_classes + 1, width)
        self.layers = nn.ModuleList(ToyLayer(width, heads) for _ in range(depth))
        self.embed_in = nn.Linear(self.channels, width)
        self.head = nn.Linear(width, self.vocab)
        self.codebook = nn.Parameter(torch.randn(self.vocab, self.channels))

    num_scales = property(lambda self: len(self.patch_nums))
    device = property(lambda self: self.codebook.device)
    kv_layout = property(lambda self: (self.heads, self.width // self.heads))

    def resolve_plan(self, plan):
        plan = plan or DepthPlan.full(self.depth, self.num_scales)
        plan.check(self.depth, self.num_scales)
        return plan

    def check_labels(self, label_B, allow_null):
        if int(label_B.max()) > self.num_classes - (0 if allow_null else 1):
            raise ValueError("label out of range")

    def start(self, label_R):
        cond_RD = self.cond(label_R)
        return cond_RD.unsqueeze(1), cond_RD

    def run_layers(self, scale_index, x_RlD, ctx, layers, cache):
        for layer in layers:
            x_RlD = self.layers[layer](x_RlD + ctx.unsqueeze(1), cache.callback(layer, scale_index))
        return x_RlD

    def logits(self, h_RlD, ctx):
        return self.head(h_RlD).float()

    def embed_tokens(self, idx_Bl):
        return self.codebook[idx_Bl]

    def embed_probs(self, probs_BlV):
        return probs_BlV @ self.codebook

    def new_latent(self, B):
        side = self.patch_nums[-1]
        return torch.zeros(B, self.channels, side, side, device=self.device)

    def advance(self, scale_index, f_hat, h_BlC):
        B, pn, side = h_BlC.shape[0], self.patch_nums[scale_index], self.patch_nums[-1]
        h_BChw = h_BlC.transpose(1, 2).reshape(B, self.channels, pn, pn)
        f_hat = f_hat + F.interpolate(h_BChw, size=(side, side), mode="nearest")
        if scale_index == self.num_scales - 1:
            return f_hat, None
        nxt = F.adaptive_avg_pool2d(f_hat, self.patch_nums[scale_index + 1])
        return f_hat, nxt.flatten(2).transpose(1, 2)

    def scale_input(self, scale_index, x_BlC, ctx):
        return self.embed_in(x_BlC)

    def decode(self, f_hat):
        return f_hat[:, :1].expand(-1, 3, -1, -1).sigmoid()


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    return ToyNextScale().eval()


def test_toy_implements_the_protocol(toy):
    assert isinstance(toy, ScaleModel)
    assert not hasattr(toy, "blocks") and not hasattr(toy, "vae")  # nothing VAR-specific


@pytest.mark.parametrize("cfg", [0.0, 1.5])
@pytest.mark.parametrize("plan_layers", [None, [[0, 1, 2], [0, 2], [2]]])
def test_sampler_and_cache_run_the_toy(toy, cfg, plan_layers):
    plan = None if plan_layers is None else DepthPlan(plan_layers, 3)
    settings = SamplingConfig(cfg=cfg, top_k=3, top_p=0.9, seed=5)
    out = generate(toy, 4, [0, 1, 2, 0], settings=settings, plan=plan)
    again = generate(toy, 4, [0, 1, 2, 0], settings=settings, plan=plan)
    assert [i.shape for i in out.indices] == [(4, 1), (4, 4), (4, 9)]
    assert all(int(i.max()) < toy.vocab for i in out.indices)
    assert out.images.shape == (4, 3, 3, 3)
    assert all(torch.equal(a, b) for a, b in zip(out.indices, again.indices))
    # the cache's measured peak is the plan's lean bound, in the toy's own layout
    plan = toy.resolve_plan(plan)
    rows = 8 if cfg else 4
    per_token_layer = rows * toy.width * 4 * 2  # rows x heads x head dim x fp32 x (K and V)
    assert out.kv_peak_bytes == plan.kv_peak_token_layers(toy.patch_nums) * per_token_layer


def test_subnet_plan_changes_the_toy_samples(toy):
    settings = SamplingConfig(cfg=0.0, top_k=1, top_p=0.0)
    full = generate(toy, 2, [1, 2], settings=settings)
    sub = generate(toy, 2, [1, 2], settings=settings, plan=DepthPlan([[0, 1, 2], [0], [0]], 3))
    assert torch.equal(full.indices[0], sub.indices[0])  # same network at scale 0
    assert any(not torch.equal(a, b) for a, b in zip(full.indices[1:], sub.indices[1:]))


def test_per_scale_timer_runs_on_the_toy(toy):
    timer = ScaleTimer(toy)
    generate(toy, 2, [0, 1], settings=SamplingConfig(seed=0), trace=timer)
    assert timer.layers == [3, 3, 3]
    assert all(s >= 0 for s in timer.layers_s) and all(s > 0 for s in timer.scale_s)
