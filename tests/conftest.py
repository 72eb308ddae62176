import sys
from pathlib import Path

import pytest
import torch

# tests/golden_weights.py and tests/helpers.py are shared by several test modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def one_thread():
    """One intra-op thread for tiny tensors: they gain nothing from two, two OpenMP threads slow
    down tenfold when other processes keep the cores busy, and bitwise checks compare runs of one
    process. Test folders opt in with `pytest.mark.usefixtures("one_thread")` or an autouse."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_addoption(parser):
    parser.addoption("--studio-screenshot", default=None, metavar="PNG",
                     help="also save the studio browser test's screenshot here (docs/studio.png)")
    parser.addoption("--official", default=None, metavar="DIR",
                     help="a FoundationVision/VAR checkout: the gpu checks then also compare "
                          "sampling memory with the official sampler (tests/gpu)")
