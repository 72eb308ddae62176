"""The official VAR sampler and training step, measured in a child process of gpu_suite.py.

The official code is a plain checkout of FoundationVision/VAR given by `--official`; nothing of it
is copied here. It is imported from that path (its top-level `models`, `dist`, `trainer`,
`utils` modules) in a process of its own, so its import-time side effects stay there. Two
stand-ins are put in place before its import, only where needed: `utils.misc` (imported by
`trainer.py` for its loggers' type names; the real one pulls in its argument parser and
TensorBoard) and `huggingface_hub.PyTorchModelHubMixin` when that package is absent.

Protocol: the parent writes a job (JSON) and the weights (our state dicts: the key names are the
official ones, so `strict=True` loads them); the child prints one JSON line per measurement,
prefixed by MARK.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import types
from pathlib import Path

import torch

MARK = "@@official "


def _stand_ins() -> None:
    misc = types.ModuleType("utils.misc")
    misc.MetricLogger = misc.TensorboardLogger = object  # type hints of trainer.py only
    sys.modules["utils.misc"] = misc
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        hub = types.ModuleType("huggingface_hub")
        hub.PyTorchModelHubMixin = type("PyTorchModelHubMixin", (), {})
        sys.modules["huggingface_hub"] = hub


def load_official(root: str):
    """The official modules from the checkout at `root`."""
    sys.path.insert(0, str(Path(root).resolve()))
    _stand_ins()
    import models  # the official package

    return models


def build(models, job: dict, device: str):
    """Official VQVAE and VAR with the job's shapes, our weights loaded with strict=True."""
    shape, state = job["shape"], torch.load(job["state"], map_location="cpu", weights_only=True)
    vae = models.VQVAE(vocab_size=shape["V"], z_channels=shape["Cvae"], ch=shape["ch"],
                       test_mode=True, share_quant_resi=4, v_patch_nums=tuple(shape["patch_nums"]))
    var = models.VAR(vae_local=vae, num_classes=shape["num_classes"], depth=shape["depth"],
                     embed_dim=shape["width"], num_heads=shape["heads"], drop_path_rate=0.0,
                     norm_eps=1e-6, shared_aln=False, cond_drop_rate=0.1, attn_l2_norm=True,
                     patch_nums=tuple(shape["patch_nums"]), flash_if_available=True,
                     fused_if_available=True)
    vae.load_state_dict(state["vae"], strict=True)
    var.load_state_dict(state["var"], strict=True)
    return vae.to(device).eval(), var.to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _peak(device: str, fn):
    """(seconds, bytes the call added at its peak) of one synchronised call."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    fn()
    _sync(device)
    seconds = time.perf_counter() - start
    grown = torch.cuda.max_memory_allocated() - base if cuda else None
    return seconds, grown


def measure_sampling(var, item: dict, device: str, warmup: int, repeats: int) -> dict:
    batch, dtype = item["batch"], {"bf16": torch.bfloat16, "fp16": torch.float16}[item["dtype"]]
    labels = torch.arange(batch, device=device) % var.num_classes
    top_k = min(900, var.V)  # the official top-k needs k <= V; ours clamps the same way

    def call():
        with torch.autocast(torch.device(device).type, dtype=dtype), torch.inference_mode():
            var.autoregressive_infer_cfg(batch, labels, g_seed=0, cfg=1.5, top_k=top_k,
                                         top_p=0.96)

    var.eval()
    for _ in range(warmup):
        call()
    runs = [_peak(device, call) for _ in range(repeats)]
    return {"seconds": statistics.median(r[0] for r in runs), "peak_growth": runs[-1][1]}


def measure_training(models, vae, var, item: dict, device: str, warmup: int,
                     repeats: int) -> dict:
    """`VARTrainer.train_step` of the official trainer: tokenise, forward, loss, backward,
    clip and AdamW step (fused where the device has it), bf16 autocast on CUDA as its
    `AmpOptimizer` sets it (fp32 elsewhere: that autocast is CUDA's)."""
    import trainer as official_trainer
    from utils.amp_sc import AmpOptimizer

    var.train()
    paras = [p for p in var.parameters() if p.requires_grad]
    names = [n for n, p in var.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(paras, lr=1e-6, betas=(0.9, 0.95), weight_decay=0.05,
                            fused=device.startswith("cuda"))
    amp = AmpOptimizer(2 if device.startswith("cuda") else 0, opt, names, paras, grad_clip=2.0)
    pn = tuple(var.patch_nums)
    side = 16 * pn[-1]
    step = official_trainer.VARTrainer(device, pn, tuple(16 * p for p in pn), vae, var, var, amp,
                                       label_smooth=0.0)
    logger = types.SimpleNamespace(log_iters=set(), update=lambda **kw: None)
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(item["batch"], 3, side, side, generator=g) * 2 - 1).to(device)
    labels = torch.randint(0, var.num_classes, (item["batch"],), generator=g).to(device)
    calls = iter(range(1, 10**6))

    def call():
        it = next(calls)  # never 0: the official step logs extra metrics at iteration 0
        step.train_step(it, it, True, logger, logger, images, labels, -1, 1.0)

    for _ in range(warmup):
        call()
    runs = [_peak(device, call) for _ in range(repeats)]
    return {"seconds": statistics.median(r[0] for r in runs), "peak_growth": runs[-1][1]}


def worker(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    device = job["device"]
    torch.set_num_threads(job["threads"])
    models = load_official(job["official"])
    vae, var = build(models, job, device)
    print(MARK + json.dumps({"ready": True}), flush=True)
    for item in job["items"]:
        if item["kind"] == "sample":
            out = measure_sampling(var, item, device, job["warmup"], job["repeats"])
        else:
            out = measure_training(models, vae, var, item, device, job["warmup"], job["repeats"])
        print(MARK + json.dumps({**item, **out}), flush=True)
