import pytest
import torch
from train_helpers import tiny_config


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and one thread is immune to the spin-wait
    slowdown of an oversubscribed CI machine (the bitwise checks compare runs of one process)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny(tmp_path):
    """Build a tiny TrainConfig writing under tmp_path/<name>, with field overrides."""
    return lambda name="run", **changes: tiny_config(tmp_path / name, **changes)
