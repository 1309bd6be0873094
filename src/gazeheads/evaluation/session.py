"""A whole evaluation run in one folder: shards, merge, summary, plots, report.

    RUN/generations.jsonl           every generation with its verdict (merged)
    RUN/generations.rank<r>-of-<w>.jsonl   per-process shards under accelerate launch
    RUN/summary.json                aggregates with 95% bootstrap intervals, and what unsteered answers score
    RUN/*.png, RUN/report.html      plots and the report (drawn by gazeheads.report)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from ..errors import GazeheadsError
from ..files import write_text
from .protocols import PROTOCOL_ORDER
from .store import JsonlStore, merge_shards
from .summary import format_table, summarise, unsteered_rows

if TYPE_CHECKING:
    from ..data.strips import Strip
    from ..report import ReportSection


@dataclass(frozen=True)
class ProcessInfo:
    """This process's place among the processes of one run (1 of 1 without accelerate)."""

    index: int = 0
    count: int = 1
    device: str | None = None

    @property
    def is_main(self) -> bool:
        return self.index == 0


def current_process() -> ProcessInfo:
    """Read rank and world size from accelerate when launched with `accelerate launch`."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return ProcessInfo()
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # gloo on CPU, nccl on GPUs
    return ProcessInfo(state.process_index, state.num_processes, str(state.device))


def wait_for_everyone() -> None:
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()


def shard_files(run_dir: Path) -> list[Path]:
    """Every per-process shard in `run_dir`, whatever the number of processes that wrote it."""
    return sorted(run_dir.glob("generations.rank*-of-*.jsonl"))


def existing_records(run_dir: Path) -> list[Path]:
    """Record files (merged and shards) already in `run_dir` that hold at least one byte."""
    files = [run_dir / "generations.jsonl", *shard_files(run_dir)]
    return [f for f in files if f.is_file() and f.stat().st_size > 0]


def check_store_policy(run_dir: Path, *, resume: bool, restart: bool) -> None:
    """Refuse to start a run in a folder holding records unless told to resume or restart (before any work)."""
    if resume and restart:
        raise GazeheadsError("Both --resume and --restart given.", "Resume (keep the records) or restart (discard them).")
    found = existing_records(run_dir)
    if found and not (resume or restart):
        raise GazeheadsError(
            f"{run_dir} already holds generations ({', '.join(f.name for f in found)}).",
            "Pass --resume to continue that run (same settings), --restart to discard its records and start over, "
            "or choose another --out.",
        )


def open_store(run_dir: Path, process: ProcessInfo, *, resume: bool = False, restart: bool = False) -> JsonlStore:
    """This process's store.

    With `resume`, every record already on disk (the merged file and the shards of any
    earlier number of processes) counts as done, and the run must use the same settings.
    With `restart`, the records are deleted first. With neither, a folder that holds records
    is refused: nothing a user made is deleted unless they ask.
    """
    if process.is_main:  # the main process checks the folder for every process ...
        check_store_policy(run_dir, resume=resume, restart=restart)
    wait_for_everyone()  # ... before any of them opens (and writes) its shard
    run_dir.mkdir(parents=True, exist_ok=True)
    merged = run_dir / "generations.jsonl"
    path = merged if process.count == 1 else run_dir / f"generations.rank{process.index}-of-{process.count}.jsonl"
    if restart:
        stale = [path, JsonlStore.settings_path_of(path)]
        if process.is_main:
            stale += [merged, JsonlStore.settings_path_of(merged)]
            stale += [p for p in run_dir.glob("generations.rank*-of-*") if f"-of-{process.count}." not in p.name]
        for file in stale:
            file.unlink(missing_ok=True)
    store = JsonlStore(path)
    if resume:
        for other in [merged] + shard_files(run_dir):
            if other != path and other.exists():
                store.adopt(JsonlStore(other, read_only=True))
    return store


def finish(run_dir: Path, process: ProcessInfo, *, title: str, settings: dict,
           echo: bool = True, extra: dict | None = None, extra_sections: Iterable["ReportSection"] = (),
           strips: Sequence["Strip"] | None = None, image_root: str | Path | None = None) -> list[dict] | None:
    """Merge shards, write summary.json, plots and report.html (main process only).

    `extra` (e.g. the main job's tracking examples and run time) is kept in summary.json under
    "run"; summary.json also keeps, under "unsteered", what the unsteered answers score against
    the same targets. `extra_sections` are appended to the report; `strips` (e.g. the evaluated
    StripSet) and `image_root` (box-steering images) give its example thumbnails."""
    from ..report import write_report

    wait_for_everyone()
    if not process.is_main:
        return None
    merged = run_dir / "generations.jsonl"
    shards = shard_files(run_dir)
    store = merge_shards(shards, merged) if shards else JsonlStore(merged)
    records = sorted(store, key=lambda r: r["key"])
    rows = summarise(records)
    if not rows:
        raise GazeheadsError(f"{run_dir} holds no judged generations to summarise.",
                             "Check that the run had strips to evaluate (--n-strips, the slice of --comics).")
    write_text(run_dir / "summary.json", json.dumps({"settings": settings, "results": rows, "run": extra or {},
                                                    "unsteered": unsteered_rows(records)}, indent=1))
    order = list(PROTOCOL_ORDER)
    protocols = sorted({r["protocol"] for r in rows}, key=lambda p: (order.index(p) if p in order else 9, p))
    sections = [(name, [r for r in rows if r["protocol"] == name], [r for r in records if r["protocol"] == name])
                for name in protocols]
    write_report(run_dir, title=title, sections=sections, settings=settings, extra=extra or {},
                 extra_sections=extra_sections, strips=strips, image_root=image_root)
    if echo:
        print(format_table(rows))
    return rows
