"""Tokenizer directories: round trip, fingerprint, reading model dirs, run dirs and .pth files."""

import json

import pytest
import torch

from variant.config import VAEConfig, model_preset
from variant.models.convert import CheckpointError
from variant.models.var import VAR
from variant.models.vqvae import VQVAE
from variant.pretrained import save_pretrained
from variant.tokenizer_io import (
    load_tokenizer,
    read_tokenizer_config,
    save_tokenizer,
    tokenizer_fingerprint,
)

TINY = VAEConfig(V=32, Cvae=8, ch=32, ch_mult=(1, 2), num_res_blocks=1, patch_nums=(1, 2, 4))


def tiny_vae(seed=0, config=TINY):
    torch.manual_seed(seed)
    return VQVAE(config).freeze()


def tokens(vae):
    img = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        return torch.cat(vae.img_to_idxBl(img), dim=1)


def test_round_trip_keeps_tokens_and_fingerprint(tmp_path):
    vae = tiny_vae()
    vae.quantize.ema_vocab_hit_SV.fill_(2.0)
    path = save_tokenizer(tmp_path / "tok", vae, meta={"note": "x"})
    config = json.loads((path / "config.json").read_text())
    assert config["format"] == "variant-tokenizer" and config["version"] == 1
    assert config["vae"]["patch_nums"] == [1, 2, 4] and config["meta"]["note"] == "x"
    assert config["meta"]["fingerprint"] == tokenizer_fingerprint(vae)
    loaded = load_tokenizer(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert loaded.config == TINY and torch.equal(tokens(loaded), tokens(vae))
    assert tokenizer_fingerprint(loaded) == tokenizer_fingerprint(vae)
    assert torch.all(loaded.quantize.ema_vocab_hit_SV == 2.0)
    save_tokenizer(path, tiny_vae(seed=1))  # replaces the directory atomically
    assert tokenizer_fingerprint(load_tokenizer(path)) != tokenizer_fingerprint(vae)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


def test_fingerprint_ignores_usage_statistics_only():
    vae = tiny_vae()
    base = tokenizer_fingerprint(vae)
    vae.quantize.ema_vocab_hit_SV.fill_(5.0)
    assert tokenizer_fingerprint(vae) == base
    with torch.no_grad():
        vae.quantize.embedding.weight[0, 0] += 1e-3
    assert tokenizer_fingerprint(vae) != base


def test_reads_model_directories_and_state_dict_files(tmp_path):
    preset = model_preset("tiny")
    torch.manual_seed(0)
    vae = VQVAE(preset.vae).freeze()
    save_pretrained(tmp_path / "model", VAR(preset.var, vae).init_weights(), vae)
    from_model = load_tokenizer(tmp_path / "model")
    assert tokenizer_fingerprint(from_model) == tokenizer_fingerprint(vae)
    assert read_tokenizer_config(tmp_path / "model")["format"] == "variant-model"
    torch.save(vae.state_dict(), tmp_path / "vae.pth")
    from_pth = load_tokenizer(tmp_path / "vae.pth", patch_nums=(1, 2, 4))
    assert tokenizer_fingerprint(from_pth) == tokenizer_fingerprint(vae)
    trainable = load_tokenizer(tmp_path / "vae.pth", patch_nums=(1, 2, 4), frozen=False)
    assert trainable.training and all(p.requires_grad for p in trainable.parameters())


def test_builtin_tokenizer_is_the_builtin_models():
    assert load_tokenizer("builtin").config == model_preset("builtin").vae


def test_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_tokenizer(tmp_path / "empty")
    save_tokenizer(tmp_path / "tok", tiny_vae())
    with pytest.raises(ValueError, match="patch_nums"):
        load_tokenizer(tmp_path / "tok", patch_nums=(1, 2, 3, 4))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"format": "something"}))
    with pytest.raises(CheckpointError, match="neither a tokenizer nor a model"):
        load_tokenizer(tmp_path / "other")
