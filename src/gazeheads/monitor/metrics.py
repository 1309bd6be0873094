"""Detection metrics: AUROC with intervals that resample whole strips, rates at a threshold, weakest
strength detected, and detection delay after steering starts mid-generation."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import GazeheadsError
from ..evaluation.stats import _BLOCK, _check_confidence, _percentile_interval, cluster_bootstrap_ci


def auroc(negatives: Sequence[float], positives: Sequence[float]) -> float:
    """P(positive score > negative score) + P(tie) / 2 (Mann-Whitney); nan when a side is empty."""
    neg, pos = np.asarray(negatives, np.float64), np.asarray(positives, np.float64)
    if neg.size == 0 or pos.size == 0:
        return math.nan
    ordered = np.sort(neg)
    below = np.searchsorted(ordered, pos, side="left")
    ties = np.searchsorted(ordered, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (neg.size * pos.size))


def cluster_bootstrap_auroc(negatives: Sequence[float], negative_clusters: Sequence[str],
                            positives: Sequence[float], positive_clusters: Sequence[str], *,
                            n_resamples: int = 2000, confidence: float = 0.95,
                            seed: int = 0) -> tuple[float, float, float]:
    """(AUROC, low, high), resampling whole clusters (strips or scenes) with replacement.

    A strip's steered and unsteered generations share the strip and are resampled together. With
    cluster weights w, the resampled AUROC is w'Cw / ((w'p)(w'n)), where C[a, b] sums the pair wins of
    cluster a's positives over cluster b's negatives and p, n count each cluster's positives and
    negatives, so every resample is exact without redrawing pairs.
    """
    _check_confidence(confidence)
    point = auroc(negatives, positives)
    if math.isnan(point):
        return point, math.nan, math.nan
    names = sorted({str(c) for c in [*negative_clusters, *positive_clusters]})
    index = {name: i for i, name in enumerate(names)}
    neg = np.asarray(negatives, np.float64)
    pos = np.asarray(positives, np.float64)
    neg_c = np.array([index[str(c)] for c in negative_clusters])
    pos_c = np.array([index[str(c)] for c in positive_clusters])
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    m = len(names)
    pairs = np.zeros((m, m))
    np.add.at(pairs, (pos_c[:, None], neg_c[None, :]), wins)
    n_pos = np.bincount(pos_c, minlength=m).astype(np.float64)
    n_neg = np.bincount(neg_c, minlength=m).astype(np.float64)
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK // (m * m))
    values = []
    for start in range(0, n_resamples, block):
        w = rng.multinomial(m, np.full(m, 1.0 / m), size=min(block, n_resamples - start)).astype(np.float64)
        numerator = np.einsum("ra,ab,rb->r", w, pairs, w)
        denominator = (w @ n_pos) * (w @ n_neg)
        keep = denominator > 0
        values.append(numerator[keep] / denominator[keep])
    values = np.concatenate(values)
    if values.size == 0:
        return point, math.nan, math.nan
    return (point, *_percentile_interval(values, confidence))


def rate_ci(flags: Sequence[bool], clusters: Sequence[str], *, n_resamples: int = 2000,
            seed: int = 0) -> tuple[float, float, float]:
    """(rate, low, high) of flagged generations, resampling clusters (a TPR or an FPR)."""
    return cluster_bootstrap_ci([float(f) for f in flags], list(clusters), n_resamples=n_resamples, seed=seed)


def weakest_detected(curve: Sequence[tuple[float, float]], level: float = 0.8) -> tuple[float | None, float | None]:
    """From (strength, AUROC) pairs: (the weakest strength from which every stronger one reaches `level`,
    the strongest strength that falls below it). Either is None when there is none."""
    ordered = sorted((s, a) for s, a in curve if not math.isnan(a))
    weakest = None
    for strength, value in reversed(ordered):
        if value < level:
            break
        weakest = strength
    below = [s for s, a in ordered if a < level]
    return weakest, (max(below) if below else None)


def detection_delays(step_flags: Sequence[Sequence[bool]], onset: int) -> list[int | None]:
    """Per generation, steps from `onset` to the first flagged step at or after it (None: never flagged)."""
    if onset < 0:
        raise GazeheadsError(f"Onset step {onset}.", "Give a step >= 0.")
    delays = []
    for flags in step_flags:
        later = [i for i, f in enumerate(flags) if f and i >= onset]
        delays.append(later[0] - onset if later else None)
    return delays


def delay_summary(delays: Sequence[int | None]) -> dict:
    """How many generations were flagged after the onset, and how fast (median, mean, max delay in steps)."""
    found = [d for d in delays if d is not None]
    return {"n": len(delays), "detected": len(found), "detected_rate": len(found) / len(delays) if delays else math.nan,
            "median": float(np.median(found)) if found else None, "mean": float(np.mean(found)) if found else None,
            "max": max(found) if found else None, "at_onset": sum(d == 0 for d in found)}
