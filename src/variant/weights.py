"""A fingerprint of a model's weights: what a measured front was measured on.

`weights_sha256(var, vae)` hashes every tensor of the modules' state dicts (name, dtype, shape
and bytes, names in sorted order), so two models of the same architecture but other weights
(another training run, another checkpoint) differ, and a model saved and loaded again does not.
Quantised weights (variant/precision.py) are hashed by their inner tensors (data and scales).
"""

from __future__ import annotations

import hashlib

import torch

from .precision import plain_state


def weights_sha256(*modules: torch.nn.Module) -> str:
    """sha256 over the state dicts of `modules`, in the order given."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in sorted(plain_state(module.state_dict()).items()):
            t = tensor.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
