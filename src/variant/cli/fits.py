"""Refuse a sampling run predicted not to fit in memory, before it allocates anything.

The prediction is the budget planner's (`efficiency.budget.Predictor`: weights, KV cache,
activations); the limit is what this process may use (`studio.request.default_memory_budget`:
the GPU's memory, or on CPU the memory available now plus what the process holds).
"""

from __future__ import annotations

import torch

from ..efficiency.budget import Predictor, Workload
from ..studio.request import default_memory_budget
from ..units import fmt_bytes


def check_fits_memory(var, vae, plan, settings, batch: int, device: str, flag: str) -> None:
    """ValueError naming `flag` (the batch's flag) if one call of `batch` images is predicted
    to need more memory than there is; nothing when the system does not say what is free."""
    limit = default_memory_budget(torch.device(device))
    if limit is None:
        return
    workload = Workload(batch=batch, sampling=settings, device=str(device))
    predicted = Predictor(var.config, vae.config, workload).predict(plan).memory_bytes
    if predicted > limit:
        raise ValueError(
            f"{flag} {batch} is predicted to need {fmt_bytes(predicted)} of memory on {device}, "
            f"more than the {fmt_bytes(limit)} available; lower {flag}.")
