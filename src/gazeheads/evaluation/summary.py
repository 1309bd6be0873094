"""Aggregates of a run's records: accuracy with bootstrap intervals, junk rate, breakdowns."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

import numpy as np

from .stats import cluster_bootstrap_ci


def _acc(hits: list[float], clusters: list[str], seed: int) -> dict:
    mean, low, high = cluster_bootstrap_ci(hits, clusters, seed=seed)
    return {"n": len(hits), "n_clusters": len(set(clusters)), "accuracy": mean, "ci_low": low, "ci_high": high}


def _cluster(record: dict) -> str:
    """The unit a bootstrap resamples: the record's strip (image), else the record itself."""
    return str(record.get("strip", record.get("key", id(record))))


def summarise(records: Iterable[dict], *, seed: int = 0) -> list[dict]:
    """One row per (protocol, condition, K[, size class]); baselines and untargetable objects excluded.

    Intervals resample whole strips (images for box steering): a strip's targets, and a
    dynamic narration's segments, are not independent. Box steering also gets a pooled row
    per condition with size class "all", and counts the objects no token could target.
    A dynamic narration whose judged panels are constant (or all junk) has no rank
    correlation; it counts as Spearman 0 (no association), and `spearman_undefined` says
    how many did, so a control that never moves is not scored on its lucky strips alone.
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    untargetable: dict[tuple, int] = defaultdict(int)
    for record in records:
        if record.get("untargetable"):
            untargetable[(record["protocol"], record["condition"], record["k"], record.get("size_class"))] += 1
            untargetable[(record["protocol"], record["condition"], record["k"], "all")] += 1
        if record["condition"] == "baseline" or record.get("untargetable"):
            continue
        key = (record["protocol"], record["condition"], record["k"], record.get("size_class"))
        groups[key].append(record)
        if record.get("size_class") is not None:
            groups[key[:3] + ("all",)].append(record)
    rows = []
    for (protocol, condition, k, size), group in sorted(groups.items(), key=lambda kv: _order(kv[0])):
        row = {"protocol": protocol, "condition": condition, "k": k}
        if size is not None:
            row["size_class"] = size
        if protocol == "dynamic":
            hits = [float(h) for r in group for h in r["segment_hits"]]
            row.update(_acc(hits, [_cluster(r) for r in group for _ in r["segment_hits"]], seed))
            undefined = [r["spearman"] is None or math.isnan(r["spearman"]) for r in group]
            rhos = [0.0 if bad else r["spearman"] for r, bad in zip(group, undefined)]
            row.update(n_strips=len(group), spearman_mean=float(np.mean(rhos)), spearman_std=float(np.std(rhos)),
                       spearman_n=len(rhos), spearman_undefined=int(sum(undefined)))
            row["junk_rate"] = float(np.mean([v["junk"] for r in group for v in r["verdicts"]]))
            row["chance"] = 1.0 / group[0]["n_panels"]
        else:
            row.update(_acc([float(r["hit"]) for r in group], [_cluster(r) for r in group], seed))
            row["junk_rate"] = float(np.mean([bool(r["junk"]) for r in group]))
            if size is not None:
                row["untargetable"] = untargetable.get((protocol, condition, k, size), 0)
            if protocol != "coco":
                row["chance"] = 1.0 / group[0]["n_panels"]
                per_panel = defaultdict(list)
                for r in group:
                    per_panel[r["target"]].append(float(r["hit"]))
                row["per_panel"] = {str(p): float(np.mean(v)) for p, v in sorted(per_panel.items())}
        rows.append(row)
    return rows


_CONDITION_ORDER = {"gaze": 0, "random": 1, "all": 2}
_SIZE_ORDER = {None: 0, "all": 1, "small": 2, "medium": 3, "large": 4}


def _order(key: tuple) -> tuple:
    protocol, condition, k, size = key
    return (protocol, _SIZE_ORDER.get(size, 9), k if protocol == "topk" else 0, _CONDITION_ORDER.get(condition, 9), k)


def format_table(rows: list[dict]) -> str:
    """A plain-text table for the terminal."""
    header = f"{'protocol':<10} {'condition':<9} {'K':>5} {'size':<7} {'n':>5} {'accuracy':>8}  {'95% CI':<15} {'junk':>6} {'extra'}"
    lines = [header, "-" * len(header)]
    for row in rows:
        extra = ""
        if "spearman_mean" in row:
            extra = f"Spearman {row['spearman_mean']:.2f} +- {row['spearman_std']:.2f}"
        elif "chance" in row:
            extra = f"chance {row['chance']:.3f}"
        lines.append(
            f"{row['protocol']:<10} {row['condition']:<9} {row['k']:>5} {row.get('size_class', ''):<7} {row['n']:>5} "
            f"{row['accuracy']:>8.3f}  [{row['ci_low']:.3f}, {row['ci_high']:.3f}]  {row['junk_rate']:>6.3f} {extra}"
        )
    return "\n".join(lines)
