"""Invariant 2: teacher-forced pass under a plan == the KV-cached pass on the same tokens."""

import random

import pytest
import torch

from helpers import cached_logits
from variant import DepthPlan, VARConfig
from variant.models.var import VAR

CFG = VARConfig(depth=4, embed_dim=64, num_heads=4, num_classes=10, V=32, Cvae=8,
                patch_nums=(1, 2, 3, 4), drop_path_rate=0.0, cond_drop_rate=0.0)


def _model(shared_aln=False, seed=0):
    torch.manual_seed(seed)
    cfg = VARConfig(**{**CFG.__dict__, "shared_aln": shared_aln})
    var = VAR(cfg).init_weights(init_adaln_gamma=0.5).eval()
    with torch.no_grad():  # make every layer matter: non-trivial gates and scales
        for p in var.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return var


def _inputs(var, B=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, var.L - 1, var.Cvae, generator=g)
    label = torch.randint(0, var.num_classes, (B,), generator=g)
    return label, x


def _random_plan(depth, num_scales, rng):
    sets = []
    for _ in range(num_scales):
        n = rng.randint(1, depth)
        sets.append(sorted(rng.sample(range(depth), n)))
    return DepthPlan(sets, depth)


PLANS = {
    "full": lambda: DepthPlan.full(4, 4),
    "paper-d2-bridge2": lambda: DepthPlan.paper(4, 2, 2, 4),
    "paper-d3-bridge1": lambda: DepthPlan.paper(4, 3, 1, 4),
    "paper-d1-bridge0": lambda: DepthPlan.paper(4, 1, 0, 4),
    "gappy": lambda: DepthPlan([[0, 1, 2, 3], [1, 3], [0, 1, 2, 3], [2]], 4),
}


@pytest.mark.parametrize("shared_aln", [False, True])
@pytest.mark.parametrize("name", sorted(PLANS))
def test_teacher_forced_equals_cached(name, shared_aln):
    var = _model(shared_aln)
    label, x = _inputs(var)
    plan = PLANS[name]()
    with torch.no_grad():
        tf = var(label, x, plan=plan)
        kv, _ = cached_logits(var, label, x, plan)
    assert tf.shape == (3, var.L, var.V)
    assert (tf - kv).abs().max().item() <= 1e-4


def test_random_plans_equal_cached():
    var = _model()
    label, x = _inputs(var)
    rng = random.Random(0)
    for _ in range(8):
        plan = _random_plan(4, 4, rng)
        with torch.no_grad():
            diff = (var(label, x, plan=plan) - cached_logits(var, label, x, plan)[0]).abs().max()
        assert diff.item() <= 1e-4, plan


def test_subnet_differs_from_full_and_matches_truncated_model():
    """A plan running layers {0, 3} everywhere equals a 2-layer model made of those blocks."""
    var = _model()
    label, x = _inputs(var)
    plan = DepthPlan([[0, 3]] * 4, 4)
    small_cfg = VARConfig(**{**CFG.__dict__, "depth": 2})
    small = VAR(small_cfg).eval()
    keep = {"0": "0", "3": "1"}  # old block index -> new block index
    state = {}
    for key, value in var.state_dict().items():
        parts = key.split(".")
        if parts[0] != "blocks":
            state[key] = value
        elif parts[1] in keep:
            state[".".join(["blocks", keep[parts[1]], *parts[2:]])] = value
    small.load_state_dict(state, strict=True)
    with torch.no_grad():
        sub = var(label, x, plan=plan)
        ref = small(label, x)
        full = var(label, x)
    assert (sub - ref).abs().max().item() <= 1e-5
    assert (sub - full).abs().max().item() > 1e-3


def test_gradients_reach_only_active_layers():
    """Layers 1 and 2 run at no scale: the forward skips them, so autograd never sees their
    parameters (grad None, not zero); every parameter of layers 0 and 3 gets a gradient."""
    var = _model().train()
    label, x = _inputs(var)
    plan = DepthPlan([[0, 3], [0], [0, 3], [3]], 4)
    var(label, x, plan=plan).logsumexp(-1).mean().backward()
    for i in (0, 3):
        for name, p in var.blocks[i].named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (i, name)
    for i in (1, 2):
        for name, p in var.blocks[i].named_parameters():
            assert p.grad is None, (i, name)


def test_bad_inputs_raise_clear_errors():
    var = _model()
    label, x = _inputs(var)
    with pytest.raises(ValueError, match="30-layer model but this model has 4 layers"):
        var(label, x, plan=DepthPlan.paper(30, 8, 2, 4))
    with pytest.raises(ValueError, match="scales"):
        var(label, x, plan=DepthPlan.full(4, 3))
    with pytest.raises(ValueError, match=r"\(B, 29, 8\)"):
        var(label, x[:, :5])
    with pytest.raises(ValueError, match="0..9"):
        var(torch.tensor([0, 1, 11]), x)


@pytest.mark.parametrize("backend", ["math", "flex"])
def test_attention_backends_match_sdpa(backend):
    """Every `attn_backend` gives the sdpa model's logits, teacher-forced and from the cache
    (the cache's last-scale reads are multi-part under the gappy plan)."""
    var = _model()
    other = VAR(VARConfig(**{**CFG.__dict__, "attn_backend": backend})).eval()
    other.load_state_dict(var.state_dict())
    label, x = _inputs(var)
    plan = PLANS["gappy"]()
    with torch.no_grad():
        fused, _ = cached_logits(var, label, x, plan)
        cached, _ = cached_logits(other, label, x, plan)
        teacher = other(label, x, plan=plan)
    assert (fused - cached).abs().max().item() <= 1e-5
    assert (cached - teacher).abs().max().item() <= 1e-4
