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


def open_store(run_dir: Path, process: ProcessInfo, resume: bool) -> JsonlStore:
    """This process's store; with resume, records already in the merged file count as done."""
    run_dir.mkdir(parents=True, exist_ok=True)
    merged = run_dir / "generations.jsonl"
    if process.count == 1:
        path = merged
    else:
        path = run_dir / f"generations.rank{process.index}-of-{process.count}.jsonl"
    if not resume:
        for stale in [path] + ([merged] if process.is_main else []):
            if stale.exists():
                stale.unlink()
    store = JsonlStore(path)
    if process.count > 1 and resume and merged.exists():
        store.records.update(JsonlStore(merged).records)
    return store


def finish(run_dir: Path, process: ProcessInfo, *, title: str, settings: dict, figures: Callable | None = None,
           echo: bool = True) -> list[dict] | None:
    """Merge shards, write summary.json, plots and report.html (main process only)."""
    from ..report import write_report

    wait_for_everyone()
    if not process.is_main:
        return None
    merged = run_dir / "generations.jsonl"
    if process.count > 1:
        shards = sorted(run_dir.glob(f"generations.rank*-of-{process.count}.jsonl"))
        store = merge_shards(shards + ([merged] if merged.exists() else []), merged)
    else:
        store = JsonlStore(merged)
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
