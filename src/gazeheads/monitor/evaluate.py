"""The monitor evaluation as one call: generate (resumable), calibrate on the fitting split, score the
held-out split, and write the run folder.

    RUN/generations.jsonl           one record per generation: features per step, condition, target
    RUN/monitor_calibration.json    thresholds (and the probe) fitted on the fitting split only
    RUN/monitor_summary.json        AUROC with intervals per condition, TPR and FPR, strength, delays
    RUN/monitor_*.png, RUN/monitor_report.html
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import GazeheadsWarning
from ..evaluation.store import JsonlStore
from ..files import write_text
from ..model import GazeModel
from ..ranking import Ranking
from .design import Design
from .figures import draw_all
from .generate import SECTION, Budget, Item, run_generations
from .report import SUMMARY, write_monitor_page
from .shadow import shadow_model
from .summary import fit_calibration, summarise
from .view import MonitorView

CALIBRATION = "monitor_calibration.json"


@dataclass(frozen=True)
class MonitorEvalSettings:
    """Everything that decides the records (saved with the run, compared on resume) and how they are scored."""

    design: Design
    budget: Budget
    question: str
    monitor_k: int
    seed: int = 0
    control_percentile: float = 5.0
    shadow: bool = True
    fpr: float = 0.01
    batch: int = 32
    n_resamples: int = 2000

    def record_settings(self, gm: GazeModel, view: MonitorView) -> dict[str, Any]:
        """What a resume must agree on (the scoring options fpr and n_resamples may change)."""
        return {"model": gm.fingerprint(), "view": view.to_dict(), "design": self.design.to_dict(),
                "budget": vars(self.budget), "question": self.question, "seed": self.seed,
                "control_percentile": self.control_percentile, "shadow": self.shadow}


def generate(gm: GazeModel, ranking: Ranking, view: MonitorView, items: Sequence[Item],
             settings: MonitorEvalSettings, store: JsonlStore, *, progress: bool = True) -> JsonlStore:
    """Every record of the design not yet in `store` (refusing a store made with other settings)."""
    store.claim(SECTION, settings.record_settings(gm, view))
    shadow = shadow_model(gm) if settings.shadow else None
    return run_generations(gm, ranking, view, settings.design, items, settings.budget, settings.question, store,
                           shadow=shadow, seed=settings.seed, control_percentile=settings.control_percentile,
                           batch=settings.batch, progress=progress)


def write_outputs(run_dir: str | Path, records: Sequence[dict], settings: MonitorEvalSettings, view: MonitorView,
                  fingerprint: str) -> dict:
    """Calibrate, summarise, plot and write the page; returns the summary."""
    run_dir = Path(run_dir)
    calibration = fit_calibration(records, view=view.to_dict(), fingerprint=fingerprint,
                                  info={"fpr_target": settings.fpr})
    calibration.save(run_dir / CALIBRATION)
    lengths = sorted({len(r["features"]) for r in records})
    blind = sorted({f"{d} at {n} steps" for d in calibration.detectors for n in lengths
                    if math.isinf(calibration.threshold(d, settings.fpr, "generation", n))})
    if blind:
        warnings.warn(GazeheadsWarning(
            f"the fitting split holds too few unsteered generations for a false-positive rate of {settings.fpr:g} "
            f"({'; '.join(blind)}): such generations cannot be flagged. A rate r needs at least 1/r - 1 unsteered "
            "generations at least that long; fit on more strips (--n-fit, --fit-comics)"), stacklevel=2)
    summary = summarise(records, settings.design, calibration, fpr=settings.fpr,
                        onset=settings.budget.onset_step, n_resamples=settings.n_resamples, seed=settings.seed)
    summary["settings"] = {"design": settings.design.to_dict(), "budget": vars(settings.budget),
                           "monitor_k": settings.monitor_k, "monitor_view": view.to_dict(), "fpr": settings.fpr,
                           "shadow": settings.shadow, "seed": settings.seed, "n_resamples": settings.n_resamples}
    write_text(run_dir / SUMMARY, json.dumps(_json_ready(summary), indent=1) + "\n")
    draw_all(summary, run_dir)
    write_monitor_page(run_dir)
    return summary


def _json_ready(value):
    """NaN becomes null and infinities strings, so the summary is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def format_summary(summary: dict) -> str:
    """A short console table: the paper's setting per detector, held-out FPR, weakest strength, delay."""
    lines = []
    paper = summary.get("paper_setting")
    narration = next((r for r in summary["held_out_false_positives"] if r["prompt"] == "narrate"), None)
    pooled = next((r for r in summary["held_out_false_positives"] if r["prompt"] == "all"), None)
    header = f"{'detector':9s} {'AUROC (paper setting)':>26s} {'TPR':>6s} {'FPR narr.':>9s} {'FPR all':>8s} " \
             f"{'weakest B':>9s} {'delay':>6s}"
    lines.append(header)
    for d in summary["detectors"]:
        cells = [f"{d:9s}"]
        if paper:
            v = paper["detectors"][d]
            interval = "" if v["ci_low"] is None else f" [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
            cells.append(f"{v['auroc']:>8.3f}{interval:>18s}")
            cells.append(f"{v['tpr']:>6.3f}")
        else:
            cells += [f"{'-':>26s}", f"{'-':>6s}"]
        cells.append(f"{narration['detectors'][d]['fpr']:>9.3f}" if narration else f"{'-':>9s}")
        cells.append(f"{pooled['detectors'][d]['fpr']:>8.3f}" if pooled else f"{'-':>8s}")
        weakest = summary["weakest_strength"].get(d, {}).get("weakest_strength")
        cells.append(f"{'-' if weakest is None else format(weakest, 'g'):>9s}")
        delay = summary["onset_delay"].get(d, {}).get("median")
        cells.append(f"{'-' if delay is None else format(delay, 'g'):>6s}")
        lines.append(" ".join(cells))
    return "\n".join(lines)
