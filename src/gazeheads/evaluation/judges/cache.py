"""Durable JSONL files of a judge's run folder: verdicts by key, and the vendor batches sent."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

VERDICTS_FILE = "verdicts.jsonl"
BATCHES_FILE = "judge-batches.jsonl"


def _read_jsonl(path: Path | None) -> Iterator[dict]:
    """The JSON objects of a file, skipping a torn line (a killed run) or anything not an object."""
    if path is None or not path.exists():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            yield entry


def _append_jsonl(path: Path, entry: dict) -> None:
    """Append one line and flush it to disk before returning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


class VerdictCache:
    """LLM verdicts by key, in memory and (given a path) appended to a JSONL file.

    Every entry is on disk before `put` returns and a torn last line is ignored, so a killed
    run, a resumed run or a re-judged run never pays twice for the same answer.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.entries: dict[str, dict] = {e["key"]: e for e in _read_jsonl(self.path) if "key" in e}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, entry: dict) -> None:
        entry = {"key": key, **entry}
        self.entries[key] = entry
        if self.path is not None:
            _append_jsonl(self.path, entry)


@dataclass
class BatchRecord:
    """One vendor batch as the ledger knows it: which verdict keys it carries and whether it is done."""

    batch_id: str
    judge: str
    endpoint: str
    keys: list[str]
    state: str = "open"  # until read; then "collected", "failed" (refused by the vendor) or "lost" (unknown to it)


class BatchLedger:
    """Which vendor batches a run has submitted: the file that lets an interrupted run resume them.

    A batch is written here the moment the vendor accepts it, and marked collected once its
    results are in the verdict cache. An open batch is waited for and read again by the
    next run, instead of being paid for twice.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.batches: dict[str, BatchRecord] = {}
        for entry in _read_jsonl(self.path):
            batch_id = entry.get("batch_id")
            if entry.get("event") == "submitted" and batch_id:
                self.batches[batch_id] = BatchRecord(batch_id, str(entry.get("judge", "")),
                                                     str(entry.get("endpoint", "")), list(entry.get("keys", [])))
            elif batch_id in self.batches and entry.get("event") in ("collected", "lost", "failed"):
                self.batches[batch_id].state = entry["event"]

    def open_batches(self, judge: str, endpoint: str) -> list[BatchRecord]:
        """Batches of this judge and endpoint whose results were never read, oldest first."""
        return [b for b in self.batches.values() if b.state == "open" and b.judge == judge and b.endpoint == endpoint]

    def submitted(self, batch_id: str, judge: str, endpoint: str, keys: list[str]) -> None:
        self.batches[batch_id] = BatchRecord(batch_id, judge, endpoint, list(keys))
        self._write({"event": "submitted", "batch_id": batch_id, "judge": judge, "endpoint": endpoint,
                     "keys": list(keys)})

    def finished(self, batch_id: str, state: str = "collected") -> None:
        if batch_id in self.batches:
            self.batches[batch_id].state = state
        self._write({"event": state, "batch_id": batch_id})

    def _write(self, entry: dict) -> None:
        if self.path is not None:
            _append_jsonl(self.path, {**entry, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
