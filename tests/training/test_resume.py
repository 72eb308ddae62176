"""Exact resume (SIGTERM, a crash, SIGKILL), checkpoint hygiene and non-finite losses."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from train_helpers import assert_weights_equal, final_weights, tiny_config

from variant.training import NonFiniteLossError, Trainer
from variant.training.checkpoint import CheckpointManager

STEPS = 6


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of STEPS steps: (weights, metrics lines)."""
    config = tiny_config(tmp_path_factory.mktemp("ref") / "run", max_steps=STEPS, save_every=2)
    result = Trainer(config).fit()
    assert result.step == STEPS and result.stopped_by == "max_steps"
    lines = (Path(config.out_dir) / "metrics.jsonl").read_text().splitlines()
    return final_weights(config.out_dir), [json.loads(line) for line in lines]


def _comparable(records):
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in records]


def test_reference_run_mixes_full_and_subnet_steps(reference):
    _, records = reference
    assert [r["step"] for r in records] == list(range(STEPS))
    assert {r["plan"] for r in records} >= {"full", "d2"}
    assert all(len(r["scale_loss"]) == 3 and len(r["scale_acc"]) == 3 for r in records)


def test_sigterm_saves_exits_cleanly_and_resumes_bitwise(tiny, reference):
    # No periodic save before the signal. A scheduler signals the DataLoader workers too: they
    # must survive it and keep serving the steps until the trainer stops.
    config = tiny(max_steps=STEPS, save_every=100, num_workers=1)

    def terminate(trainer, record):
        if record.step == 0:
            workers = multiprocessing.active_children()
            assert workers
            for worker in workers:
                os.kill(worker.pid, signal.SIGTERM)
        if record.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    stopped = Trainer(config).fit(on_step=terminate)
    assert stopped.stopped_by == "SIGTERM" and stopped.step == 3 and stopped.final_model is None
    assert stopped.checkpoint.name == "step-00000003"
    assert (stopped.checkpoint / "config.json").is_file()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored

    resumed = Trainer(config).fit()
    assert resumed.step == STEPS and resumed.final_model is not None
    assert_weights_equal(final_weights(config.out_dir), reference[0])
    lines = (Path(config.out_dir) / "metrics.jsonl").read_text().splitlines()
    assert _comparable(json.loads(x) for x in lines) == _comparable(reference[1])


def test_crash_resumes_from_last_checkpoint_bitwise(tiny, reference):
    config = tiny(max_steps=STEPS, save_every=2, keep_last=2)

    def crash(trainer, record):
        if record.step == 4:  # after step 5 is applied, before its checkpoint
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(config).fit(on_step=crash)
    manager = CheckpointManager(config.out_dir, keep_last=2)
    assert [s for s, _ in manager.list()] == [2, 4]
    stale = manager.root / ".tmp-step-00000006-x"  # what a kill during a save leaves
    stale.mkdir()
    (stale / "state.pt").write_bytes(b"torn")
    assert manager.latest().name == "step-00000004"

    trainer = Trainer(config)
    assert trainer.step == 4 and not stale.exists()
    trainer.fit()
    assert_weights_equal(final_weights(config.out_dir), reference[0])
    assert [s for s, _ in manager.list()] == [4, 6]  # keep-last-2
    lines = (Path(config.out_dir) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(STEPS))  # step 4 logged once


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_equal(tiny, reference):
    config = tiny(max_steps=STEPS, save_every=2)
    script = textwrap.dedent(f"""
        import os, signal, torch
        torch.set_num_threads({torch.get_num_threads()})
        from variant.training import Trainer, TrainConfig
        config = TrainConfig.from_dict({config.to_dict()!r})
        def kill(trainer, record):
            if record.step == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        Trainer(config).fit(on_step=kill)
    """)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    trainer = Trainer(config)
    assert trainer.step == 2  # step 4's checkpoint was never written
    trainer.fit()
    assert_weights_equal(final_weights(config.out_dir), reference[0])


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_checkpoints(tiny):
    config = tiny(max_steps=STEPS, save_every=2)

    def poison(trainer, record):
        if record.step == 2:
            with torch.no_grad():
                trainer.var.head.weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match="non-finite loss.*step 3.*step-00000002"):
        Trainer(config).fit(on_step=poison)
    manager = CheckpointManager(config.out_dir)
    assert [s for s, _ in manager.list()] == [2]
    assert not (Path(config.out_dir) / "final").exists()
    trainer = Trainer(config)  # the kept checkpoint is good: resuming trains on
    assert trainer.step == 2 and all(p.isfinite().all() for p in trainer.var.parameters())


def test_resume_refuses_a_changed_config(tiny):
    Trainer(tiny(max_steps=2)).fit()
    with pytest.raises(ValueError, match=r"different \['lr'\]"):
        Trainer(tiny(max_steps=4, lr=0.5))
