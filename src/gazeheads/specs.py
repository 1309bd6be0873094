"""Interventions as values: how to steer (`SteerSpec`) and which heads (`HeadSpec`).

Both are frozen, validated once at construction, and round-trip through plain dicts, so
the API, the command line, evaluation settings, the demo and the main job share one
definition of every default. Nothing here imports torch.

    spec = SteerSpec(phase="decode")                 # the published demo's setting
    heads = ranking.select(HeadSpec("random", k=100, seed=1))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from .errors import GazeheadsError, HeadSelectionError

MODES = ("boost_suppress", "suppress_image", "suppress_all", "max_suppress_all")
"""boost_suppress: +B on the target's image tokens, -B on the other image tokens (the paper's recipe);
suppress_image: only -B on the other image tokens; suppress_all: also -B on the prompt's text;
max_suppress_all: also -B on generated tokens."""

PHASES = ("prefill+decode", "decode", "last-prompt+decode")
"""prefill+decode: every query position (the VQA setting); decode: only forwards of single new
tokens, so the first generated token (computed at the prompt's last position) is unsteered, as
in the published demo and dynamic narration; last-prompt+decode: decode plus the prompt's last
position (earlier gazeheads' "decode")."""

NUMERICS = ("reference", "exact")
"""reference: the published computation, eager attention of the steered heads in the model's
dtype with the bias added to the scores in that dtype (in bfloat16 the steered heads then attend
uniformly inside the target); exact: the bias is applied without rounding the target's scores."""

DEFAULT_STRENGTH = 10000.0
HEAD_KINDS = ("gaze", "random", "all")
DEFAULT_CONTROL_PERCENTILE = 5.0
PAPER_K = 100
PAPER_TOTAL_HEADS = 1152  # Qwen3-VL-8B: 36 layers x 32 heads
TOPK_DEFAULT = (5, 10, 20, 50, 100, 200)  # the K values of the top-K sweep


def default_k(total_heads: int) -> int:
    """The paper's share of heads, 100 of 1,152 (8.7%), rounded, at least 1: the default K everywhere."""
    if total_heads < 1:
        raise HeadSelectionError(f"A model with {total_heads} heads.", "Load a model with attention heads.")
    return max(1, round(total_heads * PAPER_K / PAPER_TOTAL_HEADS))


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise GazeheadsError(f"Unknown {name} {value!r}.", f"Use one of: {', '.join(choices)}.")


def _from_mapping(cls, data: Mapping[str, Any]):
    if not isinstance(data, Mapping):
        raise GazeheadsError(f"A {cls.__name__} must be read from a mapping, got {type(data).__name__}.",
                             f"Pass a dict with keys among {', '.join(f.name for f in fields(cls))}.")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise GazeheadsError(f"Unknown {cls.__name__} field(s): {', '.join(unknown)}.",
                             f"Use only {', '.join(sorted(known))}.")
    return cls(**dict(data))


@dataclass(frozen=True)
class SteerSpec:
    """How steering biases the chosen heads: bias mode, strength B, phase and numerics.

    The defaults are the published method's: boost_suppress, B = 10000, every query position,
    the published numerics.
    """

    mode: str = "boost_suppress"
    strength: float = DEFAULT_STRENGTH
    phase: str = "prefill+decode"
    numerics: str = "reference"

    def __post_init__(self) -> None:
        _check_choice("steering mode", self.mode, MODES)
        _check_choice("steering phase", self.phase, PHASES)
        _check_choice("numerics", self.numerics, NUMERICS)
        strength = self.strength
        if isinstance(strength, bool) or not isinstance(strength, (int, float)):
            raise GazeheadsError(f"Steering strength must be a number, got {strength!r}.",
                                 f"Use e.g. the paper's {DEFAULT_STRENGTH:g}.")
        if not (math.isfinite(strength) and strength > 0):
            raise GazeheadsError(f"Steering strength must be a positive finite number, got {strength}.",
                                 f"Use e.g. the paper's {DEFAULT_STRENGTH:g}.")
        object.__setattr__(self, "strength", float(strength))

    def replace(self, **changes: Any) -> "SteerSpec":
        """A copy with some fields changed (validated); None values keep the current field."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def prompt_unbiased(self) -> bool:
        """True when no prompt position but possibly the last gets a bias."""
        return self.phase != "prefill+decode"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SteerSpec":
        return _from_mapping(cls, data)

    def describe(self) -> str:
        return f"{self.mode}, B = {self.strength:g}, phase {self.phase}, {self.numerics} numerics"


DEMO_STEER = SteerSpec(phase="decode")
"""The browser demo's steering: decode only, like the published demo (the one place it differs)."""


@dataclass(frozen=True)
class HeadSpec:
    """Which heads to steer or track: the top-K gaze heads, K random non-gaze heads, or all heads.

    `k=None` means :func:`default_k` of the model's head count. Random control heads are drawn
    with `seed` from heads outside the top-K scoring at or below the `percentile`-th score
    percentile (widened, with a warning, when that pool holds fewer than K heads).
    """

    kind: str = "gaze"
    k: int | None = None
    seed: int = 0
    percentile: float = DEFAULT_CONTROL_PERCENTILE

    def __post_init__(self) -> None:
        _check_choice("head set", self.kind, HEAD_KINDS)
        if self.k is not None and (isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1):
            raise HeadSelectionError(f"K must be a whole number of heads >= 1, got {self.k!r}.",
                                     "Give K >= 1, or leave it unset for the default (8.7% of the heads).")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise GazeheadsError(f"The head seed must be an integer, got {self.seed!r}.", "Give e.g. seed=0.")
        p = self.percentile
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0 < p <= 100):
            raise HeadSelectionError(f"The control percentile must be in (0, 100], got {p!r}.",
                                     "Use e.g. 5 (the paper's) or 50 for models with few heads.")
        object.__setattr__(self, "percentile", float(p))

    def resolve_k(self, total_heads: int) -> int:
        """K for a model with `total_heads` heads (all heads for kind 'all'), checked."""
        if self.kind == "all":
            return total_heads
        k = default_k(total_heads) if self.k is None else self.k
        if k > total_heads:
            raise HeadSelectionError(f"K={k} heads asked of a model with {total_heads} heads.",
                                     f"Choose K between 1 and {total_heads}.")
        return k

    def with_k(self, k: int | None) -> "HeadSpec":
        return replace(self, k=k)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HeadSpec":
        return _from_mapping(cls, data)
