"""Where models come from: the one resolver of model sources, and model directories.

Every command, the trainer and the Python API name a model the same way (`resolve_source`):
- `builtin`: the model shipped with the package (a model directory, see `variant.builtin`);
- `random:PRESET`: randomly initialised weights of a named preset (`variant.config`), seeded;
- a model directory: config.json + safetensors (below);
- an official `var_d*.pth` (its VQVAE `.pth` given separately, or `vae_ch160v4096z32.pth` next to
  it);
- a Hugging Face Hub id `owner/name` (a model directory on the Hub), at an optional revision.
A string that looks like a local path is never looked up on the Hub.

A VARiant model directory holds:
- `config.json`: {"format": "variant-model", "version": 1, "var": {...}, "vae": {...},
  "meta": {...}}
- `model.safetensors`: the VAR state dict (official key names)
- `tokenizer.safetensors`: the VQVAE state dict (official key names)
- a model with quantised weights (variant/precision.py) adds `"weights": "int8" | "fp8"` to
  config.json and stores each quantised weight as its plain inner tensors (`KEY.qdata`, ...)

Directories are written atomically: into a temporary sibling, then renamed into place.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from . import precision
from .atomic import atomic_directory
from .builtin import ASSETS, BUILTIN, builtin_model_dir
from .config import VAEConfig, VARConfig, config_from_dict, config_to_dict, model_preset
from .jsonfile import read_json
from .models.convert import (
    CheckpointError,
    explain_mismatch,
    read_state_dict,
    vae_config_from_state_dict,
    var_config_from_state_dict,
)
from .models.var import VAR
from .models.vqvae import VQVAE

log = logging.getLogger(__name__)

FORMAT = "variant-model"
CONFIG_KEYS = ("format", "version", "var", "vae", "meta", "weights")
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.safetensors")
OFFICIAL_VAE_NAME = "vae_ch160v4096z32.pth"
RANDOM_PREFIX = "random:"
SOURCE_FORMS = ("a model directory (config.json + safetensors), an official var_d*.pth file, "
                "'builtin', 'random:PRESET' (e.g. random:tiny) or a Hugging Face Hub id "
                "'owner/name'")
_PATH_SUFFIXES = (".pth", ".pt", ".safetensors", ".json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


# --------------------------------------------------------------------------------------------
# Resolution: one place that knows the source syntax.

@dataclass(frozen=True)
class ModelSource:
    """A resolved source: `kind` is "random" (`preset` set), "directory" or "official" (`path`
    set: the model directory, or the official VAR `.pth`)."""

    kind: str
    preset: str = ""
    path: Path | None = None


def resolve_source(source: str | Path, *, revision: str | None = None,
                   hub_files: tuple[str, ...] = MODEL_FILES) -> ModelSource:
    """What `source` names (see the module docstring). A Hub id is downloaded (only
    `hub_files`, at `revision`) into the Hugging Face cache and resolves to that directory."""
    text = str(source)
    if isinstance(source, str) and text == BUILTIN:
        resolved = ModelSource("directory", path=builtin_model_dir())
    elif isinstance(source, str) and text.startswith(RANDOM_PREFIX):
        preset = text[len(RANDOM_PREFIX):]
        model_preset(preset)  # unknown names raise ValueError listing the presets
        resolved = ModelSource("random", preset=preset)
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            resolved = ModelSource("directory", path=path)
        elif path.is_file():
            resolved = ModelSource("official", path=path)
        elif isinstance(source, str) and _is_hub_id(text):
            return ModelSource("directory", path=_download(text, revision, hub_files))
        else:
            raise CheckpointError(f"model {text!r} not found: give {SOURCE_FORMS}.")
    if revision is not None:
        raise ValueError(f"a revision ({revision!r}) applies to Hugging Face Hub ids only, and "
                         f"{text!r} is not one; drop --revision.")
    return resolved


def is_generated_source(source: str | Path) -> bool:
    """Whether `source` names a model the package makes itself (`builtin`, `random:PRESET`)
    rather than files of the user's (a directory, a checkpoint, a Hub id)."""
    text = str(source)
    return text == BUILTIN or text.startswith(RANDOM_PREFIX)


def _looks_like_path(text: str) -> bool:
    return (text.startswith((".", "/", "~", "\\")) or "\\" in text or text.count("/") > 1
            or text.lower().endswith(_PATH_SUFFIXES) or bool(_WINDOWS_DRIVE.match(text)))


def _is_hub_id(text: str) -> bool:
    # "runs/final" where ./runs exists is a missing local model, not a Hub repository
    return (not _looks_like_path(text) and bool(_HUB_ID.match(text))
            and not Path(text.split("/")[0]).is_dir())


def _download(repo_id: str, revision: str | None, files: tuple[str, ...]) -> Path:
    try:
        # lazy: only Hub ids need it, and offline installs may lack it
        from huggingface_hub import snapshot_download
    except ImportError as err:
        raise CheckpointError(
            f"{repo_id!r} looks like a Hugging Face Hub id, but huggingface_hub is not "
            "installed (pip install huggingface_hub). For a local model, pass its path."
        ) from err
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=list(files)))
    except Exception as err:  # network, authentication, unknown repository or revision
        raise CheckpointError(
            f"could not fetch {repo_id!r} (revision {revision or 'main'}) from the Hugging Face "
            f"Hub ({type(err).__name__}: {str(err)[:160]}). Offline? Download the model "
            "directory elsewhere and pass its local path, or set HF_HOME to a cache that "
            "already holds it."
        ) from err


# --------------------------------------------------------------------------------------------
# Loading


def load_model(source: str | Path, vae_path: str | Path | None = None, *,
               device: str | torch.device = "cpu", revision: str | None = None, seed: int = 0,
               weights: str | None = None, **config_overrides) -> tuple[VAR, VQVAE]:
    """(var, vae) from any source `resolve_source` accepts.

    `vae_path`: the VQVAE `.pth` of an official checkpoint. `seed`: the initialisation of
    `random:PRESET`. `config_overrides`: VARConfig fields to replace (e.g. drop_path_rate).
    The VAR comes back in eval mode with the tokenizer attached (`var.vae`), both on `device`.
    `weights`: 'int8' or 'fp8' quantises the transformer's linear layers once loaded
    (variant/precision.py; checked against `device` first); None keeps the weights as stored (a
    directory saved quantised loads quantised).
    """
    precision.check_precision(weights, device)
    resolved = resolve_source(source, revision=revision)
    if vae_path is not None and resolved.kind != "official":
        raise ValueError(f"a separate tokenizer ({vae_path}) applies to official .pth "
                         f"checkpoints only; {str(source)!r} brings its own, so drop --vae.")
    if resolved.kind == "random":
        var, vae = random_model(resolved.preset, device, seed, **config_overrides)
    elif resolved.kind == "directory":
        var, vae = _load_directory(resolved.path, config_overrides, weights, device)
    else:
        var, vae = _load_official(resolved.path, vae_path, config_overrides)
    vae = vae.to(device).eval()
    var = var.to(device).eval()
    if precision.weight_precision(var) is None:
        precision.quantize_weights(var, weights, device)
    return var.attach_vae(vae), vae


def random_model(preset: str, device: str | torch.device = "cpu", seed: int = 0,
                 **config_overrides) -> tuple[VAR, VQVAE]:
    """Preset `preset` with the official from-scratch initialisation, seeded by `seed`."""
    p = model_preset(preset)
    var_cfg = p.var
    if config_overrides:
        var_cfg = config_from_dict(VARConfig, {**config_to_dict(var_cfg), **config_overrides})
    torch.manual_seed(seed)
    vae = VQVAE(p.vae).to(device).eval()
    var = VAR(var_cfg, vae).init_weights().to(device).eval()
    return var, vae


def read_var_config(source: str | Path, *, revision: str | None = None) -> VARConfig:
    """The VAR configuration of any model source, without building the model (a Hub id fetches
    config.json only)."""
    return read_model_config(source, revision=revision)[0]


def read_model_config(source: str | Path, *,
                      revision: str | None = None) -> tuple[VARConfig, VAEConfig, dict]:
    """(VAR config, tokenizer config, meta) of any model source, without building the model.

    An official `.pth` carries no tokenizer config or meta: the official VQVAE's shape and {}.
    """
    resolved = resolve_source(source, revision=revision, hub_files=("config.json",))
    if resolved.kind == "random":
        preset = model_preset(resolved.preset)
        return preset.var, preset.vae, {}
    if resolved.kind == "directory":
        config = _read_config_json(resolved.path)
        return (config_from_dict(VARConfig, config["var"]),
                config_from_dict(VAEConfig, config["vae"]), config.get("meta", {}))
    var_config = var_config_from_state_dict(read_state_dict(resolved.path))
    return var_config, VAEConfig(patch_nums=var_config.patch_nums), {}


def _read_config_json(path: Path) -> dict:
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise CheckpointError(f"{path} has no config.json; it is not a VARiant model directory.")
    try:
        config = read_json(cfg_file, "model config",
                           hint="the directory may be corrupted, re-save or re-download it")
    except ValueError as err:
        raise CheckpointError(str(err)) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{cfg_file} is not a VARiant model config (format {found!r}, "
                              f"expected {FORMAT!r}).")
    missing = [key for key in ("var", "vae") if key not in config]
    if missing:
        raise CheckpointError(f"{cfg_file} lacks {missing}; the directory is incomplete, "
                              "re-save or re-download it.")
    for key, cls in (("var", VARConfig), ("vae", VAEConfig)):
        try:
            if not isinstance(config[key], dict):
                raise ValueError(f"{key!r} must be an object of {cls.__name__} fields")
            config_from_dict(cls, config[key])
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{cfg_file}: {str(err).rstrip('.')}; fix the file or "
                                  "re-save the model.") from None
    for key in sorted(set(config) - set(CONFIG_KEYS)):
        log.warning("%s: unknown top-level key %r ignored (known: %s); written by a newer "
                    "version?", cfg_file, key, ", ".join(CONFIG_KEYS))
    return config


def _load_directory(path: Path, overrides: dict, weights: str | None,
                    device) -> tuple[VAR, VQVAE]:
    config = _read_config_json(path)
    var_cfg = config_from_dict(VARConfig, {**config["var"], **overrides})
    vae = VQVAE(config_from_dict(VAEConfig, config["vae"]))
    var = VAR(var_cfg, vae)
    state, what = read_state_dict(path / "model.safetensors"), f"{path}/model.safetensors"
    stored = config.get("weights")
    if stored is not None:  # quantise the new model as it was, then copy the stored tensors in
        if weights not in (None, stored):
            raise ValueError(f"{path} holds {stored} weights, not {weights}; load it without "
                             f"--weights (or as {stored}), or quantise the full-precision model.")
        precision.quantize_weights(var.to(device), stored, device)
        state = precision.load_plain_state(var, state, what)
        own = var.state_dict()  # the quantised weights hold the stored tensors now
        explain_mismatch(var, {**{f"{n}.weight": own[f"{n}.weight"]
                                  for n, _ in precision.quantised_layers(var)}, **state}, what)
        var.load_state_dict(state, strict=False)
    else:
        _load_into(var, state, what)
    _load_into(vae, read_state_dict(path / "tokenizer.safetensors"),
               f"{path}/tokenizer.safetensors")
    return var, vae


def _load_official(var_path: Path, vae_path, overrides: dict) -> tuple[VAR, VQVAE]:
    state = read_state_dict(var_path)
    var_cfg = var_config_from_state_dict(state, **overrides)
    vae_path = Path(vae_path) if vae_path else var_path.with_name(OFFICIAL_VAE_NAME)
    if not vae_path.is_file():
        raise CheckpointError(
            f"no tokenizer for {var_path.name}: expected {vae_path}. Pass the VQVAE file "
            f"(--vae {OFFICIAL_VAE_NAME}) or put it next to the VAR checkpoint."
        )
    vae_state = read_state_dict(vae_path)
    vae = VQVAE(vae_config_from_state_dict(vae_state, var_cfg.patch_nums))
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


# --------------------------------------------------------------------------------------------
# Saving


def save_pretrained(directory: str | Path, var: VAR, vae: VQVAE, meta: dict | None = None,
                    dtype: torch.dtype | None = None) -> Path:
    """Write `var` and its tokenizer to a model directory, atomically.

    `dtype` (e.g. torch.float16) stores floating-point tensors in that type to save space; loading
    casts them back to the model's dtype.
    """
    weights = precision.weight_precision(var)
    with atomic_directory(directory) as tmp:
        config = {"format": FORMAT, "version": 1, "var": config_to_dict(var.config),
                  "vae": config_to_dict(vae.config), "meta": meta or {}}
        if weights is not None:
            config["weights"] = weights
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        state = precision.plain_state(var.state_dict())
        save_file(_contiguous(state, dtype), str(tmp / "model.safetensors"))
        save_file(_contiguous(vae.state_dict(), dtype), str(tmp / "tokenizer.safetensors"))
    return Path(directory)


def export_builtin(source: str | Path, dest: str | Path | None = None,
                   meta: dict | None = None) -> Path:
    """Store a trained model as the package's built-in model (float16 tensors, a few MB).

    Used once per release on the output of `variant demo --mode full` (see assets/builtin/README).
    `meta` adds to (or overrides) the source's own, which records the trained subnet depths and
    bridge that the budget planner and the studio offer.
    """
    var, vae = load_model(source)
    meta = {**read_model_config(source)[2], **(meta or {})}  # keep the trained subnets and bridge
    return save_pretrained(dest or ASSETS / BUILTIN, var, vae, meta=meta, dtype=torch.float16)


def _contiguous(state: dict[str, torch.Tensor], dtype: torch.dtype | None = None):
    out = {}
    for key, value in state.items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point() and torch.isfinite(value).all():
            value = value.to(dtype)  # masks holding -inf stay float32
        out[key] = value.contiguous()
    return out
