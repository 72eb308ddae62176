"""The model resolver (every source kind), model directories, official-format .pth files, and
the errors for wrong or broken files."""

import json
import logging
import sys
import types

import pytest
import torch

import variant
from variant.builtin import builtin_model_dir
from variant.config import model_preset
from variant.models.convert import CheckpointError, var_config_from_state_dict
from variant.pretrained import (
    load_model,
    random_model,
    read_var_config,
    resolve_source,
    save_pretrained,
)


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


def _fake_hub(monkeypatch, model_dir=None):
    """Replace huggingface_hub with a recorder; its download returns `model_dir`."""
    calls = []

    def snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        if model_dir is None:
            raise OSError("offline")
        return str(model_dir)

    fake = types.ModuleType("huggingface_hub")
    fake.snapshot_download = snapshot_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    return calls


@pytest.mark.parametrize("source", [
    "./missing", "/no/such/model", "~/no-such-model", "runs/a/final", "owner/var_d16.pth",
    "model.pt", "owner/name.safetensors", "owner/config.json", "C:/models/m", "C:model",
    "owner\\name",
])
def test_path_like_missing_source_never_reaches_the_hub(monkeypatch, source):
    calls = _fake_hub(monkeypatch)
    with pytest.raises(CheckpointError, match="not found.*model directory.*random:PRESET"):
        load_model(source)
    with pytest.raises(CheckpointError, match="not found"):
        read_var_config(source)
    assert calls == []


def test_missing_relative_path_whose_folder_exists_is_not_a_hub_id(monkeypatch, tmp_path):
    calls = _fake_hub(monkeypatch)
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        load_model("runs/final")
    assert calls == []


def test_hub_id_fetches_only_the_files_read_at_the_revision(tiny, monkeypatch, tmp_path):
    var, vae = tiny
    path = save_pretrained(tmp_path / "snapshot", var, vae)
    calls = _fake_hub(monkeypatch, path)
    var2, _ = load_model("someone/tiny-variant", revision="v1.0")
    assert var2.config == var.config and not var2.training
    assert calls == [("someone/tiny-variant", {
        "revision": "v1.0",
        "allow_patterns": ["config.json", "model.safetensors", "tokenizer.safetensors"]})]
    calls.clear()
    assert read_var_config("someone/tiny-variant") == var.config
    assert calls == [("someone/tiny-variant",
                      {"revision": None, "allow_patterns": ["config.json"]})]


def test_hub_failure_names_the_repository_and_the_fix(monkeypatch):
    _fake_hub(monkeypatch)
    with pytest.raises(CheckpointError, match="'someone/x' \\(revision main\\).*local path"):
        load_model("someone/x")


def test_revision_only_for_hub_ids(tiny, tmp_path):
    path = save_pretrained(tmp_path / "m", *tiny)
    with pytest.raises(ValueError, match="Hub ids only.*drop --revision"):
        load_model(path, revision="main")
    with pytest.raises(ValueError, match="Hub ids only"):
        read_var_config("random:tiny", revision="main")


def test_random_preset_is_seeded_and_matches_random_model():
    var, vae = variant.load_model("random:tiny", seed=3)
    ref_var, ref_vae = random_model("tiny", "cpu", seed=3)
    for a, b in ((var, ref_var), (vae, ref_vae)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert var.vae is vae and not var.training and not vae.training
    other, _ = variant.load_model("random:tiny", seed=4)
    assert not torch.equal(other.head.weight, var.head.weight)
    assert read_var_config("random:tiny") == model_preset("tiny").var
    assert variant.load_model("random:tiny", cond_drop_rate=0.0)[0].config.cond_drop_rate == 0.0


def test_random_preset_matches_the_pre_resolver_recipe():
    """`random:PRESET` = manual_seed, VQVAE(preset.vae), VAR(preset.var).init_weights()."""
    from variant.models.var import VAR
    from variant.models.vqvae import VQVAE

    p = model_preset("tiny")
    torch.manual_seed(0)
    ref_vae = VQVAE(p.vae)
    ref_var = VAR(p.var, ref_vae).init_weights()
    var, vae = load_model("random:tiny")
    for a, b in ((var, ref_var), (vae, ref_vae)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_unknown_random_preset_lists_the_presets():
    with pytest.raises(ValueError, match="unknown model preset 'nope'.*tiny"):
        load_model("random:nope")


def test_builtin_source():
    assert resolve_source("builtin").path == builtin_model_dir()
    var, vae = variant.load_model("builtin")
    assert var.vae is vae and not var.training
    assert read_var_config("builtin") == var.config


def test_separate_tokenizer_only_for_official_checkpoints(tiny, tmp_path):
    with pytest.raises(ValueError, match="official .pth checkpoints only.*drop --vae"):
        load_model("random:tiny", tmp_path / "vae.pth")


def test_unknown_config_key_warns(tiny, tmp_path, caplog):
    path = save_pretrained(tmp_path / "m", *tiny)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "extras": {"x": 1}}))
    with caplog.at_level(logging.WARNING, logger="variant.pretrained"):
        var, _ = load_model(path)
    assert var.config == tiny[0].config
    assert any("unknown top-level key 'extras'" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="variant.pretrained"):
        read_var_config(path)
    assert "'extras'" in caplog.text
