"""One self-contained HTML page per run, in the paper's order: overview, discovery, steering, tracking.

    from gazeheads.report import Figure, ReportSection, Table, write_report
    write_report(run_dir, title="...", sections=[(protocol, rows, records), ...],
                 extra_sections=[ReportSection("Monitoring", intro, [Figure(png, caption)])])

`sections` are what `evaluation.session.finish` passes: per protocol its summary rows and
records. The page is rendered from `templates/report.html.j2` (jinja2), so it can be restyled
without touching the code; every figure is a PNG in the run folder, embedded in the page.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable, Sequence

from ..files import write_text
from .page import Cell, Figure, ReportSection, Table, render_page
from .run import RunData, duration

__all__ = ["Cell", "Figure", "ReportSection", "Table", "write_report", "write_run_report"]


def write_report(run_dir: str | Path, *, title: str, sections: Sequence[tuple[str, list[dict], list[dict]]],
                 settings: dict | None = None, extra: dict | None = None,
                 extra_sections: Iterable[ReportSection] = (), lead_sections: Iterable[ReportSection] = (),
                 strips=None, image_root: str | Path | None = None) -> Path:
    """Draw the run's figures and write RUN/report.html.

    `sections`: (protocol, summary rows, records) per protocol; `extra` (e.g. tracking examples,
    run time) and `settings` are shown at the end; `lead_sections` follow the overview (e.g. paper vs
    measured) and `extra_sections` are appended after tracking (e.g. monitoring).
    `strips` (any sequence of Strip, e.g. a lazy StripSet) give the example thumbnails of strips
    that gazeheads cannot redraw; `image_root` is where box-steering images live.
    """
    from . import sections as build

    run_dir = Path(run_dir)
    rows = [row for _, protocol_rows, _ in sections for row in protocol_rows]
    records = [record for _, _, protocol_records in sections for record in protocol_records]
    data = RunData.load(run_dir, rows, records, settings, extra, strips=strips,
                        image_root=Path(image_root) if image_root else None)
    parts = [build.overview(data), *lead_sections, *build.discovery(data), *build.steering(data),
             *build.tracking(data), *extra_sections]
    meta = [] if data.model_name() in title else [data.model_name()]
    meta += [f"gazeheads {_version()}", time.strftime("%Y-%m-%d %H:%M")]
    if "run_seconds" in data.extra:
        meta.append(f"run time {duration(float(data.extra['run_seconds']))}")
    details = [(name, json.dumps(value, indent=1, default=str)) for name, value in
               (("Settings", data.settings), ("Run", data.extra)) if value]
    page = render_page(title=title, meta=meta, sections=parts, details=details)
    return write_text(run_dir / "report.html", page)


def write_run_report(run_dir: str | Path, *, title: str | None = None,
                     extra_sections: Iterable[ReportSection] = (), lead_sections: Iterable[ReportSection] = (),
                     strips=None) -> Path:
    """Rewrite RUN/report.html from what the run folder holds (summary.json, generations.jsonl)."""
    from ..evaluation.store import JsonlStore

    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    records = sorted(JsonlStore(run_dir / "generations.jsonl", read_only=True), key=lambda r: r["key"])
    protocols = sorted({r["protocol"] for r in summary["results"]})
    sections = [(p, [r for r in summary["results"] if r["protocol"] == p], [r for r in records if r["protocol"] == p])
                for p in protocols]
    model = (summary.get("settings") or {}).get("model") or "a gazeheads run"
    return write_report(run_dir, title=title or f"Gaze heads of {model}", sections=sections,
                        settings=summary.get("settings"), extra=summary.get("run"), extra_sections=extra_sections,
                        lead_sections=lead_sections, strips=strips)


def _version() -> str:
    from .. import __version__

    return __version__
