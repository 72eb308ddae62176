"""The training loop: learning, data formats, accumulation, exports, observability, the CLI."""

import json
import logging
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
from train_helpers import assert_weights_equal, final_weights

from variant.cli.main import main
from variant.pretrained import load_model
from variant.training import Trainer
from variant.training.build import build_models
from variant.training.data import MicroBatchSampler
from variant.training.schedule import PlanSchedule


def _losses(out_dir):
    lines = (Path(out_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_overfits_a_small_set(tiny):
    config = tiny(num_images=16, global_batch=16, phase_epochs=(30.0, 0.0, 0.0),
                  ratio="full-only", lr=3e-3, cond_drop_rate=0.0, warmup_epochs=2.0,
                  lr_decay="constant")
    Trainer(config).fit()
    records = _losses(config.out_dir)
    assert len(records) == 30 and {r["plan"] for r in records} == {"full"}
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]


def test_steps_follow_the_plan_schedule_and_log_per_plan_scales(tiny):
    config = tiny(max_steps=8, ratio="fixed:0.5", subnet_depths=(2, 3))
    trainer = Trainer(config)
    trainer.fit()
    schedule = PlanSchedule(config, 4, 3, trainer.steps_per_epoch)
    records = _losses(config.out_dir)
    assert [r["plan"] for r in records] == [schedule.name(s) for s in range(8)]
    assert all(r["p"] == 0.5 for r in records)


def test_pre_tokenised_data_trains_like_images_with_the_same_flips(tiny, tmp_path):
    from variant.data.procedural import ProceduralImages
    from variant.data.tokens import tokenize_dataset

    images_cfg = tiny("images", max_steps=4, hflip=True)
    Trainer(images_cfg).fit()
    _, vae = build_models(images_cfg)
    images = ProceduralImages(images_cfg.num_images, 8, images_cfg.seed, 10)
    tokenize_dataset(vae, images, tmp_path / "tokens", shard_size=40, batch_size=16)
    tokens_cfg = tiny("tokens", max_steps=4, hflip=True, dataset="tokens",
                      data_path=str(tmp_path / "tokens"))
    Trainer(tokens_cfg).fit()
    assert_weights_equal(final_weights(images_cfg.out_dir), final_weights(tokens_cfg.out_dir))
    with pytest.raises(ValueError, match="tokenizer"):  # tokens of another tokenizer
        Trainer(tokens_cfg.replace(seed=4, out_dir=str(tmp_path / "other")))


class ShortTokens(torch.utils.data.Dataset):
    sample_format = "tokens"

    def __len__(self):
        return 16

    def __getitem__(self, i):
        return torch.zeros(5, dtype=torch.long), 0


def test_pre_tokenised_samples_of_the_wrong_length_are_refused(tiny):
    with pytest.raises(ValueError, match="pre-tokenised samples must be"):
        Trainer(tiny(max_steps=1), dataset=ShortTokens()).fit()


def test_precision_bf16_runs_on_cpu_and_fp16_needs_cuda(tiny):
    trainer = Trainer(tiny("bf16", max_steps=2, precision="bf16"))
    assert trainer.amp_dtype is torch.bfloat16 and trainer.scaler is None
    trainer.fit()
    assert all(r["loss"] == r["loss"] for r in _losses(trainer.config.out_dir))  # not NaN
    assert Trainer(tiny("fp32", max_steps=1)).amp_dtype is None  # auto on CPU
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        Trainer(tiny("fp16", max_steps=1, precision="fp16", device="cpu"))


def test_micro_batches_of_a_step_are_the_slots_of_the_global_batch():
    one = MicroBatchSampler(40, micro_batch=4, accum=2, seed=1)
    ranks = [MicroBatchSampler(40, micro_batch=4, accum=1, seed=1, rank=r, world_size=2)
             for r in range(2)]
    one.set_epoch(3, start_step=1)
    for r in ranks:
        r.set_epoch(3, start_step=1)
    single = list(one)
    per_rank = [list(r) for r in ranks]
    assert single[0::2] == per_rank[0] and single[1::2] == per_rank[1]
    assert len(single) == 2 * (5 - 1)


def test_bridge_zero_leaves_layers_unused_and_still_trains(tiny):
    config = tiny(max_steps=2, bridge=0, ratio="fixed:1.0", subnet_depths=(2,))
    result = Trainer(config).fit()
    assert result.step == 2


def test_final_model_directory_samples_and_tensorboard_is_optional(tiny, caplog):
    config = tiny(max_steps=2, tensorboard=True, label_smoothing=0.1)
    with caplog.at_level(logging.INFO, logger="variant"):
        result = Trainer(config).fit()
    var, vae = load_model(result.final_model)
    meta = json.loads((result.final_model / "config.json").read_text())["meta"]
    assert meta["subnet_depths"] == [2, 3] and meta["bridge"] == 2
    out = var.generate(2, torch.tensor([1, 2]), top_k=0, top_p=0.0, seed=0)
    assert out.images.shape == (2, 3, 8, 8)
    if find_spec("tensorboard") is None:
        skipped = [r for r in caplog.records if "TensorBoard is not installed" in r.message]
        assert len(skipped) == 1
    else:
        assert (Path(config.out_dir) / "tensorboard").is_dir()
    assert sum("resolved training config" in r.message for r in caplog.records) == 1


def test_cli_trains_resumes_from_the_run_directory_and_refuses_conflicts(tmp_path, capsys):
    out = str(tmp_path / "cli")
    common = ["--no-progress", "--no-tensorboard"]
    code = main(["train", "--preset", "tiny", "--out-dir", out, "--num-images", "64",
                 "--global-batch", "8", "--phase-epochs", "1,1,1", "--max-steps", "2",
                 "--subnet-depths", "2", *common])
    assert code == 0
    assert "model directory" in capsys.readouterr().out
    assert main(["train", "--out-dir", out, "--max-steps", "3", *common]) == 0
    assert json.loads((Path(out) / "config.json").read_text())["max_steps"] == 3
    assert len(_losses(out)) == 3
    assert main(["train", "--out-dir", out, "--lr", "0.5", *common]) == 2
    assert "different ['lr']" in capsys.readouterr().err
    assert main(["train", "--out-dir", str(tmp_path / "new")]) == 2
    assert "choose a --preset" in capsys.readouterr().err
    assert main(["train", "--preset", "tiny", "--print-config", "--lr", "0.25"]) == 0
    assert json.loads(capsys.readouterr().out)["lr"] == 0.25


def test_rank_zero_filter_keeps_warnings_of_other_ranks():
    from variant.training.metrics import RankZeroFilter

    def record(level):
        return logging.LogRecord("variant", level, __file__, 1, "message", None, None)

    assert RankZeroFilter(0).filter(record(logging.INFO))
    assert not RankZeroFilter(1).filter(record(logging.INFO))
    assert RankZeroFilter(1).filter(record(logging.WARNING))
