"""AdamW with the official VAR parameter groups, and the mixed-precision settings.

No weight decay (reference section 5.3) for 1-D parameters, biases, and names containing any of
`NO_DECAY_NAMES` (positional/level embeddings, attention temperature, AdaLN gains, ...). Each
group carries `wd_scale` (0 or 1); the trainer sets `lr` and `weight_decay` of every group from
the schedule before each step, as the official `lr_wd_annealing` does.
"""

from __future__ import annotations

import torch
from torch import nn

from ..units import parse_dtype
from .config import TrainConfig

NO_DECAY_NAMES = ("cls_token", "start_token", "task_token", "cfg_uncond", "pos_embed", "pos_1LC",
                  "pos_start", "start_pos", "lvl_embed", "gamma", "beta", "ada_gss", "moe_bias",
                  "scale_mul")


def uses_weight_decay(name: str, param: nn.Parameter) -> bool:
    if param.ndim <= 1 or name.endswith("bias"):
        return False
    return not any(key in name for key in NO_DECAY_NAMES)


def param_groups(model: nn.Module) -> list[dict]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if uses_weight_decay(name, param) else no_decay).append(param)
    return [{"params": decay, "wd_scale": 1.0}, {"params": no_decay, "wd_scale": 0.0}]


def build_optimizer(model: nn.Module, config: TrainConfig,
                    device: torch.device) -> torch.optim.AdamW:
    """AdamW(betas) over the two groups; fused on CUDA as the official trainer (`afuse`)."""
    fused = True if device.type == "cuda" else None
    return torch.optim.AdamW(param_groups(model), lr=config.peak_lr, betas=config.betas,
                             weight_decay=0.0, fused=fused)


def set_lr_and_weight_decay(optimizer: torch.optim.Optimizer, lr: float, wd: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
        group["weight_decay"] = wd * group["wd_scale"]


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None for fp32; bf16/fp16 autocast otherwise ('auto': bf16 on CUDA, fp32 on CPU)."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("--precision fp16 needs a CUDA device (it uses a GradScaler); use "
                         "fp32 or bf16 on CPU.")
    return None if precision == "fp32" else parse_dtype(precision)


def grad_scaler(dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """The official fp16 scaler (initial scale 2**11, growth every 1000 steps); None otherwise."""
    if dtype is not torch.float16:
        return None
    return torch.amp.GradScaler("cuda", init_scale=2.0**11, growth_interval=1000)


def update_scaler(scaler: torch.amp.GradScaler | None, limit: float = 32768.0) -> None:
    """Official quirk: a loss scale above 2**15 is forced back to 2**15 instead of updated."""
    if scaler is None:
        return
    if scaler.get_scale() > limit:
        scaler.update(limit)
    else:
        scaler.update()
