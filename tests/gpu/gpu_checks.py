"""The GPU checks, each a function of `device`: tests/gpu/test_gpu.py runs every one on CPU in CI
and again on CUDA (marked `gpu`, skipped without CUDA), so the CUDA checks run the code CI keeps
green. `benchmarks/gpu_suite.py` runs the same tests on the GPU machine.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule

import variant
from variant.models.cost import CostModel
from variant.training import Trainer, train_preset

# Low-precision sampling vs fp32 on the built-in model, seed 0, sampled with the official
# top-k/top-p. Scale 0 draws the same tokens; at scales 1-2 a draw near a boundary of the
# cumulative distribution may flip (and the flip conditions what follows), so up to
# `EARLY_FLIP` of their tokens may differ: measured on CPU over seeds 0-3, bf16 flips 0-6%,
# fp16 0-3%. Teacher-forced logits (logit std about 5): measured max abs difference bf16 0.19,
# fp16 0.02; the bounds are twice that.
EARLY_SCALES, EARLY_FLIP = 3, 0.10
LOGIT_TOL = {torch.bfloat16: 0.4, torch.float16: 0.05}


def builtin(device: str):
    var, vae = variant.load_model("builtin", device=device)
    return var.eval(), vae


def check_low_precision_sampling(device: str, dtype: torch.dtype) -> float:
    """16-bit sampling draws fp32's tokens at the early scales (fixed seed) and its teacher-forced
    cached logits within `LOGIT_TOL`; returns the max abs logit difference."""
    var, vae = builtin(device)
    labels = [0, 3, 5, 9]
    name = {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    ref = var.generate(4, labels, seed=0)
    low = var.generate(4, labels, seed=0, dtype=name)
    assert torch.equal(ref.indices[0], low.indices[0]), f"scale 0 differs in {name}"
    for k in range(1, EARLY_SCALES):
        flipped = (ref.indices[k] != low.indices[k]).float().mean().item()
        assert flipped <= EARLY_FLIP, f"{flipped:.0%} of scale {k}'s tokens differ in {name}"
    x = vae.idxBl_to_var_input(ref.indices)
    label = torch.tensor(labels, device=device)
    with torch.no_grad():
        want = var(label, x)
        with torch.autocast(torch.device(device).type, dtype=dtype):
            got = var(label, x)
    diff = (got.float() - want).abs().max().item()
    assert diff <= LOGIT_TOL[dtype], f"{name} logits differ by {diff:.3g} > {LOGIT_TOL[dtype]}"
    return diff


def check_kv_peak_matches_cost_model(device: str) -> None:
    """The measured KV peak equals the cost model's prediction, for plans, levers and dtypes."""
    var, _ = builtin(device)
    cases = [("full", {}), ("d4", {}), ("d2", {"dtype": "bf16"}),
             ("d4", {"cfg_stop": 4, "guide_plan": "d2"}), ("full", {"kv_keep": (1, 2)}),
             ("d2", {"prune": (0.5, 4), "dtype": "bf16"})]
    for spec, levers in cases:
        settings = variant.SamplingConfig(seed=0, **levers)
        plan = var.resolve_plan(spec)
        out = var.generate(3, [1, 2, 3], settings=settings, plan=plan)
        cost = CostModel(var.config, settings.dtype, settings.rows(3))
        predicted = cost.kv_peak_bytes(plan, out.levers)
        assert out.kv_peak_bytes == predicted, (spec, levers, out.kv_peak_bytes, predicted)


def check_seeded_determinism(device: str) -> None:
    """Same seed, same device, same plan: the same tokens and images, twice."""
    var, _ = builtin(device)
    for spec, dtype in (("full", "fp32"), ("d2", "bf16")):
        one = var.generate(3, [2, 4, 6], seed=11, plan=spec, dtype=dtype)
        two = var.generate(3, [2, 4, 6], seed=11, plan=spec, dtype=dtype)
        assert all(torch.equal(a, b) for a, b in zip(one.indices, two.indices))
        assert torch.equal(one.images, two.images)


@contextlib.contextmanager
def world_of_one(device: str):
    """A process group of one rank (gloo on CPU, NCCL on CUDA), so FSDP2 shards at world 1."""
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def train_config(out_dir: Path, device: str, **changes):
    return train_preset("tiny").replace(
        out_dir=str(out_dir), num_images=16, global_batch=4, phase_epochs=(1.0, 1.0, 1.0),
        p_start=0.5, warmup_epochs=0.25, progress=False, tensorboard=False, log_every=1000,
        seed=3, device=device, precision="bf16", **changes)


def _losses(out_dir: Path) -> list[float]:
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def check_bf16_training_steps(device: str, fsdp: bool) -> list[float]:
    """Two bf16-autocast training steps (with FSDP2 at world size 1 or without), then a run
    stopped after one step and resumed to two: the resumed losses and weights equal the
    uninterrupted run's (bitwise on CPU; on CUDA to bf16 rounding, atomics may reorder sums)."""
    exact = torch.device(device).type == "cpu"
    with tempfile.TemporaryDirectory() as tmp, (world_of_one(device) if fsdp
                                                 else contextlib.nullcontext()):
        tmp = Path(tmp)
        parallel = "fsdp" if fsdp else "ddp"
        straight = train_config(tmp / "straight", device, max_steps=2, parallel=parallel)
        trainer = Trainer(straight)
        assert isinstance(trainer.var.blocks[0], FSDPModule) == fsdp  # sharded at world 1
        assert trainer.amp_dtype == torch.bfloat16
        trainer.fit()
        first = train_config(tmp / "resumed", device, max_steps=1, parallel=parallel)
        Trainer(first).fit()
        Trainer(first.replace(max_steps=2)).fit()
        want, got = _losses(tmp / "straight"), _losses(tmp / "resumed")
        assert len(want) == 2 and all(v == v and v > 0 for v in want)  # finite, positive
        if exact:
            assert got == want
        else:
            assert got == [pytest_approx(v) for v in want]
        a = variant.load_model(str(tmp / "straight" / "final"))[0].state_dict()
        b = variant.load_model(str(tmp / "resumed" / "final"))[0].state_dict()
        worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
        assert worst == 0.0 if exact else worst <= 1e-2, f"resumed weights differ by {worst}"
        return want


def pytest_approx(value: float):
    import pytest

    return pytest.approx(value, rel=1e-2)


def check_memory_below_official(device: str, official: str, tmp: Path) -> dict:
    """Our sampler's memory growth during a call is below the official sampler's by at least
    the KV saving (same weights, batch, dtype, CFG): on CUDA, `max_memory_allocated` growth;
    everywhere, the KV saving itself (the official sampler keeps D x L tokens, keys in fp32).
    The official sampler runs in its own process (benchmarks/official_var.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import official_var

    cuda = torch.device(device).type == "cuda"
    shape = ({"V": 4096, "Cvae": 32, "ch": 160, "patch_nums": [1, 2, 3, 4, 5, 6, 8, 10, 13, 16],
              "num_classes": 1000, "depth": 16} if cuda else
             {"V": 64, "Cvae": 8, "ch": 32, "patch_nums": [1, 2, 3, 4], "num_classes": 10,
              "depth": 4})
    shape.update(width=64 * shape["depth"], heads=shape["depth"])
    batch, dtype = (16, "bf16") if cuda else (2, "bf16")
    torch.manual_seed(0)
    vae = variant.build_vae(V=shape["V"], Cvae=shape["Cvae"], ch=shape["ch"],
                            patch_nums=shape["patch_nums"])
    var = variant.build_var(vae, depth=shape["depth"], num_classes=shape["num_classes"],
                            patch_nums=shape["patch_nums"], drop_path_rate=0.0)
    state = tmp / "weights.pt"
    torch.save({"var": var.state_dict(), "vae": vae.state_dict()}, state)
    job = {"official": official, "device": device, "threads": 1, "state": str(state),
           "shape": shape, "warmup": 1, "repeats": 1,
           "items": [{"kind": "sample", "batch": batch, "dtype": dtype}]}
    (tmp / "job.json").write_text(json.dumps(job))
    suite = Path(official_var.__file__).with_name("gpu_suite.py")
    proc = subprocess.run([sys.executable, str(suite), "--_official-worker", str(tmp / "job.json")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = [json.loads(line[len(official_var.MARK):]) for line in proc.stdout.splitlines()
              if line.startswith(official_var.MARK)][-1]
    var, vae = var.to(device).eval(), vae.to(device)
    labels = [i % shape["num_classes"] for i in range(batch)]
    out = []
    var.generate(batch, labels, seed=0, dtype=dtype)  # warm-up, as the official worker does
    seconds, ours_growth = official_var._peak(
        device, lambda: out.append(var.generate(batch, labels, seed=0, dtype=dtype)))
    official_kv = CostModel(var.config, dtype, 2 * batch).official_kv_bytes()
    saving = official_kv - out[0].kv_peak_bytes
    assert saving > 0
    if cuda:
        assert ours_growth <= theirs["peak_growth"] - saving, (ours_growth, theirs, saving)
    return {"ours_growth": ours_growth, "official_growth": theirs["peak_growth"],
            "kv_saving": saving}
