"""Files shipped inside the package: the bundled tiny model."""

from __future__ import annotations

from pathlib import Path

from .errors import ModelError

ASSETS = Path(__file__).parent / "assets"
BUNDLED_MODEL = "tiny-qwen3vl"


def bundled_model_path() -> Path:
    """Folder of the bundled tiny Qwen3-VL (a standard Hugging Face model folder)."""
    path = ASSETS / BUNDLED_MODEL
    if not (path / "config.json").exists():
        raise ModelError(
            f"The bundled model is missing from {path}.",
            "Reinstall gazeheads, or pass --model with a hub id or a local model folder.",
        )
    return path
