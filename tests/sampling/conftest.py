"""Models shared by the sampling tests."""

import pytest
import torch

import variant
from variant.pretrained import random_model


@pytest.fixture(scope="module")
def builtin():
    """The shipped model: depth 8, width 128 (4 heads of 32), scales (1, 2, 3, 4, 6, 8)."""
    var, _ = variant.load_model("builtin")
    assert var.depth == 8 and tuple(var.patch_nums) == (1, 2, 3, 4, 6, 8)
    assert var.config.width == 128
    return var


@pytest.fixture(scope="module")
def tiny():
    """random:tiny: depth 4, width 64 (4 heads of 16), scales (1, 2, 4): 1 + 4 + 16 tokens."""
    var, _ = random_model("tiny", "cpu", seed=0)
    with torch.no_grad():  # move off the near-identity init so every layer matters
        for p in var.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return var
