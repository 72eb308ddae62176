"""Model directories (config.json + safetensors), official `.pth` pairs and Hub ids.

A VARiant model directory holds:
- `config.json`: {"format": "variant-model", "version": 1, "var": {...}, "vae": {...},
  "meta": {...}}
- `model.safetensors`: the VAR state dict (official key names)
- `tokenizer.safetensors`: the VQVAE state dict (official key names)

Directories are written atomically: into a temporary sibling, then renamed into place.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from .atomic import atomic_directory
from .config import VAEConfig, VARConfig, config_from_dict, config_to_dict
from .models.convert import (
    CheckpointError,
    explain_mismatch,
    read_state_dict,
    vae_config_from_state_dict,
    var_config_from_state_dict,
)
from .models.var import VAR

log = logging.getLogger(__name__)

FORMAT = "variant-model"
OFFICIAL_VAE_NAME = "vae_ch160v4096z32.pth"


def build_vae_from_config(cfg: VAEConfig):
    from .models.vqvae import VQVAE

    return VQVAE(cfg)


def save_pretrained(directory: str | Path, var: VAR, vae, meta: dict | None = None,
                    dtype: torch.dtype | None = None) -> Path:
    """Write `var` and its tokenizer to a model directory, atomically.

    `dtype` (e.g. torch.float16) stores floating-point tensors in that type to save space; loading
    casts them back to the model's dtype.
    """
    from safetensors.torch import save_file

    with atomic_directory(directory) as tmp:
        config = {"format": FORMAT, "version": 1, "var": config_to_dict(var.config),
                  "vae": config_to_dict(vae.config), "meta": meta or {}}
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        save_file(_contiguous(var.state_dict(), dtype), str(tmp / "model.safetensors"))
        save_file(_contiguous(vae.state_dict(), dtype), str(tmp / "tokenizer.safetensors"))
    return Path(directory)


def _contiguous(state: dict[str, torch.Tensor], dtype: torch.dtype | None = None):
    out = {}
    for key, value in state.items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point() and torch.isfinite(value).all():
            value = value.to(dtype)  # masks holding -inf stay float32
        out[key] = value.contiguous()
    return out


def load_model(source: str | Path, vae_path: str | Path | None = None, *,
               device: str | torch.device = "cpu", **config_overrides) -> tuple[VAR, object]:
    """Load (var, vae) from a model directory, an official `.pth` (+ VQVAE `.pth`) or a Hub id.

    The VAR comes back in eval mode with the tokenizer attached (`var.vae`), both on `device`.
    """
    path = Path(source)
    if path.is_dir():
        var, vae = _load_directory(path, config_overrides)
    elif path.is_file():
        var, vae = _load_official(path, vae_path, config_overrides)
    elif _looks_like_hub_id(str(source)):
        var, vae = _load_directory(_download(str(source)), config_overrides)
    else:
        raise CheckpointError(
            f"model {source!r} not found: give a model directory (config.json + safetensors), "
            "an official var_d*.pth file, or a Hugging Face Hub id such as 'owner/name'."
        )
    vae = vae.to(device).eval()
    var = var.to(device).eval()
    return var.attach_vae(vae), vae


def read_var_config(source: str | Path) -> VARConfig:
    """The VAR configuration of a model directory or official checkpoint, without building it."""
    path = Path(source)
    if path.is_dir():
        config = _read_config_json(path)
        return config_from_dict(VARConfig, config["var"])
    if path.is_file():
        return var_config_from_state_dict(read_state_dict(path))
    if _looks_like_hub_id(str(source)):
        return read_var_config(_download(str(source)))
    raise CheckpointError(f"model {source!r} not found: give a model directory, an official "
                          "var_d*.pth file or a Hugging Face Hub id.")


def _read_config_json(path: Path) -> dict:
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{path} has no config.json; it is not a VARiant model directory.")
    try:
        config = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{cfg_file} is not valid JSON ({err}); the directory may be "
                              "corrupted, re-save or re-download it.") from err
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_file} is not a VARiant model config (format "
                              f"{config.get('format')!r}, expected {FORMAT!r}).")
    return config


def _load_directory(path: Path, overrides: dict) -> tuple[VAR, object]:
    config = _read_config_json(path)
    var_cfg = config_from_dict(VARConfig, {**config["var"], **overrides})
    vae = build_vae_from_config(config_from_dict(VAEConfig, config["vae"]))
    var = VAR(var_cfg, vae)
    _load_into(var, read_state_dict(path / "model.safetensors"), f"{path}/model.safetensors")
    _load_into(vae, read_state_dict(path / "tokenizer.safetensors"),
               f"{path}/tokenizer.safetensors")
    return var, vae


def _load_official(var_path: Path, vae_path, overrides: dict) -> tuple[VAR, object]:
    state = read_state_dict(var_path)
    var_cfg = var_config_from_state_dict(state, **overrides)
    vae_path = Path(vae_path) if vae_path else var_path.with_name(OFFICIAL_VAE_NAME)
    if not vae_path.is_file():
        raise CheckpointError(
            f"no tokenizer for {var_path.name}: expected {vae_path}. Pass the VQVAE file "
            f"(--vae {OFFICIAL_VAE_NAME}) or put it next to the VAR checkpoint."
        )
    vae_state = read_state_dict(vae_path)
    vae = build_vae_from_config(vae_config_from_state_dict(vae_state, var_cfg.patch_nums))
    _load_into(vae, vae_state, str(vae_path))
    if vae.config.V != var_cfg.V or vae.config.Cvae != var_cfg.Cvae:
        raise CheckpointError(
            f"tokenizer {vae_path.name} (V={vae.config.V}, Cvae={vae.config.Cvae}) does not match "
            f"{var_path.name} (V={var_cfg.V}, Cvae={var_cfg.Cvae})."
        )
    var = VAR(var_cfg, vae)
    _load_into(var, state, str(var_path))
    log.info("loaded official checkpoint %s (depth %d, %d px)", var_path.name, var_cfg.depth,
             vae.config.image_size)
    return var, vae


def _load_into(module: torch.nn.Module, state: dict, what: str) -> None:
    explain_mismatch(module, state, what)
    module.load_state_dict(state, strict=True)


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/", "~"))


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id))
    except Exception as err:
        raise CheckpointError(
            f"could not fetch {repo_id!r} from the Hugging Face Hub ({type(err).__name__}: "
            f"{str(err)[:160]}). Offline? Download the model directory elsewhere and pass its "
            "local path, or set HF_HOME to a cache that already holds it."
        ) from err
