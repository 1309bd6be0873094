"""Statistics of an evaluation: bootstrap intervals, accuracy tables, Spearman, mean and std."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import GazeheadsError

_BLOCK = 2_000_000  # numbers drawn per block of resamples, to bound memory


def bootstrap_ci(
    hits: Sequence[bool | float],
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(mean, low, high): the sample mean and its percentile-bootstrap interval (seeded).

    Empty input gives (nan, nan, nan).
    """
    _check_confidence(confidence)
    x = np.asarray(hits, dtype=np.float64).ravel()
    if x.size == 0:
        return math.nan, math.nan, math.nan
    return (float(x.mean()), *_percentile_interval(bootstrap_means(x, n_resamples, seed), confidence))


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise GazeheadsError(f"confidence must lie strictly between 0 and 1, got {confidence}.", "Use e.g. 0.95.")


def _percentile_interval(statistics: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(statistics, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_means(values: Sequence[bool | float], n_resamples: int = 10_000, seed: int = 0) -> np.ndarray:
    """Means of `n_resamples` resamples of `values` drawn with replacement (vectorised, seeded).

    With few distinct values (hits, per-strip fractions) a resample is drawn as how often each
    distinct value occurs, a multinomial count (for 0/1 hits: Binomial(n, mean)); this has the
    same distribution as drawing indices, in R x (distinct values) memory. Otherwise indices
    are drawn, a block of resamples at a time.
    """
    if n_resamples < 1:
        raise GazeheadsError(f"n_resamples must be at least 1, got {n_resamples}.", "Use e.g. 10000.")
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise GazeheadsError("bootstrap_means got no values.", "Give at least one value.")
    if not np.all(np.isfinite(x)):
        raise GazeheadsError("bootstrap got NaN or infinite values.", "Drop them before computing intervals.")
    rng = np.random.default_rng(seed)
    distinct, counts = np.unique(x, return_counts=True)
    n = x.size
    if len(distinct) * 8 <= n:  # multinomial draws cost about 8 index draws per distinct value
        probs = counts / n
        draw = lambda rows: rng.multinomial(n, probs, size=rows) @ distinct / n  # noqa: E731
        width = len(distinct)
    else:
        draw = lambda rows: x[rng.integers(0, n, size=(rows, n))].mean(axis=1)  # noqa: E731
        width = n
    block = max(1, _BLOCK // width)
    return np.concatenate([draw(min(block, n_resamples - start)) for start in range(0, n_resamples, block)])


def cluster_bootstrap_ci(
    hits: Sequence[bool | float],
    clusters: Sequence[Any],
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(accuracy, low, high) with whole clusters resampled (seeded percentile bootstrap).

    The N targets of one strip (or the objects of one image, or the segments of one dynamic
    narration) share the strip and are not independent; resampling single answers would
    give intervals that are too narrow. Each resample draws clusters with replacement and
    computes the pooled accuracy sum(hits) / count, which equals the mean of the cluster
    means when clusters have equal sizes. Empty input gives (nan, nan, nan).
    """
    _check_confidence(confidence)
    if n_resamples < 1:
        raise GazeheadsError(f"n_resamples must be at least 1, got {n_resamples}.", "Use e.g. 10000.")
    x = np.asarray(hits, dtype=np.float64).ravel()
    if len(clusters) != x.size:
        raise GazeheadsError(f"{x.size} hits but {len(clusters)} cluster labels.", "Give one cluster label per hit.")
    if x.size == 0:
        return math.nan, math.nan, math.nan
    _, index = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    sums = np.bincount(index, weights=x)
    sizes = np.bincount(index).astype(np.float64)
    n_clusters = sizes.size
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK // n_clusters)
    accuracies = []
    for start in range(0, n_resamples, block):
        weights = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=min(block, n_resamples - start))
        accuracies.append((weights @ sums) / (weights @ sizes))
    return (float(x.mean()), *_percentile_interval(np.concatenate(accuracies), confidence))


def _sort_key(value: Any) -> tuple:
    if value is None:
        return (2, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def accuracy_table(
    records: Iterable[Mapping[str, Any]],
    by: Sequence[str] = ("condition",),
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[dict]:
    """One row per group of records: accuracy, bootstrap interval, junk rate, chance.

    Records are dicts with `hit` (bool, or a fraction for multi-segment records), and
    optionally `junk`, `n_panels`, `strip` and the `by` keys (e.g. condition, target,
    size_class); records without `hit` (baselines) are skipped. Records that name their
    `strip` (or image) are resampled strip by strip (:func:`cluster_bootstrap_ci`). Chance is
    1/n_panels where records give n_panels, else None (e.g. COCO, where the control
    condition is the reference).
    """
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        if "hit" in record:
            groups[tuple(record.get(key) for key in by)].append(record)
    rows = []
    for group_key in sorted(groups, key=lambda g: tuple(_sort_key(v) for v in g)):
        group = groups[group_key]
        hits = [float(r["hit"]) for r in group]
        if all("strip" in r for r in group):
            mean, low, high = cluster_bootstrap_ci(hits, [r["strip"] for r in group], n_resamples, confidence, seed)
        else:
            mean, low, high = bootstrap_ci(hits, n_resamples, confidence, seed)
        panels = [r["n_panels"] for r in group if r.get("n_panels")]
        rows.append({
            **dict(zip(by, group_key)),
            "n": len(group),
            "accuracy": mean,
            "ci_low": low,
            "ci_high": high,
            "junk_rate": float(np.mean([bool(r.get("junk", False)) for r in group])),
            "chance": float(np.mean([1.0 / p for p in panels])) if panels else None,
        })
    return rows


def per_panel_table(records: Iterable[Mapping[str, Any]], **kwargs: Any) -> list[dict]:
    """accuracy_table by condition and target panel."""
    return accuracy_table(records, by=("condition", "target"), **kwargs)


def per_size_table(records: Iterable[Mapping[str, Any]], **kwargs: Any) -> list[dict]:
    """accuracy_table by condition and object size class (COCO)."""
    return accuracy_table(records, by=("condition", "size_class"), **kwargs)


def rank_average(values: Sequence[float]) -> np.ndarray:
    """1-based ranks; tied values share the average of their ranks."""
    x = np.asarray(values, dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return (last - (counts - 1) / 2.0)[inverse]


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation with average ranks for ties; nan if either side is constant or n < 2."""
    if len(a) != len(b):
        raise GazeheadsError(f"spearman got sequences of lengths {len(a)} and {len(b)}.",
                             "Pair every scheduled panel with one judged panel.")
    if len(a) < 2:
        return math.nan
    ra, rb = rank_average(a), rank_average(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb) / denominator if denominator > 0 else math.nan


def mean_std(values: Iterable[float], ddof: int = 0) -> tuple[float, float]:
    """(mean, std) of the finite values (NaN, e.g. an undefined Spearman, is left out); nan if none."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan
    std = float(np.std(x, ddof=ddof)) if x.size > ddof else math.nan
    return float(x.mean()), std
