"""TrainConfig presets and validation, the official loss and parameter groups."""

import pytest
import torch
import torch.nn.functional as F

from variant.config import model_preset
from variant.models.var import VAR
from variant.training import TRAIN_PRESETS, TrainConfig, train_preset
from variant.training.config import resume_conflicts
from variant.training.loss import scale_sums, summarize, token_cross_entropy, var_loss
from variant.training.optim import param_groups


def test_presets_are_valid_and_paper_d30_matches_the_paper():
    for name in TRAIN_PRESETS:
        assert isinstance(train_preset(name), TrainConfig)
    paper = train_preset("paper-d30")
    assert paper.model_preset == "var-d30" and paper.subnet_depths == (2, 4, 8, 16)
    assert paper.bridge == 6 and paper.phase_epochs == (5.0, 15.0, 10.0)
    assert paper.peak_lr == 1e-6 and paper.global_batch == 1024 and paper.precision == "bf16"
    assert paper.betas == (0.9, 0.95) and paper.ratio == "progressive"
    with pytest.raises(ValueError, match="unknown training preset"):
        train_preset("nope")


def test_config_round_trip_and_resume_conflicts():
    config = train_preset("tiny").replace(subnet_depths=[2], lr=5e-4)
    again = TrainConfig.from_dict(config.to_dict())
    assert again == config and again.subnet_depths == (2,)
    assert resume_conflicts(config, config.replace(max_steps=9, out_dir="elsewhere")) == []
    assert resume_conflicts(config, config.replace(lr=1.0, seed=4)) == ["lr", "seed"]
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"learning_rate": 1.0})


@pytest.mark.parametrize("changes, message", [
    ({"global_batch": 10, "micro_batch": 4}, "not a multiple of micro_batch"),
    ({"phase_epochs": (1.0, 2.0)}, "three non-negative"),
    ({"subnet_depths": (2, 2)}, "duplicates"),
    ({"precision": "fp8"}, "precision must be one of"),
    ({"dataset": "folder"}, "needs --data-path"),
    ({"p_start": 1.5}, "p_start and p_end"),
])
def test_config_rejects_mistakes_with_a_fix(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_loss_is_official_token_average_and_scale_sums_add_up():
    torch.manual_seed(0)
    begin_ends = [(0, 1), (1, 5), (5, 21)]
    logits = torch.randn(3, 21, 32)
    gt = torch.randint(0, 32, (3, 21))
    ce = token_cross_entropy(logits, gt)
    official = F.cross_entropy(logits.view(-1, 32), gt.view(-1), reduction="none").view(3, 21)
    expected = official.mul(torch.full((1, 21), 1 / 21)).sum(-1).mean()
    assert torch.allclose(var_loss(ce), expected, atol=1e-7)
    smooth = token_cross_entropy(logits, gt, label_smoothing=0.1)
    assert not torch.allclose(smooth, ce)
    stats = summarize(scale_sums(logits, gt, None, begin_ends))
    assert stats["loss"] == pytest.approx(official.mean().item(), rel=1e-6)
    assert stats["scale_loss"][2] == pytest.approx(official[:, 5:].mean().item(), rel=1e-6)
    acc = (logits.argmax(-1) == gt).float()
    assert stats["scale_acc"][1] == pytest.approx(acc[:, 1:5].mean().item())


def test_param_groups_follow_the_official_weight_decay_exclusions():
    var = VAR(model_preset("tiny").var)
    decay, no_decay = param_groups(var)
    names = {id(p): n for n, p in var.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert {"pos_start", "pos_1LC", "lvl_embed.weight", "blocks.0.attn.scale_mul_1H11",
            "blocks.0.attn.q_bias", "blocks.0.attn.v_bias", "head.bias"} <= no_decay_names
    assert {"class_emb.weight", "word_embed.weight", "head.weight",
            "blocks.0.attn.mat_qkv.weight", "blocks.0.ada_lin.1.weight"} <= decay_names
    assert decay["wd_scale"] == 1.0 and no_decay["wd_scale"] == 0.0
    assert len(decay_names) + len(no_decay_names) == len(list(var.parameters()))
