"""torchrun with 2 gloo processes (DDP and FSDP2) equals 1 process accumulating 2 micro-batches."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import final_weights, tiny_config

from variant.training import Trainer

SRC = str(Path(__file__).resolve().parents[2] / "src")
STEPS = 4


def _torchrun(out_dir: Path, parallel: str, max_steps: int) -> str:
    args = ["--preset", "tiny", "--out-dir", str(out_dir), "--num-images", "64",
            "--global-batch", "8", "--micro-batch", "4", "--phase-epochs", "1,1,1",
            "--p-start", "0.5", "--warmup-epochs", "0.25", "--seed", "3",
            "--max-steps", str(max_steps), "--save-every", "2", "--log-every", "1000",
            "--parallel", parallel, "--device", "cpu", "--no-progress", "--no-tensorboard"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "variant", "train", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Rank-0 logging: the resolved config is printed once, not once per rank.
    assert proc.stderr.count("resolved training config") == 1, proc.stderr[-3000:]
    return proc.stderr


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, global batch 8 as 2 accumulated micro-batches of 4."""
    config = tiny_config(tmp_path_factory.mktemp("one") / "run", max_steps=STEPS, micro_batch=4,
                         save_every=2, device="cpu")
    trainer = Trainer(config)
    assert trainer.accum == 2
    trainer.fit()
    lines = (Path(config.out_dir) / "metrics.jsonl").read_text().splitlines()
    return config, final_weights(config.out_dir), [json.loads(x)["plan"] for x in lines]


def _assert_close(one: dict, two: dict) -> None:
    assert one.keys() == two.keys()
    worst = max((one[k] - two[k]).abs().max().item() for k in one)
    assert worst <= 1e-5, f"max abs weight difference {worst:.3g}"


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_gloo_ranks_match_one_process_with_accumulation(tmp_path, parallel, reference):
    config, weights, plans = reference
    out = tmp_path / parallel
    if parallel == "fsdp":  # also stop half-way and resume: sharded state round trip
        _torchrun(out, parallel, max_steps=STEPS // 2)
        assert "resumed from" in _torchrun(out, parallel, max_steps=STEPS)
    else:
        _torchrun(out, parallel, max_steps=STEPS)

    saved = json.loads((out / "config.json").read_text())
    expected = config.replace(out_dir=saved["out_dir"], parallel=parallel).to_dict()
    assert saved == json.loads(json.dumps(expected))  # the same run, apart from the wrapping
    _assert_close(weights, final_weights(out))
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["plan"] for x in lines] == plans
    ckpt = torch.load(out / "checkpoints" / f"step-{STEPS:08d}" / "state.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and set(ckpt["model"]) == set(weights)

    # A 2-rank checkpoint resumes in one process (same slots: micro batch 4 x 2 accumulation).
    single = Trainer(config.replace(out_dir=str(out), max_steps=STEPS + 1, parallel="ddp"),
                     resume=str(out / "checkpoints" / f"step-{STEPS:08d}"))
    assert single.step == STEPS
    single.fit()
