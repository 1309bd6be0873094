"""Steering: bias chosen heads' attention towards a target region of the image.

    with steer(gm, ranking.top(100), Panel(3), encoded):
        text = gm.generate(encoded, max_new_tokens=40)
    with steer(gm, heads, Panel(3), encoded, SteerSpec(phase="decode")): ...   # or phase="decode" as a keyword

For the heads in the set, `+strength` is added to the pre-softmax logits of the target's
image tokens and `-strength` to the other image tokens (mode "boost_suppress", the
paper's recipe). Text positions are untouched unless the mode says otherwise. How and when
the bias applies is a :class:`~gazeheads.specs.SteerSpec` (mode, strength, phase, numerics).

Live re-steering: `steerer.retarget(row, region)` from another thread moves the target for
the tokens not generated yet (the browser demo follows the cursor this way).
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Iterator, Sequence

import torch

from . import audit, hook
from .errors import GazeheadsError
from .heads import HeadSet
from .model import Encoded, GazeModel
from .regions import Box, ImageGeometry, Panel, Region, Schedule, Target
from .specs import SteerSpec


def _as_schedule(target: Target) -> Schedule:
    if isinstance(target, Schedule):
        return target
    if isinstance(target, (Panel, Box)):
        return Schedule([(0, target)])
    raise GazeheadsError(f"Not a steering target: {target!r}", "Use Panel(k), Box(x0, y0, x1, y1) or a Schedule.")


Cells = torch.Tensor
"""A boolean mask over one image's tokens, in `ImageGeometry.positions` order (e.g. a spotlight's cells)."""


def _region_mask(geometry: ImageGeometry, region: Region | Sequence[Region] | Cells, prompt_len: int) -> torch.Tensor:
    """Boolean (prompt_len,): the prompt positions of a region, of the union of several, or of a cell mask."""
    mask = torch.zeros(prompt_len, dtype=torch.bool)
    if isinstance(region, torch.Tensor):
        cells = region.bool().flatten().cpu()
        if cells.numel() != geometry.positions.numel() or not bool(cells.any()):
            raise GazeheadsError(
                f"A cell mask of {cells.numel()} entries ({int(cells.sum())} set) for an image of "
                f"{geometry.positions.numel()} tokens.",
                "Give one boolean per image token (ImageGeometry.positions order) with at least one set.",
            )
        mask[geometry.positions.cpu()[cells]] = True
        return mask
    regions = [region] if isinstance(region, (Panel, Box)) else list(region)
    if not regions or not all(isinstance(r, (Panel, Box)) for r in regions):
        raise GazeheadsError(f"Not a steering region: {region!r}",
                             "Use Panel(k), Box(x0, y0, x1, y1), a list of them, or a boolean cell mask.")
    for r in regions:
        mask[geometry.positions_of(r).cpu()] = True
    return mask


class Steerer:
    """The bias source one `steer(...)` block adds to the attention plan.

    Row b of the batch follows its own schedule; the step of a forward call is the index of
    the token its last query row generates (0 for the prompt's last position).
    :meth:`retarget` changes a row's target for the tokens not generated yet, from any
    thread, while `generate()` runs (live re-steering).
    """

    def __init__(self, heads: HeadSet, encoded: Encoded, targets: Target | Sequence[Target],
                 spec: SteerSpec | None = None) -> None:
        spec = spec or SteerSpec()
        if not isinstance(spec, SteerSpec):
            raise GazeheadsError(f"Not a SteerSpec: {spec!r}.", "Pass gazeheads.SteerSpec(...) or keyword options.")
        if isinstance(targets, (Panel, Box, Schedule, torch.Tensor)):
            targets = [targets] * encoded.batch_size
        elif isinstance(targets, (str, bytes, int, float)) or targets is None:
            raise GazeheadsError(f"Not a steering target: {targets!r}",
                                 "Use Panel(k), Box(x0, y0, x1, y1), a Schedule, or one of them per batch row.")
        targets = list(targets)
        if len(targets) != encoded.batch_size:
            raise GazeheadsError(
                f"{len(targets)} targets for a batch of {encoded.batch_size} prompts.",
                "Give one target for all rows or exactly one per row.",
            )
        self.heads = heads
        self.spec = spec
        self.prompt_len = encoded.prompt_len
        self.image = encoded.image_mask()
        self.prompt_text = encoded.inputs["attention_mask"].bool().cpu() & ~self.image
        # A cell mask (one boolean per image token) is a fixed target with no Schedule form.
        self.schedules = [None if isinstance(t, torch.Tensor) else _as_schedule(t) for t in targets]
        self._geometries = list(encoded.geometries)
        # Per row: switch steps and the target's prompt-position mask for each segment.
        self._segments: list[list[tuple[int, torch.Tensor]]] = [
            [(step, _region_mask(self._geometries[row], region, self.prompt_len))
             for step, region in (schedule.entries if schedule is not None else [(0, targets[row])])]
            for row, schedule in enumerate(self.schedules)
        ]
        self._head_index: dict[tuple[int, str], torch.Tensor] = {}
        self._heads_by_layer = heads.head_indices()
        self._cached: tuple[tuple[int, int, str], torch.Tensor | None] | None = None
        self._lock = threading.Lock()  # guards _segments, _cached and _last_step across threads
        self._last_step = -1  # the latest step whose bias was built (the step in progress or done)

    @property
    def numerics(self) -> str:
        return self.spec.numerics

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def strength(self) -> float:
        return self.spec.strength

    @property
    def phase(self) -> str:
        return self.spec.phase

    def target_mask(self, step: int) -> torch.Tensor:
        """Boolean (batch, prompt_len): each row's target positions at generation step `step`."""
        with self._lock:
            return self._target_mask(step)

    def _target_mask(self, step: int) -> torch.Tensor:
        rows = []
        for segments in self._segments:
            active = segments[0][1]
            for start, mask in segments:
                if start <= step:
                    active = mask
            rows.append(active)
        return torch.stack(rows)

    @property
    def last_step(self) -> int:
        """The latest generation step whose bias was built (-1 before the first forward)."""
        return self._last_step

    def retarget(self, row: int, region: Region | Sequence[Region] | Cells, from_step: int | None = None) -> int:
        """Steer batch row `row` towards `region` from `from_step` on.

        `region` is a Panel or Box, a list of them (their union), or a boolean cell mask over
        the row's image tokens (`ImageGeometry.positions` order).

        Thread-safe: call it while `generate()` runs in another thread. A step whose bias is
        already built (the forward in progress, or done) keeps its target, so the change
        applies from `max(from_step, last_step + 1)`; `from_step=None` means the next token.
        Later schedule entries of the row are dropped. Returns the step the change applies from.
        """
        if not 0 <= row < len(self._segments):
            raise GazeheadsError(f"Row {row} is not in a batch of {len(self._segments)}.",
                                 f"Give a row from 0 to {len(self._segments) - 1}.")
        mask = _region_mask(self._geometries[row], region, self.prompt_len)
        with self._lock:
            earliest = self._last_step + 1
            start = earliest if from_step is None else max(int(from_step), earliest)
            kept = [(s, m) for s, m in self._segments[row] if s < start]
            self._segments[row] = kept + [(start, mask)]
            return start

    @property
    def prompt_unbiased(self) -> bool:
        """True when no prompt position but possibly the last gets a bias (the decode phases)."""
        return self.spec.prompt_unbiased

    # BiasSource protocol -----------------------------------------------------------------

    def head_index(self, layer: int, device: torch.device) -> torch.Tensor | None:
        """The steered query heads of `layer`, prepared once per device (no host sync per forward)."""
        heads = self._heads_by_layer.get(layer)
        if heads is None:
            return None
        key = (layer, str(device))
        ready = self._head_index.get(key)
        if ready is None:
            ready = self._head_index[key] = heads.to(device)
        return ready

    def row_bias(self, q_len: int, k_len: int, device: torch.device) -> torch.Tensor | None:
        key = (q_len, k_len, str(device))
        with self._lock:
            if self._cached is None or self._cached[0] != key:
                self._cached = (key, self._build(q_len, k_len, device))
                self._last_step = max(self._last_step, k_len - self.prompt_len)
            return self._cached[1]

    def _build(self, q_len: int, k_len: int, device: torch.device) -> torch.Tensor | None:
        step = k_len - self.prompt_len
        if step < 0 or (q_len > 1 and step != 0):
            raise GazeheadsError(
                f"steer() was set up for prompts of {self.prompt_len} tokens, but the model ran "
                f"{q_len} new tokens over {k_len} keys.",
                "Generate from the same Encoded batch that was passed to steer().",
            )
        if step == 0 and self.phase == "decode":
            return None  # the published decode-only rule: the first generated token is unsteered
        batch = self.image.shape[0]
        extend = k_len - self.prompt_len

        def widen(mask: torch.Tensor, fill: bool = False) -> torch.Tensor:
            return torch.cat([mask, torch.full((batch, extend), fill)], dim=1)

        target = widen(self._target_mask(step))
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
        if self.phase == "last-prompt+decode" and q_len > 1:
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
    spec: SteerSpec | None = None,
    *,
    audit_sink: audit.AuditSink | None = None,
    client: str = "api",
    **options,
) -> Iterator[Steerer]:
    """Steer `heads` of `gm` towards `target` (one for all rows, or one per row) while inside.

    A target is a Panel, a Box, a Schedule, or a boolean cell mask over the image tokens.
    `spec` (a :class:`SteerSpec`) says how; keyword `options` (mode, strength, phase, numerics)
    change fields of it. The yielded :class:`Steerer` can `retarget(...)` rows while generation
    runs. Only one steer() block may be active on a model at a time. With `audit_sink` (or a
    process-wide sink from :func:`gazeheads.audit.set_audit_sink`) the action is logged.
    """
    try:
        spec = (spec or SteerSpec()).replace(**options)
    except TypeError as exc:
        raise GazeheadsError(f"Unknown steering option: {exc}.", "Use mode, strength, phase or numerics.") from None
    if not isinstance(heads, HeadSet):
        raise GazeheadsError(f"Not a head set: {heads!r}.", "Pass ranking.top(k), ranking.select(HeadSpec(...)) or a HeadSet.")
    if not isinstance(encoded, Encoded):
        raise GazeheadsError(f"Not an encoded prompt: {type(encoded).__name__}.", "Pass the result of gm.encode(...).")
    heads.check_compatible(gm.shape)
    steerer = Steerer(heads, encoded, target, spec)
    audit.record_steering(audit_sink, gm, heads, steerer.schedules, target, spec, client=client)
    with hook.requesting(gm.attention_modules(), bias=steerer):
        yield steerer
