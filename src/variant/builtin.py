"""The built-in default model shipped inside the package (trained on the procedural dataset)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"


def builtin_model_dir() -> Path:
    path = ASSETS / "builtin"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"the built-in model is missing from this installation ({path}); reinstall the "
            "package, or pass --model PATH or --model random:tiny."
        )
    return path


def export_builtin(model_dir: str | Path, dest: str | Path | None = None, meta: dict | None = None):
    """Store a trained model as the package's built-in model (float16 tensors, a few MB).

    Used once per release on the output of `variant demo --mode full` (see assets/builtin/README).
    """
    import torch

    from .pretrained import load_model, save_pretrained

    var, vae = load_model(model_dir)
    return save_pretrained(dest or ASSETS / "builtin", var, vae, meta=meta, dtype=torch.float16)
