"""From the evaluation's records to its figures: calibrate on the fitting split, score the held-out split.

Thresholds come from the unsteered generations of the fitting split only; every rate and AUROC
reported is measured on the held-out split, with 95% intervals that resample whole strips
(or scenes).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from ..errors import GazeheadsError
from .calibration import Calibration, GenerationFeatures
from .design import Condition, Design
from .detectors import generation_scores, step_scores
from .metrics import auroc, cluster_bootstrap_auroc, delay_summary, detection_delays, rate_ci, weakest_detected

AUROC_GOAL = 0.8


def generation_features(record: dict) -> GenerationFeatures:
    features = np.asarray(record["features"], dtype=np.float64).reshape(len(record["features"]), -1)
    steered = np.asarray(record["steered_steps"], dtype=bool) if record["steered"] else None
    return GenerationFeatures(features, record["item"], steered)


def fit_calibration(records: Sequence[dict], *, view: dict, fingerprint: str, info: dict | None = None) -> Calibration:
    """The calibration of the fitting split's records (negatives for thresholds, positives for the probe)."""
    fit = [r for r in records if r["split"] == "fit"]
    both = {r["item"] for r in fit} & {r["item"] for r in records if r["split"] == "test"}
    if both:
        raise GazeheadsError(f"{len(both)} strips or scenes (e.g. {sorted(both)[0]}) are in both the fitting and the "
                             "held-out records.", "Keep the two splits disjoint: start a new run folder.")
    negatives = [generation_features(r) for r in fit if not r["steered"]]
    positives = [generation_features(r) for r in fit if r["steered"]]
    if not negatives:
        raise GazeheadsError("The fitting split holds no unsteered generations.",
                             "Give the evaluation fitting strips (--n-fit) before scoring.")
    return Calibration.fit(negatives, positives, view=view, fingerprint=fingerprint, info=info)


class Scored:
    """The held-out records with every detector's step and generation scores and decisions."""

    def __init__(self, records: Sequence[dict], calibration: Calibration, fpr: float) -> None:
        self.records = [r for r in records if r["split"] == "test"]
        self.calibration = calibration
        self.fpr = fpr
        self.detectors = calibration.detectors
        self.steps: dict[str, list[np.ndarray]] = {}
        self.whole: dict[str, np.ndarray] = {}
        for detector in self.detectors:
            per_step = [step_scores(detector, generation_features(r).features, calibration.probe) for r in self.records]
            self.steps[detector] = per_step
            self.whole[detector] = np.array([generation_scores(s[None], np.array([len(s)]))[0] for s in per_step])

    def select(self, condition: str | None = None, prompt: str | None = None, steered: bool | None = None) -> list[int]:
        return [i for i, r in enumerate(self.records)
                if (condition is None or r["condition"] == condition) and (prompt is None or r["prompt"] == prompt)
                and (steered is None or r["steered"] == steered)]

    def flags(self, detector: str, rows: list[int]) -> np.ndarray:
        lengths = [len(self.steps[detector][i]) for i in rows]
        return self.calibration.flags(detector, self.whole[detector][rows], self.fpr, "generation", lengths)

    def step_flags(self, detector: str, row: int) -> np.ndarray:
        return self.calibration.flags(detector, self.steps[detector][row], self.fpr, "step")


def _clusters(scored: Scored, rows: list[int]) -> list[str]:
    return [scored.records[i]["item"] for i in rows]


def _changed(records: Sequence[dict]) -> dict[str, bool]:
    """Per steered record key, whether its text differs from the unsteered text of the same prompt and item."""
    unsteered = {(r["split"], r["prompt"], r["item"]): r["text"] for r in records if not r["steered"]}
    return {r["key"]: r["text"] != unsteered.get((r["split"], r["prompt"], r["item"]), r["text"])
            for r in records if r["steered"]}


def condition_rows(scored: Scored, design: Design, *, n_resamples: int, seed: int) -> list[dict]:
    """Per steered condition: its settings, how often the text changed, and per detector the AUROC against
    unsteered generations of the same prompt (interval by strip), the step-level AUROC, and the TPR at the
    calibrated threshold."""
    changed = _changed(scored.records)
    rows = []
    for condition in design.positives():
        pos = scored.select(condition.name)
        neg = scored.select(prompt=condition.prompt, steered=False)
        if not pos or not neg:
            continue
        row = {**_describe(condition), "n": len(pos), "n_negatives": len(neg),
               "changed_rate": float(np.mean([changed[scored.records[i]["key"]] for i in pos])), "detectors": {}}
        for detector in scored.detectors:
            value, low, high = cluster_bootstrap_auroc(scored.whole[detector][neg], _clusters(scored, neg),
                                                       scored.whole[detector][pos], _clusters(scored, pos),
                                                       n_resamples=n_resamples, seed=seed)
            tpr, tpr_low, tpr_high = rate_ci(scored.flags(detector, pos), _clusters(scored, pos),
                                             n_resamples=n_resamples, seed=seed)
            steered_steps = np.concatenate([scored.steps[detector][i][np.asarray(scored.records[i]["steered_steps"])]
                                            for i in pos])
            clean_steps = np.concatenate([scored.steps[detector][i] for i in neg])
            row["detectors"][detector] = {"auroc": value, "ci_low": low, "ci_high": high, "tpr": tpr,
                                          "tpr_low": tpr_low, "tpr_high": tpr_high,
                                          "step_auroc": auroc(clean_steps, steered_steps)}
        rows.append(row)
    return rows


def _describe(condition: Condition) -> dict:
    s = condition.steer
    return {"condition": condition.name, "group": condition.group, "prompt": condition.prompt,
            "strength": s.strength, "mode": s.mode, "phase": s.phase, "heads": condition.heads, "k": condition.k,
            "schedule": condition.schedule}


def false_positive_rows(scored: Scored, *, n_resamples: int, seed: int) -> list[dict]:
    """Per prompt (and all together), the held-out unsteered generations flagged at the calibrated threshold,
    and the share of their steps flagged at the per-step threshold."""
    rows = []
    prompts = sorted({scored.records[i]["prompt"] for i in scored.select(steered=False)})
    for prompt in [*prompts, None]:
        neg = scored.select(prompt=prompt, steered=False)
        if not neg:
            continue
        row: dict[str, Any] = {"prompt": prompt or "all", "n": len(neg), "detectors": {}}
        for detector in scored.detectors:
            value, low, high = rate_ci(scored.flags(detector, neg), _clusters(scored, neg),
                                       n_resamples=n_resamples, seed=seed)
            steps = np.concatenate([scored.step_flags(detector, i) for i in neg])
            row["detectors"][detector] = {"fpr": value, "ci_low": low, "ci_high": high,
                                          "step_fpr": float(steps.mean())}
        rows.append(row)
    return rows


def onset_delays(scored: Scored, design: Design, onset: int) -> dict[str, dict]:
    """Per detector: detection delay after steering starts at step `onset`, with per-step thresholds, and the
    share of steps flagged before the onset (false alarms on the unsteered start)."""
    onset_conditions = [c for c in design.positives() if c.schedule == "onset"]
    out: dict[str, dict] = {}
    if not onset_conditions:
        return out
    rows = scored.select(onset_conditions[0].name)
    if not rows:
        return out
    for detector in scored.detectors:
        flags = [scored.step_flags(detector, i) for i in rows]
        summary = delay_summary(detection_delays(flags, onset))
        before = np.concatenate([f[:onset] for f in flags])
        summary["pre_onset_step_fpr"] = float(before.mean()) if before.size else math.nan
        summary["flagged_share_by_step"] = [float(np.mean([f[s] for f in flags if s < len(f)]))
                                            for s in range(max(len(f) for f in flags))]
        out[detector] = summary
    return out


def strength_curves(rows: Sequence[dict], paper_k: int) -> dict[str, list[dict]]:
    """Per detector, AUROC against B for boost_suppress, top-K gaze heads, prefill+decode, narration."""
    curves: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["group"] != "strength" or row["k"] != paper_k:
            continue
        for detector, d in row["detectors"].items():
            curves[detector].append({"strength": row["strength"], "auroc": d["auroc"], "ci_low": d["ci_low"],
                                     "ci_high": d["ci_high"], "tpr": d["tpr"]})
    return {d: sorted(c, key=lambda e: e["strength"]) for d, c in curves.items()}


def summarise(records: Sequence[dict], design: Design, calibration: Calibration, *, fpr: float, onset: int,
              n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """monitor_summary.json: thresholds, held-out false-positive rates, per-condition AUROC and TPR with
    intervals, AUROC against strength, the weakest strength detected, and detection delays."""
    scored = Scored(records, calibration, fpr)
    if not scored.records:
        raise GazeheadsError("The held-out split holds no generations to score.", "Give --n-strips 1 or more.")
    rows = condition_rows(scored, design, n_resamples=n_resamples, seed=seed)
    curves = strength_curves(rows, design.k)
    weakest = {}
    for detector, curve in curves.items():
        strength, below = weakest_detected([(e["strength"], e["auroc"]) for e in curve], AUROC_GOAL)
        weakest[detector] = {"weakest_strength": strength, "strongest_below": below}
    paper = next((r for r in rows if r["condition"] == design.paper().name), None)
    lengths = sorted({len(r["features"]) for r in scored.records})
    thresholds = {d: {"step": calibration.threshold(d, fpr, "step"),
                      "generation": {str(n): calibration.threshold(d, fpr, "generation", n) for n in lengths},
                      "compared_with": {str(n): calibration.null_size(d, n) for n in lengths}}
                  for d in calibration.detectors}
    return {
        "fpr_target": fpr, "auroc_goal": AUROC_GOAL, "detectors": list(calibration.detectors),
        "calibration": {"thresholds": _finite(thresholds), "info": calibration.info},
        "held_out_false_positives": false_positive_rows(scored, n_resamples=n_resamples, seed=seed),
        "paper_setting": paper, "conditions": rows, "strength_curves": curves, "weakest_strength": weakest,
        "onset_delay": onset_delays(scored, design, onset), "onset_step": onset,
        "n_held_out": len(scored.records), "n_fit": sum(r["split"] == "fit" for r in records),
    }


def _finite(value):
    """JSON has no infinities: they become strings."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
