"""Tiny training runs shared by the training tests (CPU, fp32, a few steps each)."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from variant.training import train_preset


def tiny_config(out_dir, **changes):
    """8 steps per epoch on 64 procedural 8 px images, global batch 8, mixed full/subnet steps."""
    base = train_preset("tiny").replace(
        out_dir=str(out_dir), num_images=64, global_batch=8, phase_epochs=(1.0, 1.0, 1.0),
        p_start=0.5, warmup_epochs=0.25, progress=False, tensorboard=False, log_every=1000,
        seed=3)
    return base.replace(**changes)


def final_weights(out_dir) -> dict[str, torch.Tensor]:
    return load_file(str(Path(out_dir) / "final" / "model.safetensors"))


def assert_weights_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
