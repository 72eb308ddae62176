"""The argument checks of cli/checks.py on the cases the corpus does not spell out."""

from __future__ import annotations

import argparse
import os

import pytest

from variant.cli import checks


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("192.168.1.5", False), ("::", False), ("example.org", False),
])
def test_is_loopback(host, loopback):
    assert checks.is_loopback(host) is loopback


def test_output_file_takes_new_and_existing_files_of_its_format(tmp_path):
    png = checks.output_file(".png")
    assert png(str(tmp_path / "a" / "b" / "new.PNG")) == str(tmp_path / "a" / "b" / "new.PNG")
    (tmp_path / "old.png").write_bytes(b"")
    assert png(str(tmp_path / "old.png")) == str(tmp_path / "old.png")
    assert list(tmp_path.iterdir()) == [tmp_path / "old.png"]  # checked, nothing created
    with pytest.raises(argparse.ArgumentTypeError, match="must end in .png"):
        png(str(tmp_path / "grid.jpg"))


def test_output_dir_takes_a_new_or_existing_folder(tmp_path):
    assert checks.output_dir(str(tmp_path)) == str(tmp_path)
    assert checks.output_dir(str(tmp_path / "x" / "y")) == str(tmp_path / "x" / "y")
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_place_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(argparse.ArgumentTypeError, match="no permission"):
        checks.output_file(".png")(str(locked / "g.png"))


def test_input_file_refuses_a_fifo(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(argparse.ArgumentTypeError, match="not a regular file"):
        checks.input_file(str(fifo))


def test_device_cpu_is_taken_and_cuda_only_when_present():
    import torch

    assert checks.device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(argparse.ArgumentTypeError, match="no CUDA device"):
            checks.device("cuda")
