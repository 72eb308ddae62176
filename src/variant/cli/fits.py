"""Refuse a sampling run predicted not to fit in memory, before it allocates anything.

The prediction and the check are the budget planner's (`efficiency.budget.Predictor`,
`check_fits`, the studio's too); the limit is what this process may use
(`studio.request.default_memory_budget`: the GPU's memory, or on CPU the memory available now
plus what the process holds).
"""

from __future__ import annotations

import torch

from ..efficiency.budget import Predictor, Workload, check_fits, model_bytes, runtime_bytes
from ..precision import weight_precision
from ..studio.request import default_memory_budget
from ..units import fmt_bytes


def check_fits_memory(var, vae, plan, settings, batch: int, device: str, flag: str) -> None:
    """ValueError naming `flag` (the batch's flag) if one call of `batch` images is predicted
    to need more memory than there is; nothing when the system does not say what is free."""
    workload = Workload(batch=batch, sampling=settings, device=str(device))
    weights = weight_precision(var)  # the model as loaded
    runtime = runtime_bytes(device, model_bytes(var.config, vae.config, weights))
    predictor = Predictor(var.config, vae.config, workload, runtime_bytes=runtime)
    refuse_over_memory(predictor, [plan], device, flag, weights)


def refuse_over_memory(predictor: Predictor, plans, device: str, flag: str,
                       weights: str | None = None) -> None:
    """ValueError naming `flag` if the costliest of `plans` (on weights of precision
    `weights`) is predicted not to fit here."""
    limit = default_memory_budget(torch.device(device))
    check_fits(predictor, plans, limit,
               f"the {fmt_bytes(limit or 0)} available on {device}; lower {flag}.", weights)
