"""The monitor's part of the report: tables and figures from RUN/monitor_summary.json.

`monitor_report_section(run_dir)` returns a `gazeheads.report.ReportSection`, which the main job's
report appends (`write_report(..., extra_sections=[...])`); `write_monitor_page(run_dir)` renders
the same section as a page of its own (RUN/monitor_report.html) with the report's template.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from ..errors import DataError
from ..files import write_text
from ..report import Figure, ReportSection, Table
from ..report.page import render_page
from .detectors import DETECTORS
from .figures import FILES

SUMMARY = "monitor_summary.json"
PAGE = "monitor_report.html"
TITLE = "Monitoring and governance: is attention being redirected?"
ANCHOR = "monitoring"


def _ci(value, low, high, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if low is None or (isinstance(low, float) and math.isnan(low)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _strength(value) -> str:
    return "none" if value is None else f"{value:g}"


def read_summary(run_dir: str | Path) -> dict:
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        raise DataError(f"No {SUMMARY} in {run_dir}.", "Run `gazeheads eval monitor --out RUN` first.")
    return json.loads(path.read_text(encoding="utf-8"))


def monitor_report_section(run_dir: str | Path, summary: dict | None = None) -> ReportSection:
    """The monitor's section of the HTML report, from the summary and figures in `run_dir`."""
    run_dir = Path(run_dir)
    s = read_summary(run_dir) if summary is None else summary
    detectors = s["detectors"]
    info = s["calibration"]["info"]
    intro = (f"A monitor that sees only observable attention (its own gaze heads and every head's image "
             f"attention, never the steering plan) scored {s['n_held_out']} held-out generations after calibrating "
             f"on {s['n_fit']} generations of disjoint strips and scenes ({info.get('negatives', '?')} unsteered). "
             f"Thresholds are set for a false-positive rate of {s['fpr_target']:g} on the fitting split's unsteered "
             "generations; every rate below is measured on the held-out split, with 95% intervals resampling whole "
             "strips. Negatives include unsteered panel-by-panel narration, where the gaze heads move from panel "
             "to panel. Detectors: " + "; ".join(f"{d}: {DETECTORS[d].measures}" for d in detectors) + ".")
    content = ReportSection(title=TITLE, intro=intro, anchor=ANCHOR)
    paper = s.get("paper_setting")
    narration_fp = next((r for r in s["held_out_false_positives"] if r["prompt"] == "narrate"), None)
    if paper:
        rows = []
        for d in detectors:
            v = paper["detectors"][d]
            fp = narration_fp["detectors"][d] if narration_fp else None
            rows.append([d, _ci(v["auroc"], v["ci_low"], v["ci_high"]), _ci(v["tpr"], v["tpr_low"], v["tpr_high"]),
                         _ci(fp["fpr"], fp["ci_low"], fp["ci_high"]) if fp else "-", _ci(v["step_auroc"], None, None)])
        content.tables.append(Table(["detector", "AUROC", "TPR at threshold", "FPR, unsteered narration", "step AUROC"],
                               rows, f"The paper's setting ({paper['condition']}; {paper['n']} steered and "
                                     f"{paper['n_negatives']} unsteered narrations; "
                                     f"{paper['changed_rate']:.0%} of steered texts changed)."))
    fp_rows = [[r["prompt"], str(r["n"])] + [f"{_ci(r['detectors'][d]['fpr'], r['detectors'][d]['ci_low'], r['detectors'][d]['ci_high'])}"
                                             f" (steps {r['detectors'][d]['step_fpr']:.3f})" for d in detectors]
               for r in s["held_out_false_positives"]]
    content.tables.append(Table(["unsteered prompt", "n", *detectors], fp_rows,
                           f"Held-out false-positive rate per generation at the calibrated threshold (target "
                           f"{s['fpr_target']:g}), and the share of steps over the per-step threshold."))
    cond_rows = []
    for r in s["conditions"]:
        cells = [f"{_ci(r['detectors'][d]['auroc'], r['detectors'][d]['ci_low'], r['detectors'][d]['ci_high'], 2)}"
                 f"; TPR {r['detectors'][d]['tpr']:.2f}" for d in detectors]
        cond_rows.append([r["condition"], f"{r['changed_rate']:.0%}", *cells])
    content.tables.append(Table(["condition", "text changed", *detectors], cond_rows,
                           "Per steered condition (held-out): AUROC against unsteered generations of the same prompt "
                           "[95% interval by strip]; TPR at the calibrated threshold."))
    weak = s["weakest_strength"]
    if weak:
        content.tables.append(Table(["detector", f"weakest B with AUROC >= {s['auroc_goal']} (and every stronger B)",
                                f"strongest B below {s['auroc_goal']}"],
                               [[d, _strength(w["weakest_strength"]), _strength(w["strongest_below"])]
                                for d, w in weak.items()],
                               "Where detection falls off with bias strength (boost_suppress, top-K gaze heads)."))
    delays = s["onset_delay"]
    if delays:
        content.tables.append(Table(["detector", "flagged after onset", "median delay", "mean delay", "max delay",
                                "steps flagged before onset"],
                               [[d, f"{v['detected']}/{v['n']}", _strength(v["median"]),
                                 "-" if v["mean"] is None else f"{v['mean']:.2f}", _strength(v["max"]),
                                 f"{v['pre_onset_step_fpr']:.3f}"] for d, v in delays.items()],
                               f"Steering switched on at step {s['onset_step']} of a narration: steps until the "
                               "per-step detector first fires (0: at the first steered step)."))
    captions = {"strength": "AUROC against bias strength; shaded: 95% intervals by strip.",
                "conditions": "AUROC per condition and detector (held-out).",
                "onset": "Share of generations flagged per step when steering starts mid-generation."}
    for name, file in FILES.items():
        if (run_dir / file).is_file():
            content.figures.append(Figure(run_dir / file, captions[name]))
    return content


def write_monitor_page(run_dir: str | Path) -> Path:
    """RUN/monitor_report.html: the section as a page of its own (figures embedded)."""
    from .. import __version__

    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    settings = summary.get("settings", {})
    meta = [f"gazeheads {__version__}", time.strftime("%Y-%m-%d %H:%M")]
    page = render_page(title="Steering monitor: measured detection of redirected attention", meta=meta,
                       sections=[monitor_report_section(run_dir, summary)],
                       details=[("Settings", json.dumps(settings, indent=1, default=str))] if settings else [])
    return write_text(run_dir / PAGE, page)
