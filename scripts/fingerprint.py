"""Seeded fingerprints of sampling and training, for refactors that must not change outputs.

DESIGN invariant 7: record these before a restructuring and compare after every step.

    python scripts/fingerprint.py --out before.json
    python scripts/fingerprint.py --out after.json && diff before.json after.json

Sampling: sha256 over the token indices (int64, scale order) and over the uint8 images, for the
built-in model and two seeded random models, under the full plan and two subnets, seeds 0 and 1,
official settings (cfg 1.5, top-k 900, top-p 0.96), fp32. `random:builtin` is the official
initialisation, whose residual gates (1e-5) make every layer nearly an identity, so its samples
hardly depend on the plan; `random:builtin+noise` adds seeded noise (std 0.05) to every weight so
that each layer, and so each plan, changes the tokens.
Training: the per-step losses of 20 steps of `variant train --preset tiny`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import variant
from variant.sampling.plan import DepthPlan

MODELS = ("builtin", "random:builtin", "random:builtin+noise")
PLANS = ("full", "d4", "d2")
SEEDS = (0, 1)
LABELS = (0, 3, 5, 9)


def _load(source: str):
    if source.endswith("+noise"):
        var, vae = variant.load_model(source.removesuffix("+noise"))
        torch.manual_seed(1)
        with torch.no_grad():
            for p in var.parameters():
                p.add_(0.05 * torch.randn_like(p))
        return var, vae
    return variant.load_model(source)


def _plan(spec: str, var):
    return DepthPlan.from_spec(spec, var.depth, var.num_scales)  # the default bridge


def sampling_fingerprints() -> dict:
    out = {}
    for source in MODELS:
        var, _ = _load(source)
        for spec in PLANS:
            for seed in SEEDS:
                res = var.generate(len(LABELS), list(LABELS), cfg=1.5, top_k=900, top_p=0.96,
                                   seed=seed, plan=_plan(spec, var))
                idx = torch.cat([i.reshape(-1).to(torch.int64) for i in res.indices])
                img = res.images.mul(255).round().clamp(0, 255).to(torch.uint8)
                out[f"{source}|{spec}|seed{seed}"] = {
                    "indices": hashlib.sha256(idx.numpy().tobytes()).hexdigest(),
                    "images": hashlib.sha256(img.numpy().tobytes()).hexdigest(),
                    "kv_peak_bytes": res.kv_peak_bytes,
                }
    return out


def training_losses(steps: int = 20) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "variant", "train", "--preset", "tiny", "--out-dir",
                        tmp, "--max-steps", str(steps), "--no-progress"], check=True,
                       capture_output=True)
        rows = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="write the fingerprints as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    result = {"sampling": sampling_fingerprints(), "train_losses": training_losses()}
    text = json.dumps(result, indent=1, sort_keys=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
