import pytest
import torch

from variant import DepthPlan
from variant.pretrained import random_model
from variant.sampling.sampler import generate, sample_top_k_top_p_
from variant.sampling.settings import SamplingConfig


@pytest.fixture(scope="module")
def tiny():
    var, vae = random_model("tiny", "cpu", seed=0)
    with torch.no_grad():  # move off the near-identity init so every layer matters
        for p in var.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return var, vae


def test_result_fields(tiny):
    var, vae = tiny
    out = var.generate(3, [1, 2, 3], seed=0, top_k=5, top_p=0.9)
    assert out.images.shape == (3, 3, vae.config.image_size, vae.config.image_size)
    assert out.images.dtype == torch.float32
    assert 0.0 <= out.images.min() and out.images.max() <= 1.0
    assert [i.shape for i in out.indices] == [(3, p * p) for p in var.patch_nums]
    assert all(i.dtype == torch.int64 for i in out.indices)
    assert out.kv_peak_bytes > 0 and out.labels.tolist() == [1, 2, 3]
    assert set(out.timings) == {"transformer", "decoder"}


def test_same_seed_same_images_other_seed_differs(tiny):
    var, _ = tiny
    plan = DepthPlan.paper(4, 2, 1, 3)
    a = var.generate(4, [0, 1, 2, 3], seed=7, plan=plan, top_k=0, top_p=0.0)
    b = var.generate(4, [0, 1, 2, 3], seed=7, plan=plan, top_k=0, top_p=0.0)
    c = var.generate(4, [0, 1, 2, 3], seed=8, plan=plan, top_k=0, top_p=0.0)
    assert torch.equal(a.images, b.images)
    assert all(torch.equal(x, y) for x, y in zip(a.indices, b.indices))
    assert not all(torch.equal(x, y) for x, y in zip(a.indices, c.indices))


def test_plan_changes_the_network_and_the_cache(tiny):
    var, _ = tiny
    full = var.generate(2, [1, 1], seed=0, top_k=1)
    sub = var.generate(2, [1, 1], seed=0, top_k=1, plan=DepthPlan.paper(4, 2, 1, 3))
    assert sub.kv_peak_bytes < full.kv_peak_bytes
    assert not torch.equal(full.images, sub.images)


def test_sampled_tokens_score_like_teacher_forcing(tiny):
    """Greedy tokens fed back through the teacher-forced pass give the same argmax (cfg=0)."""
    var, vae = tiny
    plan = DepthPlan([[0, 1, 2, 3], [1, 2], [0, 3]], 4)
    out = var.generate(2, [4, 5], seed=0, top_k=1, cfg=0.0, plan=plan)
    x = vae.idxBl_to_var_input(out.indices)
    with torch.no_grad():
        logits = var(out.labels, x, plan=plan)
    assert torch.equal(logits.argmax(-1), torch.cat(out.indices, 1))


def test_labels_none_uses_the_seeded_generator(tiny):
    var, _ = tiny
    a = var.generate(6, None, seed=3)
    b = var.generate(6, None, seed=3)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.images, b.images)
    unconditional = var.generate(2, -1, seed=0)
    assert unconditional.labels.tolist() == [var.num_classes] * 2


def test_bf16_sampling_runs(tiny):
    var, vae = tiny
    out = generate(var, 2, [0, 1], settings=SamplingConfig(seed=0, dtype=torch.bfloat16))
    assert out.kv_peak_bytes == var.generate(2, [0, 1], seed=0, dtype="bf16").kv_peak_bytes
    assert out.images.dtype == torch.float32 and torch.isfinite(out.images).all()
    fp32 = var.generate(2, [0, 1], seed=0, dtype="fp32")
    assert out.kv_peak_bytes * 2 == fp32.kv_peak_bytes


def test_top_k_keeps_ties_and_top_p_keeps_argmax():
    logits = torch.tensor([[[1.0, 3.0, 3.0, 0.0, 2.0]]])
    masked = logits.clone()
    sample_top_k_top_p_(masked, top_k=2, top_p=0.0, rng=torch.Generator().manual_seed(0))
    assert torch.isinf(masked[0, 0, [0, 3, 4]]).all() and torch.isfinite(masked[0, 0, 1:3]).all()
    peaked = torch.tensor([[[10.0, 0.0, 0.0]]])
    idx = sample_top_k_top_p_(peaked, top_k=0, top_p=0.01, rng=None)
    assert idx.item() == 0 and torch.isinf(peaked[0, 0, 1:]).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(B=0, label_B=None), "positive integer"),
    (dict(B=2, label_B=[1, 10]), "0..9"),
    (dict(B=2, label_B=[1, 2, 3]), "one per image"),
    (dict(B=2, label_B=None, top_k=-1), "top_k >= 0"),
    (dict(B=2, label_B=None, plan=DepthPlan.full(5, 3)), "5-layer"),
])
def test_bad_arguments(tiny, kwargs, message):
    var, _ = tiny
    with pytest.raises(ValueError, match=message):
        var.generate(**kwargs)


def test_train_mode_is_refused(tiny):
    var, _ = tiny
    var.train()
    try:
        with pytest.raises(ValueError, match="eval"):
            var.generate(1, [0])
    finally:
        var.eval()
