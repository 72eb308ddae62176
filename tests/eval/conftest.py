import pytest
import torch

from variant.cli.common import random_model


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread avoids the start-up cost (and jitter) of the intra-op pool."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="package")
def tiny():
    """(var, vae) of the test-sized preset: depth 4, 10 classes, scales (1, 2, 4), 8x8 images."""
    return random_model("tiny", "cpu", seed=0)
