"""Training checkpoints: the one module that writes and reads them.

Layout of a run directory::

    OUT/checkpoints/step-00000120/state.pt    model, optimizer, scaler, RNG, step
    OUT/checkpoints/step-00000120/config.json the TrainConfig of the run
    OUT/final/                                 model directory for `variant sample`

Each checkpoint directory is written under a temporary name and renamed into place, so a crash
(SIGKILL included) leaves either the old set or the complete new one. Only the last `keep_last`
are kept. States are gathered as full (unsharded) state dicts keyed by parameter name, so DDP,
FSDP2 and single-process runs read each other's checkpoints; `state.pt` holds tensors and plain
values only and is read with `weights_only=True`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from ..atomic import atomic_directory, fsync_directory
from ..jsonfile import read_json
from .parallel import DistEnv

log = logging.getLogger(__name__)

FORMAT = "variant-train-state"
STATE_FILE, CONFIG_FILE = "state.pt", "config.json"
_STEP_DIR = re.compile(r"^step-(\d{8,})$")
STALE_PREFIX = ".tmp-"  # temporary checkpoint directories: .tmp-step-00000120-<random>


class CheckpointManager:
    def __init__(self, out_dir: str | Path, keep_last: int = 3):
        self.root = Path(out_dir) / "checkpoints"
        self.keep_last = keep_last

    def list(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            match = _STEP_DIR.match(path.name)
            if match and (path / STATE_FILE).is_file():
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self) -> Path | None:
        found = self.list()
        return found[-1][1] if found else None

    def save(self, step: int, state: dict, config_json: str) -> Path:
        """Write checkpoint `step` atomically, then delete all but the last `keep_last`."""
        final = self.root / f"step-{step:08d}"
        # an existing `final` (the same step saved again, e.g. stopped right after a resume) is
        # replaced; the prefix is what `remove_stale_temporaries` looks for
        with atomic_directory(final, prefix=f"{STALE_PREFIX}{final.name}-") as tmp:
            _write_synced(tmp / STATE_FILE, lambda f: torch.save(state, f))
            _write_synced(tmp / CONFIG_FILE, lambda f: f.write(config_json.encode()))
        fsync_directory(self.root)
        for _, old in self.list()[:-self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def remove_stale_temporaries(self) -> None:
        """Leftovers of a save interrupted by a crash."""
        if self.root.is_dir():
            for path in self.root.glob(f"{STALE_PREFIX}step-*"):
                shutil.rmtree(path, ignore_errors=True)


def load_state(path: str | Path) -> dict:
    """Read `state.pt` of a checkpoint directory (or the file itself), on CPU."""
    path = Path(path)
    file = path / STATE_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path} (expected {STATE_FILE}).")
    state = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{file} is not a VARiant training checkpoint; pass a run directory "
                         "or a checkpoints/step-* directory written by `variant train`.")
    return state


def load_config_json(path: str | Path) -> dict:
    return read_json(Path(path) / CONFIG_FILE, "run config")


_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def collect_state(model: nn.Module, optimizer: torch.optim.Optimizer, *, step: int,
                  scaler: torch.amp.GradScaler | None, env: DistEnv) -> dict:
    """The full training state (collective under FSDP: call on every rank; rank 0 gets it)."""
    return {
        "format": FORMAT,
        "version": 1,
        "step": step,
        "world_size": env.world_size,
        "model": get_model_state_dict(model, options=_FULL),
        "optimizer": get_optimizer_state_dict(model, optimizer, options=_FULL),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "rng": rng_state(env.device),
    }


def collect_model_state(model: nn.Module) -> dict:
    """Full model state dict on CPU (collective under FSDP; rank 0 gets it)."""
    return get_model_state_dict(model, options=_FULL)


def restore_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, *,
                  scaler: torch.amp.GradScaler | None, env: DistEnv) -> int:
    """Load a `collect_state` dict into the (possibly wrapped) model; returns its step."""
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, state["model"], options=options)
    set_optimizer_state_dict(model, optimizer, state["optimizer"], options=options)
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"], env.device)
    return int(state["step"])


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _write_synced(path: Path, write) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
