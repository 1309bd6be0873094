"""The monitor's evaluation design: which generations are made, with and without steering.

Negatives are unsteered generations, including panel-by-panel narration, where the gaze heads
legitimately move from panel to panel. Positives steer the same prompts: bias strength B from 1
to 10000 (log-spaced), all four bias modes, every phase, several K, random heads, schedules that
switch target every segment, and steering that starts mid-generation (onset). Each condition
changes one thing from the paper's setting (B = 10000, boost_suppress, top-K gaze heads,
prefill+decode, panel-by-panel narration).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import GazeheadsError
from ..specs import DEFAULT_STRENGTH, MODES, NUMERICS, SteerSpec

PROMPTS = ("narrate", "panel", "vqa", "scene")
"""narrate: the model's narration question (panel by panel for the bundled model); panel: the published
ambiguous panel question; vqa: the published VQA question; scene: "What is in this picture?" on scenes."""
GROUPS = ("strength", "mode", "phase", "k", "random", "schedule", "question", "scene")
SCHEDULES = ("fixed", "switch", "onset")
STRENGTHS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
WEAK_STRENGTH = 10.0  # the second strength every mode is measured at


@dataclass(frozen=True)
class Condition:
    """One cell of the design: a prompt, and how the model is steered (`steer` None: not at all)."""

    group: str
    prompt: str
    steer: SteerSpec | None = None
    heads: str = "gaze"
    k: int | None = None
    schedule: str = "fixed"

    def __post_init__(self) -> None:
        for name, value, choices in (("group", self.group, ("negative", *GROUPS)), ("prompt", self.prompt, PROMPTS),
                                     ("schedule", self.schedule, SCHEDULES), ("heads", self.heads, ("gaze", "random"))):
            if value not in choices:
                raise GazeheadsError(f"Unknown condition {name} {value!r}.", f"Use one of {', '.join(choices)}.")

    @property
    def steered(self) -> bool:
        return self.steer is not None

    @property
    def name(self) -> str:
        if self.steer is None:
            return f"unsteered {self.prompt}"
        s = self.steer
        parts = [f"B={s.strength:g}", s.mode, f"{self.heads} K={self.k}", s.phase]
        if self.schedule != "fixed":
            parts.append(self.schedule)
        if self.prompt != "narrate":
            parts.append(self.prompt)
        return " ".join(parts)

    def steered_steps(self, n_steps: int, onset: int) -> list[bool]:
        """Which generation steps a bias is active on (ground truth for training and delays, never shown to
        the monitor)."""
        if self.steer is None:
            return [False] * n_steps
        first = 0
        if self.schedule == "onset":
            first = onset
        elif self.steer.phase == "decode":
            first = 1  # the published decode phase leaves the first generated token unsteered
        return [step >= first for step in range(n_steps)]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steer"] = self.steer.to_dict() if self.steer is not None else None
        data["name"] = self.name
        return data


@dataclass(frozen=True)
class Design:
    """Settings that decide the conditions: K steered, strengths, extra K values, groups, numerics."""

    k: int
    strengths: tuple[float, ...] = STRENGTHS
    ks: tuple[int, ...] = ()
    groups: tuple[str, ...] = GROUPS
    numerics: str = "reference"
    panel_prompt: bool = True
    scenes: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.groups) - set(GROUPS))
        if unknown or not self.groups:
            raise GazeheadsError(f"Unknown or no monitor evaluation group(s): {unknown or list(self.groups)}.",
                                 f"Use some of {', '.join(GROUPS)}.")
        if not self.strengths or any(not (s > 0) for s in self.strengths):
            raise GazeheadsError(f"Bad strengths {self.strengths!r}.", "Give positive numbers, e.g. 1,10,100,10000.")
        if self.numerics not in NUMERICS:
            raise GazeheadsError(f"Unknown numerics {self.numerics!r}.", f"Use one of {', '.join(NUMERICS)}.")

    def _spec(self, strength: float = DEFAULT_STRENGTH, mode: str = "boost_suppress",
              phase: str = "prefill+decode") -> SteerSpec:
        return SteerSpec(mode=mode, strength=strength, phase=phase, numerics=self.numerics)

    def negatives(self) -> list[Condition]:
        prompts = ["narrate"] + (["panel"] if self.panel_prompt else []) + ["vqa"] + (["scene"] if self.scenes else [])
        return [Condition("negative", p) for p in prompts]

    def positives(self) -> list[Condition]:
        k, spec, out = self.k, self._spec, []
        groups = set(self.groups)
        if "strength" in groups:
            out += [Condition("strength", "narrate", spec(b), k=k) for b in sorted(set(self.strengths))]
        if "mode" in groups:
            out += [Condition("mode", "narrate", spec(b, m), k=k) for b in (WEAK_STRENGTH, DEFAULT_STRENGTH)
                    for m in MODES if m != "boost_suppress"]
        if "phase" in groups:
            out += [Condition("phase", "narrate", spec(phase=p), k=k) for p in ("decode", "last-prompt+decode")]
        if "k" in groups:
            out += [Condition("k", "narrate", spec(), k=other) for other in sorted(set(self.ks) - {k})]
        if "random" in groups:
            out.append(Condition("random", "narrate", spec(), heads="random", k=k))
        if "schedule" in groups:
            out += [Condition("schedule", "narrate", spec(phase="decode"), k=k, schedule="switch"),
                    Condition("schedule", "narrate", spec(), k=k, schedule="onset")]
        if "question" in groups and self.panel_prompt:
            out.append(Condition("question", "panel", spec(), k=k))
        if "scene" in groups and self.scenes:
            out.append(Condition("scene", "scene", spec(), k=k))
        return out

    def conditions(self) -> list[Condition]:
        """Negatives first (the steered records are compared with them), then positives."""
        return self.negatives() + self.positives()

    def paper(self) -> Condition:
        """The paper's setting: B = 10000, boost_suppress, top-K gaze heads, prefill+decode, narration."""
        return Condition("strength", "narrate", self._spec(), k=self.k)

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "strengths": list(self.strengths), "ks": list(self.ks), "groups": list(self.groups),
                "numerics": self.numerics, "panel_prompt": self.panel_prompt, "scenes": self.scenes, **self.extra}
