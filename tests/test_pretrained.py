"""Model directories, official-format .pth files, and the errors for wrong or broken files."""

import json

import pytest
import torch

from variant.cli.common import random_model
from variant.models.convert import CheckpointError, var_config_from_state_dict
from variant.pretrained import load_model, read_var_config, save_pretrained


@pytest.fixture(scope="module")
def tiny():
    return random_model("tiny", "cpu", seed=0)


def test_model_directory_round_trip(tiny, tmp_path):
    var, vae = tiny
    path = save_pretrained(tmp_path / "m", var, vae, meta={"note": "test"})
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.safetensors"]
    var2, vae2 = load_model(path)
    assert var2.config == var.config and vae2.config == vae.config
    for a, b in ((var, var2), (vae, vae2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert var2.vae is vae2 and not var2.training
    assert read_var_config(path) == var.config
    # overwriting keeps a valid directory and leaves no temporary folders behind
    save_pretrained(path, var, vae)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_official_pth_pair_is_detected(tiny, tmp_path):
    var, vae = tiny
    torch.save(var.state_dict(), tmp_path / "var_tiny.pth")
    torch.save(vae.state_dict(), tmp_path / "vae_tiny.pth")
    with pytest.raises(CheckpointError, match="no tokenizer"):
        load_model(tmp_path / "var_tiny.pth")
    var2, vae2 = load_model(tmp_path / "var_tiny.pth", tmp_path / "vae_tiny.pth")
    cfg = var2.config
    assert (cfg.depth, cfg.width, cfg.heads, cfg.num_classes, cfg.patch_nums) == (
        4, 64, 4, 10, (1, 2, 4))
    assert vae2.config.ch_mult == vae.config.ch_mult and vae2.config.V == 32


def test_official_shapes_are_inferred_on_meta():
    from variant import build_var
    from variant.config import PATCH_NUMS_512

    with torch.device("meta"):
        var = build_var(None, depth=36, shared_aln=True, patch_nums=PATCH_NUMS_512)
    state = var.state_dict()
    assert len(state) == 446
    cfg = var_config_from_state_dict(state)
    got = (cfg.depth, cfg.width, cfg.shared_aln, cfg.patch_nums)
    assert got == (36, 2304, True, PATCH_NUMS_512)


def test_wrong_depth_names_the_mismatch(tiny, tmp_path):
    var, vae = tiny
    from variant.models.var import VAR

    deeper = VAR(var.config.__class__(**{**var.config.__dict__, "depth": 6}), vae)
    from variant.pretrained import _load_into

    message = "this is a depth-6 checkpoint but the model has depth 4"
    with pytest.raises(CheckpointError, match=message):
        _load_into(var, deeper.state_dict(), "deeper.pth")


def test_corrupted_and_foreign_files(tiny, tmp_path):
    var, vae = tiny
    torch.save(var.state_dict(), tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(tmp_path / "cut.pth")
    torch.save(vae.state_dict(), tmp_path / "vae_as_var.pth")
    with pytest.raises(CheckpointError, match="looks like a VQVAE checkpoint"):
        load_model(tmp_path / "vae_as_var.pth", tmp_path / "ok.pth")
    path = save_pretrained(tmp_path / "m", var, vae)
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(path)
    (path / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a VARiant model config"):
        load_model(path)


def test_missing_source_and_offline_hub(monkeypatch, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nothing-here")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="Hugging Face Hub"):
        load_model("someone/some-variant-model")
