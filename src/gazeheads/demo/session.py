"""Generations for the demo: one at a time per model, a bounded queue, live targets, cancel.

A :class:`LiveGeneration` runs `generate()` in its own thread with a tracker (per-token gaze-head
attention over the image: region tint and heat map) and, unless it is the baseline, a
`Steering` whose target the visitor moves while tokens stream (`Steering.retarget`). Events
go to the web request through a callback; a cancel flag, checked by a StoppingCriteria and
by the pacing delay, ends the generation as soon as the visitor stops or goes away. With an
audit sink, the start of steering and every live re-target append one line each, naming the
client; steering that cannot be audited does not happen.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from .. import audit
from ..data.strips import Strip
from ..errors import GazeheadsError
from ..heads import HeadSet
from ..model import Encoded, GazeModel
from ..specs import DEMO_STEER, SteerSpec
from ..regions import Box, ImageGeometry, Panel
from ..steering import steer
from ..tracking import track
from .targets import PALETTE, Circle, cell_rects, region_membership, steering_target, tint_regions

Event = dict
Emit = Callable[[Event], None]


class QueueFull(GazeheadsError):
    """Every generation slot and queue place is taken (HTTP 429)."""


@dataclass
class GenerationSettings:
    """What one generation does (already validated by the web layer)."""

    question: str
    heads: HeadSet
    steer: bool = True
    target: Circle | Box | Panel | None = None
    spec: SteerSpec = DEMO_STEER
    max_new_tokens: int = 24
    token_delay: float = 0.0  # seconds to wait after each token (so a person can follow and steer)
    audit_sink: audit.AuditSink | None = None  # where steering actions are logged (None: a process-wide sink, if any)
    client: str = "demo"  # who asked, for the audit log (remote address and page session)
    image_id: str = ""


class AuditFailed(GazeheadsError):
    """The audit log could not be written, so the steering action was refused (HTTP 503)."""


def describe_target(target: Circle | Box | Panel | None) -> dict:
    """The target as the visitor set it, for the audit log."""
    if isinstance(target, Circle):
        return {"circle": [round(target.x, 2), round(target.y, 2), round(target.r, 2)]}
    described = audit.describe_target(target)
    return described if isinstance(described, dict) else {"target": described}


class _DemoAuditSink:
    """Adds the demo's view of a steering event (the circle/box/panel, image, generation) to each line."""

    def __init__(self, sink: audit.AuditSink, generation: "LiveGeneration", target) -> None:
        self.sink, self.generation, self.target = sink, generation, target

    def write(self, event: dict) -> None:
        cells = event.get("target")
        shown = describe_target(self.target)
        if isinstance(cells, dict):
            shown = {**shown, **cells}
        try:
            self.sink.write({**event, "target": shown, "image": self.generation.settings.image_id,
                             "generation": self.generation.id})
        except OSError as exc:
            raise AuditFailed(f"The audit log could not be written ({exc}), so steering was refused.",
                              "Fix the audit log's path (gazeheads demo --audit-log PATH) or its disk.") from None


class _Cancelled(StoppingCriteria):
    """Stops every row once the cancel flag is set."""

    def __init__(self, flag: threading.Event) -> None:
        self.flag = flag

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool, device=input_ids.device)


class _TokenSink(BaseStreamer):
    """generate()'s streamer: the first put is the prompt, then one token per step."""

    def __init__(self, on_token: Callable[[int, int], None]) -> None:
        self.on_token = on_token
        self.prompt_seen = False
        self.step = 0

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        token = int(value.reshape(-1)[0])
        self.on_token(self.step, token)
        self.step += 1

    def end(self) -> None:
        pass


def describe_geometry(geometry: ImageGeometry) -> dict:
    """What the page needs to draw heat maps and tints: token cells and coloured regions."""
    regions, _ = region_membership(geometry, tint_regions(geometry))
    out_regions = []
    for i, (name, region) in enumerate(regions):
        if isinstance(region, Panel):
            x0, x1 = geometry.panel_span(region)
            box = [x0, 0.0, x1, float(geometry.image_size[1])]
        else:
            box = [region.x0, region.y0, region.x1, region.y1]
        out_regions.append({"name": name, "box": [round(float(v), 2) for v in box], "colour": PALETTE[i % len(PALETTE)]})
    width, height = geometry.image_size
    return {"width": width, "height": height, "rows": geometry.rows, "cols": geometry.cols,
            "cells": cell_rects(geometry), "regions": out_regions,
            "panels": len(geometry.panel_boxes) if geometry.panel_boxes else 0}


class LiveGeneration:
    """One streamed generation: its thread, its live target, and its cancel flag."""

    def __init__(self, gm: GazeModel, image: Strip, settings: GenerationSettings, emit: Emit) -> None:
        self.id = secrets.token_hex(8)
        self.gm = gm
        self.image = image
        self.settings = settings
        self.emit = emit
        self.cancel = threading.Event()
        self.finished = threading.Event()
        self.reason: str | None = None  # eos, length, cancelled or error
        self.steps = 0
        self.text = ""
        self._lock = threading.Lock()
        self._target = settings.target
        self._target_seq = 0
        self._switches: list[tuple[int, int]] = [(0, 0)]  # (from_step, target seq)
        self._steering = None
        self._geometry: ImageGeometry | None = None
        self.created = time.monotonic()

    # called from the web layer ------------------------------------------------------------

    def retarget(self, target: Circle | Box | Panel) -> dict:
        """Move the target for the next tokens; returns the step it applies from and its sequence number."""
        if not self.settings.steer:
            raise GazeheadsError("This generation runs without steering.", "Start a steered generation.")
        with self._lock:
            steered = target
            if self._geometry is not None:  # a RegionError for a bad target, before any change
                steered = steering_target(self._geometry, target)
            self._target = target
            self._target_seq += 1
            seq = self._target_seq
            start = 0  # not started yet: the start uses the latest target
            if self._steering is not None:
                start = self._steering.retarget(0, steered)
                self._switches.append((start, seq))
        try:
            self._log(target, "retarget", {"from_step": start, "seq": seq}, steered)
        except AuditFailed:
            self.cancel.set()  # steering that cannot be audited stops
            raise
        return {"from_step": start, "seq": seq}

    def _sink(self, target) -> "_DemoAuditSink | None":
        """The demo's audit sink for an action on `target`; None leaves it to a process-wide sink, if any."""
        sink = self.settings.audit_sink
        return _DemoAuditSink(sink, self, target) if sink is not None else None

    def _log(self, target, event: str, details: dict, steered) -> None:
        s = self.settings
        audit.record_steering(self._sink(target), self.gm, s.heads, [], steered, s.spec,
                              client=s.client, event=event, details=details)

    def target_seq_at(self, step: int) -> int:
        with self._lock:
            seq = 0
            for start, s in self._switches:
                if start <= step:
                    seq = s
            return seq

    # the generation thread ----------------------------------------------------------------

    def run(self) -> None:
        """Encode, steer, track and generate, emitting events; never raises."""
        try:
            self._run()
        except GazeheadsError as exc:
            self.reason = "error"
            self.emit({"type": "error", "message": exc.problem, "fix": exc.fix})
        except Exception as exc:  # noqa: BLE001 - report, do not kill the server
            self.reason = "error"
            self.emit({"type": "error", "message": f"{type(exc).__name__}: {exc}"})
        finally:
            self.finished.set()

    def _run(self) -> None:
        gm, s = self.gm, self.settings
        if self.cancel.is_set():
            self.reason = "cancelled"
            return
        encoded: Encoded = gm.encode(self.image, s.question)
        geometry = encoded.geometries[0]
        regions, membership = region_membership(geometry, tint_regions(geometry))
        tokenizer = gm.tokenizer
        ids: list[int] = []
        previous = ""

        def on_token(step: int, token: int) -> None:
            nonlocal previous
            ids.append(token)
            full = tokenizer.decode(ids, skip_special_tokens=True)
            if full.startswith(previous):
                piece = full[len(previous):]
            else:  # decoding merged across the boundary (e.g. spaces before punctuation)
                piece = tokenizer.decode([token], skip_special_tokens=True)
                piece = (" " if previous and piece and not piece.startswith(" ") else "") + piece
            previous = full
            heat = tracker.image_attention(step)[0] if step in tracker.steps() else np.zeros(membership.shape[1])
            shares = membership.numpy() @ heat if len(regions) else np.zeros(0)
            total = float(shares.sum())
            peak = float(heat.max()) if heat.size else 0.0
            self.steps = step + 1
            self.text = full
            self.emit({
                "type": "token", "step": step, "id": token, "text": piece, "full": full,
                "special": token in tokenizer.all_special_ids,
                "focus": int(shares.argmax()) if total > 0 else None,
                "shares": [round(float(v) / total, 4) if total > 0 else 0.0 for v in shares],
                "image_share": round(float(heat.sum()), 4),
                "heat": [round(float(v) / peak, 3) if peak > 0 else 0.0 for v in heat],
                "target_seq": self.target_seq_at(step),
            })
            if s.token_delay > 0:
                self.cancel.wait(s.token_delay)

        with contextlib.ExitStack() as stack:
            with self._lock:
                self._geometry = geometry
                if s.steer:
                    if self._target is None:
                        raise GazeheadsError("A steered generation needs a target.", "Point at the image first.")
                    target = steering_target(geometry, self._target)
                    self._steering = stack.enter_context(steer(gm, s.heads, target, encoded, s.spec,
                                                               audit_sink=self._sink(self._target), client=s.client))
                    self._switches = [(0, self._target_seq)]
            tracker = stack.enter_context(track(gm, s.heads, encoded, keep_image_attention=True))
            self.emit({"type": "start", "generation_id": self.id, "steer": s.steer, "k": len(s.heads),
                       "phase": s.spec.phase, "question": s.question, "prompt_tokens": encoded.prompt_len,
                       "image_tokens": int(geometry.positions.numel()),
                       "regions": [name for name, _ in regions]})
            out = gm.generate_ids(encoded, s.max_new_tokens, streamer=_TokenSink(on_token),
                                  stopping_criteria=StoppingCriteriaList([_Cancelled(self.cancel)]))
        n_new = out.shape[1]
        eos = set(tokenizer.all_special_ids)
        if self.cancel.is_set():
            self.reason = "cancelled"
        elif n_new < s.max_new_tokens or (n_new and int(out[0, -1]) in eos):
            self.reason = "eos"
        else:
            self.reason = "length"
        self.emit({"type": "done", "reason": self.reason, "steps": self.steps, "text": self.text})


@dataclass
class Record:
    id: str
    reason: str | None
    steps: int
    steer: bool


class GenerationQueue:
    """One generation at a time on the model; at most `queue_size` more wait (else QueueFull)."""

    def __init__(self, queue_size: int = 2) -> None:
        self.queue_size = queue_size
        self._admit = threading.Lock()
        self._model = threading.Lock()
        self._pending: list[LiveGeneration] = []  # running first, then waiting, in order
        self.live: dict[str, LiveGeneration] = {}
        self.history: deque[Record] = deque(maxlen=32)
        self.running: LiveGeneration | None = None

    def submit(self, generation: LiveGeneration) -> int:
        """Admit a generation and start its thread; returns how many run or wait before it."""
        with self._admit:
            if len(self._pending) >= 1 + self.queue_size:
                raise QueueFull(f"{len(self._pending)} generations are running or waiting; the queue holds "
                                f"{self.queue_size}.", "Wait for the current generation to finish and try again.")
            ahead = len(self._pending)
            self._pending.append(generation)
            self.live[generation.id] = generation
        threading.Thread(target=self._work, args=(generation,), name=f"gazeheads-demo-{generation.id}",
                         daemon=True).start()
        return ahead

    def _work(self, generation: LiveGeneration) -> None:
        try:
            while not self._model.acquire(timeout=0.05):
                if generation.cancel.is_set():
                    generation.reason = "cancelled"
                    generation.finished.set()
                    return
            try:
                self.running = generation
                generation.run()
            finally:
                self.running = None
                self._model.release()
        finally:
            with self._admit:
                self._pending.remove(generation)
                self.live.pop(generation.id, None)
                self.history.append(Record(generation.id, generation.reason, generation.steps,
                                           generation.settings.steer))
            generation.emit({"type": "end"})

    def status(self) -> dict:
        with self._admit:
            running = self.running
            return {
                "running": running.id if running is not None else None,
                "waiting": max(0, len(self._pending) - (1 if running is not None else 0)),
                "queue_size": self.queue_size,
                "recent": [r.__dict__ for r in list(self.history)[-8:]],
            }

    def cancel_all(self) -> None:
        with self._admit:
            for generation in self._pending:
                generation.cancel.set()
