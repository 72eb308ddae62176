"""Tokenizer training: loss goes down, bitwise resume, run-directory rules, CLI, errors."""

import dataclasses
import json

import pytest
import torch

from variant.cli.main import main
from variant.config import VAEConfig
from variant.tokenizer import TokenizerTrainer, tokenizer_preset
from variant.tokenizer_io import load_tokenizer, save_tokenizer


def tiny(**overrides):
    return tokenizer_preset("tiny", **overrides)


def test_steps_reduce_reconstruction_loss(tmp_path):
    trainer = TokenizerTrainer(tiny(epochs=20, num_images=8), tmp_path, progress=False)
    img_B3HW = next(iter(trainer.loader))[0]
    losses = [float(trainer.train_step(img_B3HW)["rec"]) for _ in range(20)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert min(losses[-3:]) < 0.6 * losses[0]


def _train(out, cfg, max_steps=None, resume=False):
    trainer = TokenizerTrainer(cfg, out, resume=resume, progress=False)
    trainer.train(max_steps=max_steps)
    return trainer


def _records(path):
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("img_per_s", None)
    return rows


def test_resume_equals_uninterrupted_run(tmp_path):
    # 2 epochs x 2 steps; the discriminator starts at step 1, codes restart every 2 steps, the
    # interrupted run stops mid-epoch at step 3.
    cfg = tiny(epochs=2, num_images=16, adv_weight=0.1, adv_start_step=1, warmup_steps=2,
               restart_dead_codes_every=2)
    full = _train(tmp_path / "full", cfg)
    _train(tmp_path / "split", cfg, max_steps=3)
    resumed = _train(tmp_path / "split", cfg, resume=True)
    assert full.step == resumed.step == 4
    for a, b in ((full.vae, resumed.vae), (full.disc, resumed.disc)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), "resumed weights differ"
    assert full.vae.quantize.num_usage_updates == resumed.vae.quantize.num_usage_updates
    assert _records(tmp_path / "full") == _records(tmp_path / "split")
    saved = load_tokenizer(tmp_path / "split")  # the run directory resolves to OUT/tokenizer
    assert torch.equal(saved.quantize.embedding.weight, resumed.vae.quantize.embedding.weight)


def test_run_directory_rules(tmp_path):
    cfg = tiny(num_images=8)
    _train(tmp_path / "run", cfg, max_steps=1)
    with pytest.raises(ValueError, match="--resume"):
        TokenizerTrainer(cfg, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match=r"\['lr'\]"):
        TokenizerTrainer(dataclasses.replace(cfg, lr=1.0), tmp_path / "run", resume=True)
    with pytest.raises(ValueError, match="no tokenizer checkpoint"):
        TokenizerTrainer(cfg, tmp_path / "empty", resume=True)


def test_fine_tune_starts_from_init_weights(tmp_path):
    cfg = tiny(num_images=8)
    first = TokenizerTrainer(cfg, tmp_path / "a", progress=False).vae
    save_tokenizer(tmp_path / "init", first)
    torch.manual_seed(123)
    trainer = TokenizerTrainer(dataclasses.replace(cfg, seed=5), tmp_path / "b",
                               init=tmp_path / "init", progress=False)
    assert trainer.vae.training and all(p.requires_grad for p in trainer.vae.parameters())
    assert torch.equal(trainer.vae.encoder.conv_in.weight, first.encoder.conv_in.weight)


def test_perceptual_loss_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="perceptual-weights"):
        TokenizerTrainer(tiny(perceptual_weight=1.0), tmp_path, progress=False)
    with pytest.raises(ValueError, match="not found"):
        TokenizerTrainer(tiny(perceptual_weight=1.0), tmp_path, progress=False,
                         perceptual_weights=[str(tmp_path / "vgg.pth")])
    code = main(["train-tokenizer", "--preset", "tiny", "--out", str(tmp_path / "cli"),
                 "--perceptual-weight", "1"])
    assert code == 2


def test_config_validation():
    with pytest.raises(ValueError, match="reconstruction"):
        tiny(l1_weight=0.0, l2_weight=0.0)
    with pytest.raises(ValueError, match="unknown tokenizer training fields"):
        tokenizer_preset("tiny", learning_rate=1.0)
    with pytest.raises(ValueError, match="unknown tokenizer preset"):
        tokenizer_preset("huge")
    builtin = tokenizer_preset("builtin").vae
    assert builtin.image_size == 64 and builtin.patch_nums == (1, 2, 3, 4, 6, 8)
    assert tokenizer_preset("paper").vae == VAEConfig()  # the official vae_ch160v4096z32


def test_cli_trains_and_tokenizes(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train-tokenizer", "--preset", "tiny", "--out", str(run), "--num-images", "8",
                 "--no-progress", "--epochs", "1"]) == 0
    assert "psnr" in capsys.readouterr().out
    evals = [r for r in _records(run) if r["kind"] == "eval"]
    assert len(evals) == 1 and len(evals[0]["mse"]) == 3 and len(evals[0]["usage"]) == 3
    assert main(["tokenize", "--tokenizer", str(run), "--data", "procedural", "--num-images",
                 "6", "--out", str(tmp_path / "tok"), "--no-progress"]) == 0
    index = json.loads((tmp_path / "tok" / "index.json").read_text())
    assert index["num_samples"] == 6 and index["patch_nums"] == [1, 2, 4]
