import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test in this folder runs with one intra-op thread (see tests/conftest.py)."""
