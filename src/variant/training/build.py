"""The starting point of a run: a VAR and its frozen tokenizer, from scratch or pretrained.

Every rank builds the same weights (seeded from scratch, or read from the same files), which
FSDP2 relies on: it shards what each rank holds and does not broadcast.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from ..config import model_preset
from ..models.var import VAR
from ..models.vqvae import VQVAE
from ..pretrained import load_model
from ..tokenizer_io import load_tokenizer
from .config import TrainConfig

log = logging.getLogger(__name__)


def build_models(config: TrainConfig) -> tuple[VAR, VQVAE]:
    """(var in train mode, frozen vae), both on CPU; the caller moves them to its device."""
    overrides = {}
    if config.drop_path_rate >= 0:
        overrides["drop_path_rate"] = config.drop_path_rate
    if config.cond_drop_rate >= 0:
        overrides["cond_drop_rate"] = config.cond_drop_rate
    if config.init == "scratch":
        var, vae = _from_scratch(config, overrides)
    else:
        var, vae = load_model(config.init, config.vae or None, device="cpu", seed=config.seed,
                              **overrides)
        log.info("initialised from %s", config.init)
    vae.freeze()
    return var.attach_vae(vae).train(), vae


def _from_scratch(config: TrainConfig, overrides: dict) -> tuple[VAR, VQVAE]:
    preset = model_preset(config.model_preset)
    torch.manual_seed(config.seed)
    if config.vae:
        files_need = None if Path(config.vae).is_dir() else preset.vae.patch_nums
        vae = load_tokenizer(config.vae, patch_nums=files_need)
    else:
        vae = VQVAE(preset.vae)
        log.warning("training from scratch with a randomly initialised tokenizer; pass --vae "
                    "with a trained one for meaningful images")
    q = vae.config
    var_cfg = dataclasses.replace(preset.var, V=q.V, Cvae=q.Cvae, patch_nums=q.patch_nums,
                                  **overrides)
    var = VAR(var_cfg, vae).init_weights()
    log.info("initialised %s from scratch (depth %d, width %d)", config.model_preset,
             var_cfg.depth, var_cfg.width)
    return var, vae
