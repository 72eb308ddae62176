"""Tokenizer directories: the multi-scale VQVAE on its own, without a VAR.

A tokenizer directory holds
- `config.json`: {"format": "variant-tokenizer", "version": 1, "vae": {VAEConfig fields},
  "meta": {...}}
- `tokenizer.safetensors`: the VQVAE state dict (official key names).

It is written atomically (a temporary sibling directory, then `os.replace`). `load_tokenizer` also
reads the tokenizer of a full model directory (`variant-model`, see `variant.pretrained`), the
`tokenizer/` sub-directory of a `variant train-tokenizer` run, and official VQVAE state-dict files
(`vae_ch160v4096z32.pth` or `.safetensors`, configuration inferred from the weights).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from .atomic import atomic_directory
from .builtin import BUILTIN, builtin_model_dir
from .config import PATCH_NUMS_256, VAEConfig, config_from_dict, config_to_dict
from .jsonfile import read_json
from .models.convert import (
    CheckpointError,
    explain_mismatch,
    read_state_dict,
    vae_config_from_state_dict,
)
from .models.vqvae import VQVAE

FORMAT = "variant-tokenizer"
MODEL_FORMAT = "variant-model"
WEIGHTS_FILE = "tokenizer.safetensors"
RUN_SUBDIR = "tokenizer"  # where `variant train-tokenizer` puts the tokenizer inside its run dir
# Statistics from tokenizer training: no effect on tokens or images, so not part of the identity.
STATISTICS_KEYS = ("quantize.ema_vocab_hit_SV",)


def save_tokenizer(directory: str | Path, vae: VQVAE, meta: dict | None = None) -> Path:
    """Write `vae` as a tokenizer directory, atomically (replacing an existing one)."""
    with atomic_directory(directory) as tmp:
        config = {"format": FORMAT, "version": 1, "vae": config_to_dict(vae.config),
                  "meta": {"fingerprint": tokenizer_fingerprint(vae), **(meta or {})}}
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        state = {k: v.detach().contiguous().cpu() for k, v in vae.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
    return Path(directory)


def load_tokenizer(
    source: str | Path,
    *,
    patch_nums: tuple[int, ...] | None = None,
    device: str | torch.device = "cpu",
    frozen: bool = True,
) -> VQVAE:
    """A VQVAE from a tokenizer directory, a model directory, a train-tokenizer run directory,
    an official state-dict file, or `builtin` (the built-in model's tokenizer).

    `patch_nums` is needed only for state-dict files, which do not record it (default: the
    official 256 px schedule); directories carry their own and must agree with it if given.
    The result is frozen (eval mode, no gradients) unless `frozen=False`.
    """
    path = builtin_model_dir() if isinstance(source, str) and source == BUILTIN else Path(source)
    if path.is_dir():
        vae_cfg, state, what = _read_directory(_tokenizer_dir(path))
        if patch_nums is not None and tuple(patch_nums) != vae_cfg.patch_nums:
            raise ValueError(
                f"tokenizer {path} has patch_nums {vae_cfg.patch_nums}, not {tuple(patch_nums)}; "
                "use a tokenizer trained for this schedule or drop the patch_nums override."
            )
    elif path.is_file():
        state, what = read_state_dict(path), str(path)
        vae_cfg = vae_config_from_state_dict(state, tuple(patch_nums or PATCH_NUMS_256))
    else:
        raise CheckpointError(
            f"tokenizer {source!r} not found: give a tokenizer or model directory (config.json + "
            "tokenizer.safetensors), a train-tokenizer output directory, a VQVAE .pth file or "
            "'builtin'."
        )
    vae = VQVAE(vae_cfg)
    explain_mismatch(vae, state, what)
    vae.load_state_dict(state, strict=True)
    vae = vae.to(device)
    return vae.freeze() if frozen else vae.train()


def read_tokenizer_config(source: str | Path) -> dict:
    """The config.json of a tokenizer/model directory (or train-tokenizer run directory)."""
    path = _tokenizer_dir(Path(source))
    return read_json(path / "config.json", "tokenizer config")


def tokenizer_fingerprint(vae: VQVAE) -> str:
    """A short hash of everything that decides the tokens: the config and the weights.

    The codebook-usage statistics are left out, so a tokenizer directory, a model directory and
    a `.pth` file holding the same weights share one fingerprint.
    """
    digest = hashlib.sha256(json.dumps(config_to_dict(vae.config), sort_keys=True).encode())
    for key, tensor in sorted(vae.state_dict().items()):
        if key in STATISTICS_KEYS:
            continue
        tensor = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:16]


def _tokenizer_dir(path: Path) -> Path:
    if not (path / "config.json").is_file() and (path / RUN_SUBDIR / "config.json").is_file():
        return path / RUN_SUBDIR  # a `variant train-tokenizer` run directory
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"{path} has no config.json; pass a tokenizer directory (written by "
            "`variant train-tokenizer` or save_tokenizer), a model directory or a VQVAE .pth file."
        )
    return path


def _read_directory(path: Path) -> tuple[VAEConfig, dict[str, torch.Tensor], str]:
    cfg_file = path / "config.json"
    try:
        config = read_json(cfg_file, "tokenizer config", hint="re-save the tokenizer")
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_file} is not a tokenizer config (a JSON object); re-save "
                              "the tokenizer.")
    if config.get("format") not in (FORMAT, MODEL_FORMAT) or "vae" not in config:
        raise CheckpointError(
            f"{cfg_file} is neither a tokenizer nor a model config (format "
            f"{config.get('format')!r}, expected {FORMAT!r} or {MODEL_FORMAT!r})."
        )
    weights = path / WEIGHTS_FILE
    return config_from_dict(VAEConfig, config["vae"]), read_state_dict(weights), str(weights)
