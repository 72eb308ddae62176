"""The built-in default model shipped inside the package (trained on the procedural dataset).

`variant.pretrained.export_builtin` writes it; the model source `builtin` reads it.
"""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
BUILTIN = "builtin"  # the model source (and tokenizer source) naming this model


def builtin_model_dir() -> Path:
    path = ASSETS / BUILTIN
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"the built-in model is missing from this installation ({path}); reinstall the "
            "package, or pass --model PATH or --model random:tiny."
        )
    return path
