"""Files shipped inside the package: the bundled tiny models."""

from __future__ import annotations

from pathlib import Path

from .errors import ModelError

ASSETS = Path(__file__).parent / "assets"
BUNDLED_MODEL = "tiny-qwen3vl"
"""The default model: a tiny Qwen3-VL trained from scratch on synthetic strips and scenes."""


def bundled_models() -> list[str]:
    """Names of the models shipped with the package."""
    return sorted(p.name for p in ASSETS.iterdir() if (p / "config.json").is_file())


def bundled_model_path(name: str = BUNDLED_MODEL) -> Path:
    """Folder of a bundled model (a standard Hugging Face model folder)."""
    path = ASSETS / name
    if not (path / "config.json").exists():
        raise ModelError(
            f"The bundled model {name!r} is missing from {ASSETS}.",
            f"Use one of {', '.join(bundled_models()) or '(none installed: reinstall gazeheads)'}, or pass --model "
            "with a hub id or a local model folder.",
        )
    return path


def resolve_model(name_or_path: str | Path | None) -> tuple[str, str]:
    """(path or hub id to load, display name): None and bundled names map to the shipped folders."""
    if name_or_path is None:
        return str(bundled_model_path()), f"{BUNDLED_MODEL} (bundled)"
    text = str(name_or_path)
    if not Path(text).exists() and text in bundled_models():
        return str(bundled_model_path(text)), f"{text} (bundled)"
    return text, text
