import pytest

from variant.pretrained import random_model


@pytest.fixture(scope="package")
def tiny():
    """(var, vae) of the test-sized preset: depth 4, 10 classes, scales (1, 2, 4), 8x8 images."""
    return random_model("tiny", "cpu", seed=0)
