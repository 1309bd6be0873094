"""Append-only JSONL of generations: every record is on disk (flushed and synced) as soon
as it exists, and a rerun skips the keys already there.

Beside `NAME.jsonl` a store keeps `NAME.settings.json`: per section (protocol), the settings
its records were generated with, so that a resume with other settings is refused instead
of silently mixing old records with new ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import GazeheadsError
from ..files import write_text

RESUME_FIX = ("Rerun with the same settings to resume, write to another folder (--out, or --name for "
              "`gazeheads run`), or start over (`gazeheads eval` without --resume, `gazeheads run --restart`). "
              "To judge the same generations with another judge: `gazeheads eval ... --rejudge`.")


class SettingsMismatch(GazeheadsError):
    """A store's records were generated with other settings than the run asking to extend it."""


class JsonlStore:
    """Records keyed by `record["key"]`; a torn last line (killed mid-write) is dropped."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        """`read_only`: never truncate (another process may be appending to this file)."""
        self.path = Path(path)
        self.read_only = read_only
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: dict[str, dict] = {}
        self.settings: dict[str, dict] = {}
        if self.path.exists():
            self._load()
        if self.settings_path.exists():
            self.settings = json.loads(self.settings_path.read_text())

    @property
    def settings_path(self) -> Path:
        return self.settings_path_of(self.path)

    @staticmethod
    def settings_path_of(path: Path) -> Path:
        return path.with_suffix(".settings.json")

    def _load(self) -> None:
        raw = self.path.read_bytes()
        lines = raw.splitlines(keepends=True)
        good = 0
        for number, line in enumerate(lines, start=1):
            last = number == len(lines)
            if last and not line.endswith(b"\n"):
                break  # torn by a kill mid-write
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if last:
                    break
                raise GazeheadsError(
                    f"{self.path} line {number} is not valid JSON, and {len(lines) - number} records follow it.",
                    "Repair or delete that line (the records after it are kept), then rerun.") from None
            self.records[record["key"]] = record
            good += len(line)
        if good < len(raw) and not self.read_only:  # drop the torn tail so appends start on a clean line
            with open(self.path, "r+b") as handle:
                handle.truncate(good)

    def claim(self, section: str, settings: dict) -> None:
        """Record that `section`'s records are generated with `settings`; refuse other settings.

        Dict-valued settings (head sets keyed by condition and K) may gain keys, so a resume
        can add a condition or a K; a key they share must keep its value. `settings` must be
        JSON-serialisable; values are compared after a JSON round trip.
        """
        settings = json.loads(json.dumps(settings))
        if section not in self.settings and any(key.startswith(f"{section}|") for key in self.records):
            raise SettingsMismatch(f"{self.path} holds {section} records but no record of the settings they were "
                                   "made with (an older gazeheads wrote them), so a resume cannot be checked.",
                                   RESUME_FIX)
        saved = self.settings.get(section, {})
        changed, merged = [], dict(saved)
        for key, value in settings.items():
            old = saved.get(key, value)
            if isinstance(old, dict) and isinstance(value, dict):
                changed += [f"{key}.{sub}: {_short(old[sub])} -> {_short(value[sub])}"
                            for sub in sorted(set(old) & set(value)) if old[sub] != value[sub]]
                merged[key] = {**old, **value}
            elif old != value:
                changed.append(f"{key}: {_short(old)} -> {_short(value)}")
            else:
                merged[key] = value
        if changed:
            raise SettingsMismatch(
                f"{self.path} holds {section} records made with other settings ({'; '.join(changed)}).", RESUME_FIX)
        if merged != saved:
            self.settings[section] = merged
            self._write_settings()

    def adopt(self, other: "JsonlStore") -> None:
        """Count `other`'s records and settings as done here (resuming from another file)."""
        for section, settings in other.settings.items():
            self.claim(section, settings)
        self.records.update(other.records)

    def _write_settings(self) -> None:
        write_text(self.settings_path, json.dumps(self.settings, indent=1, sort_keys=True) + "\n")

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records.values())

    def add(self, records: Iterable[dict]) -> None:
        """Append records and make them durable before returning."""
        if self.read_only:
            raise RuntimeError(f"{self.path} was opened read-only")
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

    def rewrite(self, records: Iterable[dict], settings: dict[str, dict] | None = None) -> None:
        """Replace the file atomically (merging shards, re-judging); `settings` replace the saved ones."""
        write_text(self.path, "".join(json.dumps(record, sort_keys=True) + "\n" for record in records))
        self.records = {}
        self._load()
        if settings is not None:
            self.settings = json.loads(json.dumps(settings))
            self._write_settings()


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def merge_shards(paths: Iterable[str | Path], out: str | Path) -> JsonlStore:
    """Merge per-process shard files into one store, ordered by key (deterministic).

    Their settings must agree section by section (:class:`SettingsMismatch` otherwise).
    """
    merged = JsonlStore(out)
    for path in paths:
        if Path(path) != merged.path:
            merged.adopt(JsonlStore(path, read_only=True))
    merged.rewrite([merged.records[k] for k in sorted(merged.records)], merged.settings)
    return merged
