"""Tokenizer losses: reconstruction, LPIPS weight loading and errors, PatchGAN and hinge terms."""

import pytest
import torch

from variant.models.convert import CheckpointError
from variant.tokenizer.discriminator import PatchDiscriminator
from variant.tokenizer.losses import (
    LPIPS,
    adaptive_adv_weight,
    generator_adv_loss,
    hinge_d_loss,
    load_lpips,
    reconstruction_loss,
)


def images(B=2, side=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 3, side, side, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def lpips_file(tmp_path_factory):
    """Randomly initialised LPIPS-VGG16 weights in our (torchvision + lpips) key layout."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("lpips") / "lpips_random.pth"
    torch.save(LPIPS().state_dict(), path)
    return path


def test_reconstruction_loss_is_finite_and_differentiable():
    rec = images(seed=1).requires_grad_()
    loss = reconstruction_loss(rec, images(), l1_weight=1.0, l2_weight=0.5)
    diff = rec.detach() - images()
    torch.testing.assert_close(loss, diff.abs().mean() + 0.5 * diff.square().mean())
    loss.backward()
    assert torch.isfinite(rec.grad).all() and rec.grad.abs().sum() > 0


def test_lpips_loads_user_weights_and_backpropagates(lpips_file):
    lpips = load_lpips(lpips_file)
    assert not lpips.training and not any(p.requires_grad for p in lpips.parameters())
    x = images(seed=1).requires_grad_()
    dist = lpips(x, images())
    assert dist.shape == (2,) and torch.isfinite(dist).all()
    dist.mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert torch.allclose(lpips(images(), images()), torch.zeros(2))


def test_lpips_reads_the_lpips_package_layout_from_two_files(lpips_file, tmp_path):
    state = torch.load(lpips_file, weights_only=True)
    slices = {1: range(0, 4), 2: range(4, 9), 3: range(9, 16), 4: range(16, 23), 5: range(23, 30)}
    vgg = {}
    for key, value in state.items():
        if key.startswith("features."):
            index = int(key.split(".")[1])
            slice_id = next(s for s, r in slices.items() if index in r)
            vgg[f"net.slice{slice_id}.{key.removeprefix('features.')}"] = value
    torch.save(vgg, tmp_path / "vgg_trunk.pth")
    torch.save({k: v for k, v in state.items() if k.startswith("lin")}, tmp_path / "lin.pth")
    lpips = load_lpips([tmp_path / "vgg_trunk.pth", tmp_path / "lin.pth"])
    torch.testing.assert_close(lpips(images(seed=1), images()),
                               load_lpips(lpips_file)(images(seed=1), images()))


def test_lpips_weight_errors(lpips_file, tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_lpips(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="needs weights"):
        load_lpips([])
    state = torch.load(lpips_file, weights_only=True)
    torch.save({k: v for k, v in state.items() if k.startswith("features.")}, tmp_path / "v.pth")
    with pytest.raises(CheckpointError, match="lin layers"):
        load_lpips(tmp_path / "v.pth")
    state["lin0.model.1.weight"] = torch.zeros(1, 32, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="other shapes"):
        load_lpips(tmp_path / "bad.pth")


def test_patch_discriminator_and_hinge_losses():
    torch.manual_seed(0)
    disc = PatchDiscriminator(channels=16, num_layers=2)
    logits = disc(images(side=32))
    assert logits.shape == (2, 1, 6, 6)
    d_loss = hinge_d_loss(disc(images(side=32)), disc(images(side=32, seed=1)))
    g_loss = generator_adv_loss(disc(images(side=32, seed=1)))
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    d_loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in disc.parameters())
    assert hinge_d_loss(torch.full((2,), 2.0), torch.full((2,), -2.0)) == 0


def test_adaptive_weight_balances_gradient_norms():
    w = torch.randn(4, requires_grad=True)
    nll = (w * 3).sum()
    g = (w * 0.5).sum()
    lam = adaptive_adv_weight(nll, g, w)
    torch.testing.assert_close(lam, torch.tensor(6.0), rtol=1e-3, atol=0)
    assert not lam.requires_grad
