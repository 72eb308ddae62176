"""The multi-scale residual VQVAE: official layout, token round trips, loading, errors, training."""

import pytest
import torch
import torch.nn.functional as F

from variant.config import PATCH_NUMS_256, PATCH_NUMS_1024, VAEConfig
from variant.models.quant import phi_index_table
from variant.models.vqvae import VQVAE, build_vae

TINY = dict(V=32, Cvae=8, ch=32, ch_mult=(1, 2), patch_nums=(1, 2, 4))  # image side 8


def tiny_vae(seed: int = 0, **overrides) -> VQVAE:
    torch.manual_seed(seed)
    return VQVAE(VAEConfig(**{**TINY, **overrides}))


def tiny_images(B: int = 2, side: int = 8, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 3, side, side, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def frozen_vae() -> VQVAE:
    return tiny_vae().freeze()


# --------------------------------------------------------------------------------------------
# official layout


def test_default_state_dict_matches_official_layout():
    with torch.device("meta"):
        vae = build_vae()
    sd = vae.state_dict()
    assert len(sd) == 324
    assert sum(p.numel() for p in vae.parameters()) == 108_948_355
    keys = list(sd)
    assert keys[0] == "encoder.conv_in.weight" and keys[-1] == "post_quant_conv.bias"
    expected = {
        "encoder.conv_in.weight": (160, 3, 3, 3),
        "encoder.down.2.block.0.nin_shortcut.weight": (320, 160, 1, 1),
        "encoder.down.3.downsample.conv.weight": (320, 320, 3, 3),
        "encoder.down.4.attn.1.qkv.weight": (1920, 640, 1, 1),
        "encoder.mid.attn_1.proj_out.weight": (640, 640, 1, 1),
        "encoder.conv_out.weight": (32, 640, 3, 3),
        "decoder.conv_in.weight": (640, 32, 3, 3),
        "decoder.up.4.attn.2.qkv.bias": (1920,),
        "decoder.up.3.block.0.nin_shortcut.weight": (320, 640, 1, 1),
        "decoder.up.1.upsample.conv.weight": (160, 160, 3, 3),
        "decoder.up.0.block.2.conv2.weight": (160, 160, 3, 3),
        "decoder.conv_out.weight": (3, 160, 3, 3),
        "quantize.ema_vocab_hit_SV": (10, 4096),
        "quantize.quant_resi.qresi_ls.3.weight": (32, 32, 3, 3),
        "quantize.embedding.weight": (4096, 32),
        "quant_conv.weight": (32, 32, 3, 3),
        "post_quant_conv.bias": (32,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    absent = (
        "encoder.down.4.downsample.conv.weight",
        "decoder.up.0.upsample.conv.weight",
        "encoder.down.3.attn.0.qkv.weight",
        "decoder.up.3.attn.0.qkv.weight",
        "encoder.down.0.block.0.nin_shortcut.weight",
    )
    assert not set(absent) & set(sd)
    # the usage statistics are a buffer, not a parameter (fill_module and optimizers skip it)
    assert "quantize.ema_vocab_hit_SV" not in dict(vae.named_parameters())


def test_generic_ch_mult_layout(frozen_vae):
    sd = frozen_vae.state_dict()
    assert "encoder.down.1.attn.1.qkv.weight" in sd  # attention at the lowest resolution only
    assert not any(k.startswith("encoder.down.0.attn") for k in sd)
    assert "encoder.down.0.downsample.conv.weight" in sd
    assert not any(k.startswith("encoder.down.1.downsample") for k in sd)
    assert "decoder.up.1.attn.2.qkv.weight" in sd  # num_res_blocks + 1 blocks per up level
    assert "decoder.up.0.block.2.conv1.weight" in sd
    assert "decoder.up.1.upsample.conv.weight" in sd
    assert not any(k.startswith("decoder.up.0.upsample") for k in sd)


@pytest.mark.parametrize(
    "share, keys",
    [
        (0, ["quantize.quant_resi.0.weight", "quantize.quant_resi.2.bias"]),
        (1, ["quantize.quant_resi.qresi.weight"]),
        (3, ["quantize.quant_resi.qresi_ls.0.weight", "quantize.quant_resi.qresi_ls.2.weight"]),
    ],
)
def test_phi_key_names_per_sharing_mode(share, keys):
    sd = tiny_vae(share_quant_resi=share).state_dict()
    phi_keys = {k for k in sd if k.startswith("quantize.quant_resi.")}
    assert set(keys) <= phi_keys
    assert len(phi_keys) == 2 * {0: 3, 1: 1, 3: 3}[share]


def test_zero_quant_resi_has_no_phi_convs():
    sd = tiny_vae(quant_resi=0.0).state_dict()
    assert not any(k.startswith("quantize.quant_resi") for k in sd)


def test_phi_index_table():
    assert phi_index_table(4, 10) == (0, 0, 1, 1, 1, 2, 2, 3, 3, 3)
    assert phi_index_table(4, 14) == (0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3)
    assert phi_index_table(4, 4) == (0, 1, 2, 3)
    with torch.device("meta"):
        assert build_vae().quantize.quant_resi.phi_index == (0, 0, 1, 1, 1, 2, 2, 3, 3, 3)
        vae_1024 = build_vae(patch_nums=PATCH_NUMS_1024)
    assert vae_1024.quantize.quant_resi.phi_index == phi_index_table(4, 14)


# --------------------------------------------------------------------------------------------
# tokens <-> images


def test_tokens_round_trip(frozen_vae):
    img = tiny_images()
    with torch.no_grad():
        idx = frozen_vae.img_to_idxBl(img)
        assert [tuple(t.shape) for t in idx] == [(2, 1), (2, 4), (2, 16)]
        assert all(t.dtype == torch.int64 for t in idx)
        recon = frozen_vae.img_to_reconstructed_img(img)
        torch.testing.assert_close(frozen_vae.idxBl_to_img(idx), recon, atol=1e-6, rtol=0)
        per_scale = frozen_vae.idxBl_to_img(idx, last_one=False)
        assert len(per_scale) == 3
        torch.testing.assert_close(per_scale[-1], recon, atol=1e-6, rtol=0)
        prefixes = frozen_vae.img_to_reconstructed_img(img, last_one=False)
        for a, b in zip(per_scale, prefixes):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert recon.shape == img.shape and recon.abs().max() <= 1.0


def test_var_input_is_area_downsampled_prefix_fhat(frozen_vae):
    img = tiny_images()
    q = frozen_vae.quantize
    with torch.no_grad():
        f_BChw = frozen_vae.img_to_f(img)
        idx = q.f_to_idxBl_or_fhat(f_BChw, to_fhat=False)
        f_hats = q.f_to_idxBl_or_fhat(f_BChw, to_fhat=True)
        x_BLC = frozen_vae.idxBl_to_var_input(idx)
        assert x_BLC.shape == (2, 4 + 16, 8) and x_BLC.dtype == torch.float32
        torch.testing.assert_close(frozen_vae.idxBl_to_var_input(idx[:-1]), x_BLC)
        begin = 0
        for k, pn in enumerate(q.patch_nums[1:]):
            want = F.interpolate(f_hats[k], size=(pn, pn), mode="area").flatten(2).transpose(1, 2)
            torch.testing.assert_close(x_BLC[:, begin : begin + pn * pn], want, atol=1e-6, rtol=0)
            begin += pn * pn


def test_autoregressive_steps_match_teacher_forcing(frozen_vae):
    q = frozen_vae.quantize
    with torch.no_grad():
        idx = frozen_vae.img_to_idxBl(tiny_images())
        x_BLC = q.idxBl_to_var_input(idx)
        f_hat = torch.zeros(2, 8, 4, 4)
        pieces = []
        for k, pn in enumerate(q.patch_nums):
            h_BChw = q.embedding(idx[k]).transpose(1, 2).reshape(2, 8, pn, pn)
            f_hat, next_input = q.get_next_autoregressive_input(k, 3, f_hat, h_BChw)
            if k < 2:
                pieces.append(next_input.flatten(2).transpose(1, 2))
        assert next_input is f_hat
        torch.testing.assert_close(torch.cat(pieces, dim=1), x_BLC, atol=1e-6, rtol=0)
        torch.testing.assert_close(frozen_vae.fhat_to_img(f_hat), frozen_vae.idxBl_to_img(idx))


# --------------------------------------------------------------------------------------------
# loading


def test_load_tolerates_other_number_of_scales_without_mutating_input():
    src = tiny_vae(seed=1, patch_nums=(1, 4))  # 2 usage rows, same latent side
    src.quantize.ema_vocab_hit_SV.fill_(7.0)
    sd = src.state_dict()
    saved = sd["quantize.ema_vocab_hit_SV"]
    dst = tiny_vae(seed=2)
    dst.quantize.ema_vocab_hit_SV.fill_(3.0)
    dst.load_state_dict(sd, strict=True)
    assert sd["quantize.ema_vocab_hit_SV"] is saved and saved.shape == (2, 32)
    assert dst.quantize.ema_vocab_hit_SV.shape == (3, 32)
    assert torch.all(dst.quantize.ema_vocab_hit_SV == 3.0)
    assert torch.equal(dst.quantize.embedding.weight, src.quantize.embedding.weight)
    assert torch.equal(dst.encoder.conv_in.weight, src.encoder.conv_in.weight)
    # matching shapes load as usual
    same = tiny_vae(seed=3, patch_nums=(1, 4))
    same.load_state_dict(sd, strict=True)
    assert torch.all(same.quantize.ema_vocab_hit_SV == 7.0)


def test_strict_load_still_rejects_missing_keys():
    sd = tiny_vae().state_dict()
    del sd["quantize.embedding.weight"]
    with pytest.raises(RuntimeError, match="embedding"):
        tiny_vae().load_state_dict(sd, strict=True)


# --------------------------------------------------------------------------------------------
# user errors


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (2, 3, 16, 16), (2, 3, 8, 6), (3, 8, 8)])
def test_bad_images_raise(frozen_vae, shape):
    with pytest.raises(ValueError, match=r"\(B, 3, 8, 8\)"):
        frozen_vae.img_to_idxBl(torch.zeros(shape))
    with pytest.raises(ValueError, match=r"\(B, 3, 8, 8\)"):
        frozen_vae.img_to_reconstructed_img(torch.zeros(shape))


def test_bad_token_maps_raise(frozen_vae):
    idx = frozen_vae.img_to_idxBl(tiny_images())
    with pytest.raises(ValueError, match="token map 1"):
        frozen_vae.idxBl_to_var_input([idx[0], idx[2]])
    with pytest.raises(ValueError, match="token maps"):
        frozen_vae.idxBl_to_var_input(idx[:1])
    with pytest.raises(ValueError, match="all 3 token maps"):
        frozen_vae.idxBl_to_img(idx[:2])
    with pytest.raises(ValueError, match="num_scales"):
        frozen_vae.quantize.get_next_autoregressive_input(
            0, 4, torch.zeros(2, 8, 4, 4), torch.zeros(2, 8, 1, 1)
        )


def test_build_vae_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown VAEConfig fields"):
        build_vae(chmult=(1, 2))


def test_build_vae_is_frozen_like_official_test_mode():
    with torch.device("meta"):
        vae = build_vae(patch_nums=PATCH_NUMS_256)
        trainable = build_vae(frozen=False)
    assert not vae.training and not any(p.requires_grad for p in vae.parameters())
    assert trainable.training and all(p.requires_grad for p in trainable.parameters())


def test_freeze_returns_self():
    vae = tiny_vae()
    assert vae.freeze() is vae
    assert not vae.training and not any(p.requires_grad for p in vae.parameters())


# --------------------------------------------------------------------------------------------
# tokenizer training


def test_training_forward_backward():
    vae = tiny_vae().train()
    calls = []
    recon, usages_K, vq_loss = vae(tiny_images(), all_reduce_hits=calls.append)
    assert recon.shape == (2, 3, 8, 8) and usages_K.shape == (3,) and vq_loss.ndim == 0
    assert len(calls) == 3 and all(c.shape == (32,) for c in calls)
    assert torch.all(vae.quantize.ema_vocab_hit_SV.sum(dim=1) == torch.tensor([2.0, 8.0, 32.0]))
    (F.mse_loss(recon, tiny_images()) + vq_loss).backward()
    for name in (
        "encoder.conv_in.weight",
        "encoder.down.1.attn.0.qkv.weight",
        "decoder.conv_out.weight",
        "quant_conv.weight",
        "post_quant_conv.weight",
        "quantize.embedding.weight",
        "quantize.quant_resi.qresi_ls.0.weight",
    ):
        grad = vae.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_quantizer_straight_through_and_eval_leaves_statistics():
    vae = tiny_vae().eval()
    q = vae.quantize
    f_BChw = torch.randn(2, 8, 4, 4, requires_grad=True)
    f_hat_st, _, vq_loss = q(f_BChw)
    torch.testing.assert_close(f_hat_st, q.f_to_idxBl_or_fhat(f_BChw, to_fhat=True)[-1])
    weight = torch.randn_like(f_hat_st)
    (grad,) = torch.autograd.grad((f_hat_st * weight).sum(), f_BChw)
    torch.testing.assert_close(grad, weight)  # identity gradient (straight through)
    assert vq_loss.item() > 0
    assert torch.all(q.ema_vocab_hit_SV == 0)  # statistics change in training mode only


def test_tokenizer_overfits_one_batch():
    vae = tiny_vae().train()
    img = tiny_images()
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        recon, _, vq_loss = vae(img)
        loss = F.mse_loss(recon, img) + vq_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
