"""Invariant 1 for the tokenizer: our VQVAE reproduces the official implementation.

Fixtures in tests/fixtures/golden come from running the official code on tiny random VQVAEs (see
the README there); the weights are regenerated from seeds by golden_weights.py, which fills
parameters in sorted-name order, so equal outputs also prove equal parameter names and shapes.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from golden_weights import fill_module, golden_images
from variant.config import VAEConfig
from variant.models.vqvae import VQVAE

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
CONFIGS = {
    "a": dict(patch_nums=(1, 2, 3, 4, 5, 6, 8, 10, 13, 16), img_seed=3, side=256),
    "b": dict(patch_nums=(1, 2, 3, 4), img_seed=5, side=64),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def golden(request):
    name = request.param
    c = CONFIGS[name]
    vae = VQVAE(VAEConfig(V=64, Cvae=8, ch=32, share_quant_resi=4, patch_nums=c["patch_nums"]))
    fill_module(vae, seed=1)
    img = golden_images(seed=c["img_seed"], B=2, side=c["side"])
    return name, vae.freeze(), img, load_file(str(GOLDEN / f"golden_{name}.safetensors"))


def test_state_dict_matches_official_keys(golden):
    name, vae, _, _ = golden
    official = json.loads((GOLDEN / "keys.json").read_text())[f"vae_{name}"]
    ours = {k: list(v.shape) for k, v in vae.state_dict().items()}
    assert list(ours) == list(official)
    assert ours == official


def test_tokens_var_input_and_reconstruction(golden):
    name, vae, img, ref = golden
    if "img" in ref:
        assert torch.equal(img, ref["img"])
    with torch.no_grad():
        idx = vae.img_to_idxBl(img)
        for k, idx_Bl in enumerate(idx):
            assert torch.equal(idx_Bl, ref[f"idx_{k}"]), f"scale {k}"
        x_BLC = vae.idxBl_to_var_input(idx)
        torch.testing.assert_close(x_BLC, ref["x_BLCv"], atol=1e-5, rtol=0)
        recon = vae.img_to_reconstructed_img(img, last_one=True)
        torch.testing.assert_close(recon, ref["recon"], atol=1e-4, rtol=0)


def test_sampler_decode_of_greedy_tokens(golden):
    """The VQVAE half of the official sampler: f_hat accumulated scale by scale with
    `get_next_autoregressive_input`, decoded, mapped to [0, 1] (the image is stored in fp16)."""
    _, vae, _, ref = golden
    q = vae.quantize
    K, side = len(q.patch_nums), q.patch_nums[-1]
    f_hat = torch.zeros(2, 8, side, side)
    with torch.no_grad():
        for k, pn in enumerate(q.patch_nums):
            h_BChw = q.embedding(ref[f"greedy_idx_{k}"]).transpose(1, 2).reshape(2, 8, pn, pn)
            f_hat, _ = q.get_next_autoregressive_input(k, K, f_hat, h_BChw)
        img = vae.fhat_to_img(f_hat).add_(1).mul_(0.5)
    torch.testing.assert_close(img, ref["greedy_img"].float(), atol=1e-3, rtol=0)
