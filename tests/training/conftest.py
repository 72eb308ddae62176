import pytest
from train_helpers import tiny_config


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test in this folder runs with one intra-op thread (see tests/conftest.py)."""


@pytest.fixture
def tiny(tmp_path):
    """Build a tiny TrainConfig writing under tmp_path/<name>, with field overrides."""
    return lambda name="run", **changes: tiny_config(tmp_path / name, **changes)
