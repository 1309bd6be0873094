"""What a model expects of its inputs: the strip layout, its narration question, answer lengths.

Read once per model, from the model folder's `gazeheads.json` ("layout" block) or from the
defaults of the published method for hub models, without loading any weights (so a command
can check its inputs before the model loads). `GazeModel.layout` holds the result and every
command and API path uses it.

    gazeheads.json: {"layout": {"strip_height": 64, "strip_gap": 0, "narrate_prompt": "...",
                                "answer_tokens": 4, "segment_tokens": 3, "control_percentile": 50}}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from . import prompts
from .errors import DataError, ModelError

LAYOUT_FILE = "gazeheads.json"
MAX_STRIP_PIXELS = 40_000_000
"""Pixel budget of one stitched strip or image (about 6,300 x 6,300): larger inputs are refused before
any decoding or model work, since every VLM processor shrinks them far below this anyway."""
MAX_PANEL_PIXELS = 40_000_000
"""Pixel budget of one panel file, checked from its header before it is decoded."""
MAX_STRIP_HEIGHT = 2048
"""Tallest strip: 6 panels at this height already approach the pixel budget."""


@dataclass(frozen=True)
class StripLayout:
    """How panels are stitched into the one image a model sees (the published rules by default).

    `height` is rounded to a multiple of `multiple` (32: one merged Qwen3-VL token); each panel
    keeps its aspect ratio at a width rounded the same way; panels are pasted edge to edge, and a
    white band `gap` px wide is painted over each inner boundary (nothing is inserted).
    """

    height: int = 256
    gap: int = 6
    n_panels: int = 6
    multiple: int = 32

    def __post_init__(self) -> None:
        for name in ("height", "gap", "n_panels", "multiple"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise DataError(f"Strip {name} must be a whole number, got {value!r}.", f"Give an integer {name}.")
        if not 1 <= self.height <= MAX_STRIP_HEIGHT:
            raise DataError(f"Strip height {self.height} px is outside 1..{MAX_STRIP_HEIGHT}.",
                            f"Use a height up to {MAX_STRIP_HEIGHT} px (models shrink larger strips anyway); "
                            "256 is the default for hub models.")
        if not 1 <= self.n_panels <= 64:
            raise DataError(f"{self.n_panels} panels per strip.", "Use between 1 and 64 panels (the paper uses 6).")
        if not 1 <= self.multiple <= 1024:
            raise DataError(f"Size multiple {self.multiple}.", "Use a multiple between 1 and 1024 (default 32).")
        if not 0 <= self.gap < self.multiple:
            raise DataError(f"A band of {self.gap} px between panels at a size multiple of {self.multiple}.",
                            f"Use a gap between 0 and {self.multiple - 1} px (default 6).")

    @property
    def rounded_height(self) -> int:
        return round_to(self.height, self.multiple)

    def replace(self, **changes: Any) -> "StripLayout":
        """A copy with some fields changed (None keeps the current value)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def round_to(value: float, multiple: int) -> int:
    """`value` rounded to the nearest multiple (Python's round: halves to even), at least one multiple."""
    return max(multiple, int(round(value / multiple)) * multiple)


@dataclass(frozen=True)
class ModelLayout:
    """Everything a model expects of its inputs and answers (defaults: the published method's).

    `answer_tokens` / `segment_tokens` (None: the protocols' own 15/100/50 tokens) are set by
    models trained to answer briefly; `control_percentile` is the default pool of random control
    heads (5, the paper's; models with few heads need more); `synthetic` says the model was
    trained on gazeheads' synthetic strips and scenes (which are then its default data).
    """

    strip: StripLayout = field(default_factory=StripLayout)
    narration_question: str = prompts.NARRATION_QUESTION
    answer_tokens: int | None = None
    segment_tokens: int | None = None
    control_percentile: float = 5.0
    synthetic: bool = False
    source: str = "defaults of the published method"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["strip"] = self.strip.to_dict()
        return data

    def describe(self) -> str:
        s = self.strip
        band = f"a {s.gap}-px white band painted over each panel boundary" if s.gap else "no band between panels"
        return f"strips {s.rounded_height} px high, panels edge to edge, {band} ({self.source})"


def read_layout(model: str | Path | None) -> ModelLayout:
    """The layout of a model: the bundled model's (None), a local folder's `gazeheads.json`, else defaults.

    Reads no weights. A malformed `gazeheads.json` is an error, not a silent default.
    """
    from .assets import resolve_model

    path, _ = resolve_model(model)
    folder = Path(path) if Path(path).is_dir() else None
    if folder is None or not (folder / LAYOUT_FILE).is_file():
        return ModelLayout()
    path = folder / LAYOUT_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"Cannot read the model's layout file {path}: {exc}.",
                         'Fix or remove it; it must be JSON like {"layout": {"strip_height": 64, "strip_gap": 0}}.') \
            from None
    block = meta.get("layout") if isinstance(meta, dict) else None
    if not isinstance(block, dict):
        return ModelLayout(source=str(path))
    return layout_from_dict(block, source=str(path))


def layout_from_dict(block: dict[str, Any], *, source: str = "") -> ModelLayout:
    """A ModelLayout from a gazeheads.json "layout" block (unknown keys are ignored)."""
    defaults = ModelLayout()
    try:
        strip = StripLayout(height=int(block.get("strip_height", defaults.strip.height)),
                            gap=int(block.get("strip_gap", defaults.strip.gap)),
                            n_panels=int(block.get("n_panels", defaults.strip.n_panels)))
        return ModelLayout(
            strip=strip,
            narration_question=str(block.get("narrate_prompt", defaults.narration_question)),
            answer_tokens=_optional_int(block.get("answer_tokens")),
            segment_tokens=_optional_int(block.get("segment_tokens")),
            control_percentile=float(block.get("control_percentile", defaults.control_percentile)),
            synthetic=bool(block.get("synthetic", "panel_size" in block)),
            source=source,
        )
    except (TypeError, ValueError) as exc:
        raise ModelError(f"The layout in {source or 'gazeheads.json'} is malformed: {exc}.",
                         "Give integers for strip_height, strip_gap, answer_tokens and segment_tokens.") from None


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
