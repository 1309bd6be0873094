"""Steering: bias chosen heads' attention towards a target region of the image.

    with steer(gm, ranking.top(100), Panel(3), encoded):
        text = gm.generate(encoded, max_new_tokens=40)

For the heads in the set, `+strength` is added to the pre-softmax logits of the target's
image tokens and `-strength` to the other image tokens (mode "boost_suppress", the
paper's recipe). Text positions are untouched unless the mode says otherwise.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

from . import hook
from .errors import GazeheadsError
from .heads import HeadSet
from .model import Encoded, GazeModel
from .regions import Box, Panel, Schedule, Target

MODES = ("boost_suppress", "suppress_image", "suppress_all", "max_suppress_all")
PHASES = ("prefill+decode", "decode")
DEFAULT_STRENGTH = 10000.0


def _as_schedule(target: Target) -> Schedule:
    if isinstance(target, Schedule):
        return target
    if isinstance(target, (Panel, Box)):
        return Schedule([(0, target)])
    raise GazeheadsError(f"Not a steering target: {target!r}", "Use Panel(k), Box(x0, y0, x1, y1) or a Schedule.")


class Steering:
    """The bias source one `steer(...)` block adds to the attention plan.

    Row b of the batch follows its own schedule; the step of a forward call is the index of
    the token its last query row generates (0 for the prompt's last position).
    """

    def __init__(
        self,
        heads: HeadSet,
        encoded: Encoded,
        targets: Target | Sequence[Target],
        *,
        mode: str = "boost_suppress",
        strength: float = DEFAULT_STRENGTH,
        phase: str = "prefill+decode",
    ) -> None:
        if mode not in MODES:
            raise GazeheadsError(f"Unknown steering mode {mode!r}.", f"Use one of {', '.join(MODES)}.")
        if phase not in PHASES:
            raise GazeheadsError(f"Unknown steering phase {phase!r}.", f"Use one of {', '.join(PHASES)}.")
        if isinstance(targets, (Panel, Box, Schedule)):
            targets = [targets] * encoded.batch_size
        targets = list(targets)
        if len(targets) != encoded.batch_size:
            raise GazeheadsError(
                f"{len(targets)} targets for a batch of {encoded.batch_size} prompts.",
                "Give one target for all rows or exactly one per row.",
            )
        self.heads = heads
        self.mode, self.strength, self.phase = mode, float(strength), phase
        self.prompt_len = encoded.prompt_len
        self.image = encoded.image_mask()
        self.prompt_text = encoded.inputs["attention_mask"].bool().cpu() & ~self.image
        self.schedules = [_as_schedule(t) for t in targets]
        # Per row: switch steps and the target's prompt-position mask for each segment.
        self._segments: list[list[tuple[int, torch.Tensor]]] = []
        for row, schedule in enumerate(self.schedules):
            geometry = encoded.geometries[row]
            segments = []
            for step, region in schedule.entries:
                mask = torch.zeros(self.prompt_len, dtype=torch.bool)
                mask[geometry.positions_of(region).cpu()] = True
                segments.append((step, mask))
            self._segments.append(segments)
        self._head_masks = heads.head_masks()
        self._cached: tuple[tuple[int, int, str], torch.Tensor | None] | None = None

    def target_mask(self, step: int) -> torch.Tensor:
        """Boolean (batch, prompt_len): each row's target positions at generation step `step`."""
        rows = []
        for segments in self._segments:
            active = segments[0][1]
            for start, mask in segments:
                if start <= step:
                    active = mask
            rows.append(active)
        return torch.stack(rows)

    # BiasSource protocol -----------------------------------------------------------------

    def head_mask(self, layer: int) -> torch.Tensor | None:
        return self._head_masks.get(layer)

    def row_bias(self, q_len: int, k_len: int, device: torch.device) -> torch.Tensor | None:
        key = (q_len, k_len, str(device))
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self._build(q_len, k_len, device))
        return self._cached[1]

    def _build(self, q_len: int, k_len: int, device: torch.device) -> torch.Tensor | None:
        step = k_len - self.prompt_len
        if step < 0 or (q_len > 1 and step != 0):
            raise GazeheadsError(
                f"steer() was set up for prompts of {self.prompt_len} tokens, but the model ran "
                f"{q_len} new tokens over {k_len} keys.",
                "Generate from the same Encoded batch that was passed to steer().",
            )
        batch = self.image.shape[0]
        extend = k_len - self.prompt_len

        def widen(mask: torch.Tensor, fill: bool = False) -> torch.Tensor:
            return torch.cat([mask, torch.full((batch, extend), fill)], dim=1)

        target = widen(self.target_mask(step))
        image = widen(self.image)
        strength = self.strength
        bias = torch.zeros(batch, k_len)
        if self.mode == "boost_suppress":
            bias[image & target] = strength
        suppressed = image & ~target
        if self.mode in ("suppress_all", "max_suppress_all"):
            suppressed |= widen(self.prompt_text) & ~target
        if self.mode == "max_suppress_all":
            suppressed |= widen(torch.zeros_like(self.image), fill=True) & ~target
        bias[suppressed] = -strength
        if self.phase == "decode" and q_len > 1:
            rows = torch.zeros(batch, q_len, k_len)
            rows[:, -1] = bias
            return rows.to(device)
        return bias[:, None, :].to(device)


@contextlib.contextmanager
def steer(
    gm: GazeModel,
    heads: HeadSet,
    target: Target | Sequence[Target],
    encoded: Encoded,
    *,
    mode: str = "boost_suppress",
    strength: float = DEFAULT_STRENGTH,
    phase: str = "prefill+decode",
) -> Iterator[Steering]:
    """Steer `heads` of `gm` towards `target` (one for all rows, or one per row) while inside.

    `phase="prefill+decode"` biases every query (the VQA default); `"decode"` only the queries
    that produce new tokens (the prompt's last position and each decode step).
    """
    heads.check_shape(gm.shape)
    steering = Steering(heads, encoded, target, mode=mode, strength=strength, phase=phase)
    with hook.attach_plan(gm.attention_modules()) as plan:
        plan.biases.append(steering)
        try:
            yield steering
        finally:
            plan.biases.remove(steering)
