"""Training speed: full vs subnet iterations, and our step vs the official VAR trainer's.

Part 1 (always): one model, pre-tokenised random tokens, the real `Trainer.train_step` (loss,
backward, clipping, AdamW, metrics) under the full plan and under paper plans d<k>; prints
tokens/s, the time ratio and the token-layer and FLOP ratios the plan predicts.

Part 2 (`--official PATH`, an unpacked FoundationVision/VAR checkout): the same configuration
(official builder defaults, width = 64 * depth) trained from 256 px images through a small VQVAE.
One separate process builds both trainers and alternates our `Trainer.train_step` with the
official `VARTrainer.train_step` (imported from PATH at run time with the CPU shims of reference
section 6, its global initialiser patch undone; none of its code is copied here).

    PYTHONPATH=src python benchmarks/train_speed.py --threads 2
    PYTHONPATH=src python benchmarks/train_speed.py --official /tmp/varref

Numbers drift with machine load: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import types

import torch
from torch import nn

PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


class RandomTokens(torch.utils.data.Dataset):
    sample_format = "tokens"

    def __init__(self, n: int, L: int, V: int, num_classes: int):
        g = torch.Generator().manual_seed(0)
        self.idx_NL = torch.randint(0, V, (n, L), generator=g)
        self.labels = torch.randint(0, num_classes, (n,), generator=g).tolist()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.idx_NL[i], self.labels[i]


class FixedImages(torch.utils.data.Dataset):
    """`n` copies of one batch of random 256 px images (tokenised on the fly)."""

    def __init__(self, n: int):
        self.img, self.label = _images(n)

    def __len__(self):
        return len(self.label)

    def __getitem__(self, i):
        return self.img[i], int(self.label[i])


def _models(depth: int, width: int, heads: int, vae_ch: int, seed: int = 0):
    from variant.config import VAEConfig, VARConfig
    from variant.models.var import VAR
    from variant.models.vqvae import VQVAE

    torch.manual_seed(seed)
    vae = VQVAE(VAEConfig(V=4096, Cvae=32, ch=vae_ch, patch_nums=PATCH_NUMS)).freeze()
    var = VAR(VARConfig(depth=depth, embed_dim=width, num_heads=heads, num_classes=1000,
                        patch_nums=PATCH_NUMS, drop_path_rate=0.0), vae).init_weights()
    return var, vae


def _trainer(models, dataset, batch: int, out_dir: str, **changes):
    from variant.training import TrainConfig, Trainer

    config = TrainConfig(global_batch=batch, phase_epochs=(0.0, 0.0, 100.0), warmup_epochs=0.0,
                         lr=1e-4, progress=False, tensorboard=False, out_dir=out_dir,
                         device="cpu", **changes)
    return Trainer(config, models=models, dataset=dataset, resume="auto")


def _time_steps(trainer, batches, warmup: int, iters: int, first_step: int = 0) -> list[float]:
    times = []
    for i in range(warmup + iters):
        step = first_step + i
        start = time.perf_counter()
        trainer.train_step(step, [batches[step % len(batches)]])
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def bench_plans(args) -> None:
    """Full vs paper subnets on one model, transformer only (pre-tokenised data).

    One trainer per plan (same initial weights); steps are interleaved round-robin so that
    machine load drifts hit every plan alike, and the median step time is reported.
    """
    from variant.models.cost import CostModel

    L = sum(p * p for p in PATCH_NUMS)
    data = RandomTokens(4 * args.batch, L, 4096, 1000)
    batches = [next(iter(torch.utils.data.DataLoader(data, batch_size=args.batch)))]
    names = ["full", *[f"d{d}" for d in args.subnets]]
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for name in names:
            changes = ({"ratio": "full-only"} if name == "full" else
                       {"ratio": "fixed:1.0", "subnet_depths": (int(name[1:]),)})
            models = _models(args.depth, args.width, args.heads, 32)
            trainers[name] = _trainer(models, data, args.batch, f"{tmp}/{name}",
                                      bridge=args.bridge, **changes)
        times = {name: [] for name in names}
        for step in range(args.warmup + args.iters):
            for name in names:
                elapsed = _time_steps(trainers[name], batches, 0, 1, first_step=step)
                if step >= args.warmup:
                    times[name] += elapsed
    print(f"\n## Part 1: full vs subnet steps (depth {args.depth}, width {args.width}, "
          f"heads {args.heads}, L {L}, bridge {args.bridge}, batch {args.batch}, fp32, "
          f"{args.threads} threads, median of {args.iters} interleaved steps)\n")
    print("| plan | token-layers (vs full) | FLOPs incl. head (vs full) | s/step | tokens/s | "
          "time vs full |")
    print("|---|---:|---:|---:|---:|---:|")
    cost = CostModel(trainers["full"].var.config)
    ref = trainers["full"].plans.plan(0)[1]
    full_tl = cost.token_layers(ref)
    full_fl = cost.flops(ref, include_head=True)
    full_time = statistics.median(times["full"])
    for name in names:
        plan = trainers[name].plans.plan(0)[1]  # full-only, or always its one subnet
        med = statistics.median(times[name])
        tl = cost.token_layers(plan)
        fl = cost.flops(plan, include_head=True)
        print(f"| {name} | {tl} ({tl / full_tl:.3f}) | {fl / full_fl:.3f} | {med:.3f} | "
              f"{args.batch * L / med:.0f} | {med / full_time:.3f} |")


# ----------------------------------------------------------------------------- official
def _official_trainer(args):
    """The official VARTrainer on a fresh VAR/VQVAE, imported from args.official."""
    sys.path.insert(0, args.official)
    misc = types.ModuleType("utils.misc")  # shim 1: the real one runs git at import time

    class _Logger:
        log_iters: set = set()

        def __init__(self, *a, **k):
            pass

        def update(self, *a, **k):
            pass

    misc.MetricLogger = misc.TensorboardLogger = _Logger
    sys.modules["utils.misc"] = misc
    from trainer import VARTrainer
    from utils.amp_sc import AmpOptimizer

    from models import build_vae_var

    patched = (nn.Linear, nn.LayerNorm, nn.BatchNorm2d, nn.SyncBatchNorm, nn.Conv1d, nn.Conv2d,
               nn.ConvTranspose1d, nn.ConvTranspose2d)
    saved = {cls: cls.reset_parameters for cls in patched}
    torch.manual_seed(0)
    try:
        vae, var = build_vae_var(device="cpu", patch_nums=PATCH_NUMS, V=4096, Cvae=32,
                                 ch=args.vae_ch, depth=args.official_depth, num_classes=1000)
    finally:  # build_vae_var disables layer initialisation process-wide: undo it
        for cls, method in saved.items():
            cls.reset_parameters = method
    with torch.no_grad():  # ... and leaves the VQVAE uninitialised
        for p in vae.parameters():
            p.normal_(0, 0.02)

    class _NoDDP(nn.Module):  # shim 3: NullDDP lives in train.py
        def __init__(self, module):
            super().__init__()
            self.module, self.require_backward_grad_sync = module, True

        def forward(self, *a, **k):
            return self.module(*a, **k)

    names, params = zip(*[(n, p) for n, p in var.named_parameters() if p.requires_grad])
    opt = AmpOptimizer(0, torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95)),
                       list(names), list(params), grad_clip=2.0)
    trainer = VARTrainer("cpu", PATCH_NUMS, (16 * PATCH_NUMS[-1],), vae, var.train(),
                         _NoDDP(var), opt, 0.0)
    img, label = _images(args.batch)

    def step(it: int) -> None:  # it > 0: no metric / tensorboard logging
        trainer.train_step(it, it, True, _Logger(), _Logger(), img, label, -1, 1.0)

    return step


def _compare_worker(args) -> None:
    """In its own process: alternate our step and the official step, same config."""
    from variant.models.var import build_var
    from variant.models.vqvae import build_vae

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vae = build_vae(V=4096, Cvae=32, ch=args.vae_ch, patch_nums=PATCH_NUMS)
    var = build_var(vae, depth=args.official_depth, num_classes=1000)  # official defaults
    with tempfile.TemporaryDirectory() as tmp:
        ours = _trainer((var, vae), FixedImages(args.batch), args.batch, tmp, ratio="full-only",
                        subnet_depths=(1,))
        official_step = _official_trainer(args)
        batch = _images(args.batch)
        times = {"ours": [], "official": []}
        for i in range(args.warmup + args.iters):
            start = time.perf_counter()
            ours.train_step(i, [batch])
            mid = time.perf_counter()
            official_step(i + 1)
            if i >= args.warmup:
                times["ours"].append(mid - start)
                times["official"].append(time.perf_counter() - mid)
    print(json.dumps(times))


def _images(batch: int):
    g = torch.Generator().manual_seed(1)
    return torch.rand(batch, 3, 256, 256, generator=g) * 2 - 1, torch.randint(0, 1000, (batch,),
                                                                              generator=g)


def bench_official(args) -> None:
    cmd = [sys.executable, __file__, "--_compare-worker", "--official", args.official,
           "--official-depth", str(args.official_depth), "--batch", str(args.batch),
           "--threads", str(args.threads), "--warmup", str(args.warmup),
           "--iters", str(args.iters), "--vae-ch", str(args.vae_ch)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit("the official trainer did not run; see the error above")
    times = json.loads(proc.stdout.strip().splitlines()[-1])
    L, d = sum(p * p for p in PATCH_NUMS), args.official_depth
    print(f"\n## Part 2: full step vs the official VARTrainer.train_step (depth {d}, width "
          f"{64 * d}, heads {d}, 256 px images through a VQVAE with ch {args.vae_ch}, batch "
          f"{args.batch}, fp32, {args.threads} threads, {args.iters} alternating steps)\n")
    print("| trainer | median s/step | min s/step | tokens/s (median) |\n|---|---:|---:|---:|")
    for name, label in (("official", "official VARTrainer"), ("ours", "VARiant Trainer, full")):
        med = statistics.median(times[name])
        print(f"| {label} | {med:.3f} | {min(times[name]):.3f} | {args.batch * L / med:.0f} |")
    ratio = statistics.median(times["ours"]) / statistics.median(times["official"])
    print(f"\nVARiant / official median step time: {ratio:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--subnets", type=int, nargs="+", default=[8, 4, 2])
    p.add_argument("--bridge", type=int, default=6)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--official", default=None, help="unpacked official VAR repo (e.g. /tmp/varref)")
    p.add_argument("--official-depth", type=int, default=4)
    p.add_argument("--vae-ch", type=int, default=32, help="VQVAE width for the image comparison")
    p.add_argument("--skip-plans", action="store_true", help="only run the official comparison")
    p.add_argument("--_compare-worker", dest="compare_worker", action="store_true",
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.compare_worker:
        _compare_worker(args)
        return
    if not args.skip_plans:
        bench_plans(args)
    if args.official:
        bench_official(args)


if __name__ == "__main__":
    main()
