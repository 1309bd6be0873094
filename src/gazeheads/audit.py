"""An audit trail of steering: who redirected which heads of which model, towards what, how hard.

Each steering action appends one JSON line (time, client, model and its weights fingerprint,
heads, target, strength, mode, phase, numerics). The demo writes one by default; API users
opt in per call (`steer(..., audit_sink=AuditLog("audit.jsonl"))`) or for the whole process
(`set_audit_sink("audit.jsonl")`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    from .heads import HeadSet
    from .model import GazeModel
    from .specs import SteerSpec


class AuditSink(Protocol):
    """Anything that accepts one audit event (a JSON-serialisable dict)."""

    def write(self, event: dict[str, Any]) -> None: ...


class AuditLog:
    """Appends events to a JSON-lines file, one line per event, flushed and fsynced as written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, sort_keys=True) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def read(self) -> list[dict[str, Any]]:
        """Every event written so far."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


_process_sink: AuditSink | None = None


def set_audit_sink(sink: AuditSink | str | Path | None) -> AuditSink | None:
    """Log every steer() of this process to `sink` (a path becomes an AuditLog); None stops it."""
    global _process_sink
    _process_sink = AuditLog(sink) if isinstance(sink, (str, Path)) else sink
    return _process_sink


def describe_target(target: Any) -> Any:
    """A JSON-ready description of a steering target (Panel, Box, Schedule, cell mask, or a list)."""
    from .regions import Box, Panel, Schedule

    if isinstance(target, Panel):
        return {"panel": target.index}
    if isinstance(target, Box):
        return {"box": [target.x0, target.y0, target.x1, target.y1]}
    if isinstance(target, Schedule):
        return {"schedule": [[step, describe_target(region)] for step, region in target.entries]}
    if isinstance(target, (list, tuple)):
        return [describe_target(t) for t in target]
    shape = getattr(target, "shape", None)
    if shape is not None:  # a boolean cell mask
        return {"cells": int(target.sum()), "of": int(target.numel())}
    return repr(target)


def record_steering(sink: AuditSink | None, gm: "GazeModel", heads: "HeadSet", schedules: Sequence,
                    target: Any, spec: "SteerSpec", *, client: str = "api", event: str = "steer",
                    details: Mapping[str, Any] | None = None) -> None:
    """Write one steering event to `sink`, else to the process-wide sink, else nowhere.

    `event` names the action ("steer" when steering starts, "retarget" when a running
    steering moves); `details` adds fields (e.g. the step a retarget applies from)."""
    sink = sink if sink is not None else _process_sink
    if sink is None:
        return
    sink.write({
        **(details or {}),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "unix_time": time.time(),
        "event": event,
        "client": client,
        "model": gm.name,
        "fingerprint": gm.fingerprint(),
        "heads": [list(h) for h in heads],
        "head_set": heads.name,
        "target": describe_target(target),
        "strength": spec.strength,
        "mode": spec.mode,
        "phase": spec.phase,
        "numerics": spec.numerics,
    })
