"""Append-only JSONL of generations: every record is on disk (flushed and synced) as soon
as it exists, and a rerun skips the keys already there."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator


class JsonlStore:
    """Records keyed by `record["key"]`; a torn last line (killed mid-write) is ignored."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: dict[str, dict] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        good = 0
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            self.records[record["key"]] = record
            good += len(line)
        if good < len(raw):  # drop the torn tail so appends start on a clean line
            with open(self.path, "r+b") as handle:
                handle.truncate(good)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records.values())

    def add(self, records: Iterable[dict]) -> None:
        """Append records and make them durable before returning."""
        records = [r for r in records if r["key"] not in self.records]
        if not records:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        for record in records:
            self.records[record["key"]] = record

    def rewrite(self, records: Iterable[dict]) -> None:
        """Replace the file atomically (used when re-judging)."""
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        self.records = {}
        self._load()


def merge_shards(paths: Iterable[str | Path], out: str | Path) -> JsonlStore:
    """Merge per-process shard files into one store, ordered by key (deterministic)."""
    merged: dict[str, dict] = {}
    for path in paths:
        merged.update(JsonlStore(path).records)
    store = JsonlStore(out)
    store.rewrite(merged[k] for k in sorted(merged))
    return store
