"""--model/--vae/--revision reach the one resolver (variant.pretrained) from every command."""

import sys
import types

import pytest

from variant.cli.main import main


def _no_hub(monkeypatch):
    calls = []
    fake = types.ModuleType("huggingface_hub")
    fake.snapshot_download = lambda *args, **kwargs: calls.append((args, kwargs))
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    return calls


@pytest.mark.parametrize("command", [
    ["sample", "--out", "{tmp}/g.png"],
    ["eval", "--plans", "full", "--num-per-class", "1", "--out", "{tmp}/eval"],
])
def test_missing_local_model_is_not_found_without_the_hub(command, monkeypatch, capsys, tmp_path):
    calls = _no_hub(monkeypatch)
    argv = [a.format(tmp=tmp_path) for a in command]
    assert main([*argv, "--model", str(tmp_path / "runs" / "final"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "random:PRESET" in err and "Traceback" not in err
    assert calls == []


def test_revision_is_passed_to_the_hub(monkeypatch, capsys, tmp_path):
    calls = _no_hub(monkeypatch)
    argv = ["sample", "--model", "someone/variant-tiny", "--revision", "abc123", "--device", "cpu",
            "--out", str(tmp_path / "g.png")]
    assert main(argv) == 2  # the fake download returns no directory
    assert calls and calls[0][0] == ("someone/variant-tiny",)
    assert calls[0][1]["revision"] == "abc123"
    assert set(calls[0][1]["allow_patterns"]) == {
        "config.json", "model.safetensors", "tokenizer.safetensors"}


def test_revision_for_a_local_model_is_a_clear_error(capsys, tmp_path):
    argv = ["sample", "--model", "random:tiny", "--revision", "main", "--device", "cpu",
            "--out", str(tmp_path / "g.png")]
    assert main(argv) == 2
    assert "drop --revision" in capsys.readouterr().err
