"""A tiny Qwen3-VL model trained from scratch on synthetic comics, shipped with the package.

`vocab` builds its word-level tokenizer, `build` its config and processor, `train` the
training script (``python -m gazeheads.tiny.train --out DIR``). The trained model lives in
``gazeheads/assets/tiny-qwen3vl`` (see :func:`model_path`).
"""

from __future__ import annotations

from pathlib import Path


def model_path() -> Path:
    """The folder of the bundled tiny model (a standard Hugging Face model folder)."""
    from ..assets import bundled_model_path

    return bundled_model_path()
