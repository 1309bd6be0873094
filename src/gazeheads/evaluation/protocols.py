"""The paper's evaluation protocols as data: question, generation length, segments."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from .. import prompts
from ..errors import GazeheadsError
from ..specs import TOPK_DEFAULT, SteerSpec  # noqa: F401  (TOPK_DEFAULT re-exported)


@dataclass(frozen=True)
class Protocol:
    """How one protocol asks, generates and steers.

    `segment_tokens` (dynamic narration) switches the target every that many tokens and
    judges each segment on its own; such a protocol generates one segment per panel, so
    its `max_new_tokens` is unused (see :meth:`new_tokens`). `steer` is the protocol's
    published steering: every query position for VQA and static narration, decode only
    (first generated token unsteered) for dynamic narration.
    """

    name: str
    question: str
    max_new_tokens: int
    segment_tokens: int | None = None
    steer: SteerSpec = SteerSpec()

    def with_overrides(self, question: str | None = None, max_new_tokens: int | None = None,
                       segment_tokens: int | None = None) -> "Protocol":
        return replace(
            self,
            question=question or self.question,
            max_new_tokens=max_new_tokens or self.max_new_tokens,
            segment_tokens=(segment_tokens or self.segment_tokens) if self.segment_tokens else None,
        )

    def new_tokens(self, n_panels: int) -> int:
        """Tokens to generate for a strip of `n_panels` panels."""
        return self.segment_tokens * n_panels if self.segment_tokens else self.max_new_tokens


PROTOCOLS: dict[str, Protocol] = {
    "vqa": Protocol("vqa", prompts.VQA_QUESTION, 15),
    "narration": Protocol("narration", prompts.NARRATION_QUESTION, 100),
    "dynamic": Protocol("dynamic", prompts.NARRATION_QUESTION, 0, segment_tokens=50, steer=SteerSpec(phase="decode")),
    "coco": Protocol("coco", prompts.SCENE_QUESTION, 15),
}
PROTOCOL_ORDER = ("narration", "vqa", "dynamic", "topk", "coco")


def protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise GazeheadsError(f"Unknown protocol {name!r}.", f"Use one of {', '.join(PROTOCOLS)} (or topk).")
    return PROTOCOLS[name]


def derangement(n: int, rng: random.Random) -> list[int]:
    """A permutation of panels 1..n with no panel in its own place (so never the reading order)."""
    if n < 2:
        raise GazeheadsError("Dynamic narration needs at least 2 panels.", "Use strips with 2 or more panels.")
    while True:
        order = list(range(1, n + 1))
        rng.shuffle(order)
        if all(panel != place for place, panel in enumerate(order, start=1)):
            return order


def size_class(area: float) -> str:
    """COCO size classes: small < 32^2 px, medium < 96^2, large otherwise."""
    if area < 32**2:
        return "small"
    if area < 96**2:
        return "medium"
    return "large"
