import socket

import pytest
import torch

from variant import load_model
from variant.pretrained import read_model_config
from variant.studio import ModelInfo, Studio


@pytest.fixture(scope="session")
def studio():
    """The built-in model (8 layers, 6 scales, 64 px) behind a studio of at most 8 images."""
    var, vae = load_model("builtin")
    info = ModelInfo(source="builtin", meta=read_model_config("builtin")[2])
    return Studio(var, vae, info, max_images=8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int:
    """A free loopback port."""
    return free_port()


@pytest.fixture(scope="session")
def server(studio):
    """The page of `studio` on a free loopback port (needs the 'studio' extra)."""
    pytest.importorskip("gradio", reason='the studio extra is not installed: '
                                         'pip install -e ".[studio]"')
    from variant.studio.app import serve

    running = serve(studio, "127.0.0.1", free_port())
    yield running
    running.close()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The built-in model is tiny: one thread (see tests/conftest.py's `one_thread`), for every
    fixture of a module too, so that a module's samples all come from one thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
