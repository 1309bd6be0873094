"""A whole evaluation run in one folder: shards, merge, summary, plots, report.

    RUN/generations.jsonl           every generation with its verdict (merged)
    RUN/generations.rank<r>-of-<w>.jsonl   per-process shards under accelerate launch
    RUN/summary.json                aggregates with 95% bootstrap intervals
    RUN/*.png, RUN/report.html      plots and the report
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import plots
from .store import JsonlStore, merge_shards
from .summary import format_table, summarise


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


def open_store(run_dir: Path, process: ProcessInfo, resume: bool) -> JsonlStore:
    """This process's store.

    With `resume`, every record already on disk (the merged file and the shards of any
    earlier number of processes) counts as done, and the run must use the same settings.
    Without, this process's file (and, on the main process, the merged file and shards of
    other process counts) is removed first.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    merged = run_dir / "generations.jsonl"
    path = merged if process.count == 1 else run_dir / f"generations.rank{process.index}-of-{process.count}.jsonl"
    if not resume:
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


def finish(run_dir: Path, process: ProcessInfo, *, title: str, settings: dict, figures: Callable | None = None,
           echo: bool = True) -> list[dict] | None:
    """Merge shards, write summary.json, plots and report.html (main process only)."""
    from ..report import write_report

    wait_for_everyone()
    if not process.is_main:
        return None
    merged = run_dir / "generations.jsonl"
    shards = shard_files(run_dir)
    store = merge_shards(shards, merged) if shards else JsonlStore(merged)
    records = sorted(store, key=lambda r: r["key"])
    rows = summarise(records)
    (run_dir / "summary.json").write_text(json.dumps({"settings": settings, "results": rows}, indent=1))
    order = ["narration", "vqa", "dynamic", "topk", "coco"]
    protocols = sorted({r["protocol"] for r in rows}, key=lambda p: (order.index(p) if p in order else 9, p))
    sections = []
    for name in protocols:
        sel = [r for r in rows if r["protocol"] == name]
        recs = [r for r in records if r["protocol"] == name]
        draw_protocol_figures(run_dir, name, sel, recs)
        sections.append((name, sel, recs))
    if figures:
        figures(run_dir, rows, records)
    write_report(run_dir, title=title, sections=sections, settings=settings)
    if echo:
        print(format_table(rows))
    return rows


def draw_protocol_figures(run_dir: Path, name: str, rows: list[dict], records: list[dict]) -> None:
    if not rows:
        return
    if name == "topk":
        plots.topk_curve(rows, run_dir / "topk_curve.png")
        return
    plots.accuracy_bars(rows, run_dir / f"{name}_accuracy.png", title=f"{name}: accuracy per condition")
    if name == "dynamic":
        plots.dynamic_schedules([r for r in records if r["condition"] != "baseline"], run_dir / "dynamic_schedules.png")
