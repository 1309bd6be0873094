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


def baseline_verdicts(records: Iterable[dict]) -> dict[tuple[str, str], list[dict | None]]:
    """Per (protocol, strip): the verdict on each unsteered answer (one per segment for dynamic narration).

    Unsteered answers are judged when they are generated (records since 0.2). For older runs, a
    steered answer of the same strip with exactly the same text (the same segment, for dynamic
    narration) was, and its verdict is the unsteered answer's; None where none repeated it.
    """
    records = list(records)
    verdicts: dict[tuple[str, str], list[dict | None]] = {}
    steered: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in records:
        if record["condition"] != "baseline" and record.get("text") is not None:
            steered[(record["protocol"], record["strip"])].append(record)
    for record in records:
        if record["condition"] != "baseline":
            continue
        key = (record["protocol"], record["strip"])
        if record.get("verdicts") is not None or record.get("verdict") is not None:  # judged when generated
            verdicts[key] = list(record["verdicts"]) if record.get("segments") else [record["verdict"]]
            continue
        if record.get("segments"):
            verdicts[key] = [_segment_verdict(steered[key], i, text) for i, text in enumerate(record["segments"])]
        else:
            verdicts[key] = [next((r["verdict"] for r in steered[key] if r["text"] == record["text"]
                                   and r.get("verdict")), None)]
    return verdicts


def _segment_verdict(candidates: list[dict], index: int, text: str) -> dict | None:
    for record in candidates:
        segments = record.get("segments") or []
        if index < len(segments) and segments[index] == text and index < len(record.get("verdicts", [])):
            return record["verdicts"][index]
    return None


def _unsteered_hit(verdict: dict, target: int) -> float:
    from .judges import Verdict

    return float(Verdict.from_dict(verdict).hit(target))


def unsteered_rows(records: Iterable[dict], *, seed: int = 0) -> list[dict]:
    """What the unsteered answers score against the same targets, per protocol (and size class).

    A no-op intervention scores this. Only strips whose unsteered answer could be placed (see
    :func:`baseline_verdicts`) count: `strips_placed` of `strips`. `panels` (not for dynamic
    narration) counts which panel (category index for boxes) the unsteered answers describe,
    with "junk" and "not placed"; `per_panel` (strips) is the accuracy per target panel.
    """
    records = list(records)
    verdicts = baseline_verdicts(records)
    scores = _unsteered_scores(records, verdicts)
    rows = []
    for protocol in sorted({p for p, _ in verdicts}):
        found = [v for (p, _), v in verdicts.items() if p == protocol]
        placed = sum(any(v is not None for v in segments) for segments in found)
        sizes = sorted((size for p, size in scores if p == protocol), key=lambda size: _SIZE_ORDER.get(size, 9))
        for size in sizes:
            hits, clusters, targets = zip(*scores[(protocol, size)])
            row = {"protocol": protocol, "condition": "unsteered", "k": 0}
            if size is not None:
                row["size_class"] = size
            row.update(_acc(list(hits), list(clusters), seed), strips=len(found), strips_placed=placed)
            if protocol != "dynamic":
                row["panels"] = described_panels(found)
            if protocol != "coco":
                per_panel = defaultdict(list)
                for hit, target in zip(hits, targets):
                    per_panel[target].append(hit)
                row["per_panel"] = {str(t): float(np.mean(v)) for t, v in sorted(per_panel.items())}
            rows.append(row)
        if not sizes:
            rows.append({"protocol": protocol, "condition": "unsteered", "k": 0, "n": 0, "strips": len(found),
                         "strips_placed": 0})
    return rows


def _unsteered_scores(records: list[dict], verdicts: dict) -> dict[tuple, list[tuple[float, str, int]]]:
    """Per (protocol, size class): (hit, strip, target) of the unsteered answer for every target steered to."""
    targets: dict[tuple, tuple] = {}  # one entry per target, however many head sets were steered to it
    for r in records:
        if r["condition"] == "baseline" or r.get("untargetable") or r.get("text") is None:
            continue
        if r["protocol"] == "dynamic":
            for i, target in enumerate(r["schedule"]):
                targets[(r["protocol"], r["strip"], i)] = (target, None, i)
        else:
            ident = r["object"]["annotation_id"] if "object" in r else r["target"]
            targets[(r["protocol"], r["strip"], ident)] = (r["target"], r.get("size_class"), 0)
    scores: dict[tuple, list] = defaultdict(list)
    for (protocol, strip, _), (target, size, index) in sorted(targets.items(), key=lambda kv: str(kv[0])):
        found = verdicts.get((protocol, strip), [])
        verdict = found[index] if index < len(found) else None
        if verdict is None:
            continue
        for key in [(protocol, size)] + ([(protocol, "all")] if size is not None else []):
            scores[key].append((_unsteered_hit(verdict, target), strip, target))
    return scores


def described_panels(found: list[list[dict | None]]) -> dict[str, int]:
    """How many unsteered answers the judge placed on each panel (category), were junk, or were not placed."""
    counts: dict[str, int] = defaultdict(int)
    for verdict in (segments[0] for segments in found if segments):
        if verdict is None or (verdict.get("choice") is None and not verdict.get("junk")):
            counts["not placed"] += 1
        else:
            counts["junk" if verdict.get("junk") else str(verdict["choice"])] += 1
    return dict(sorted(counts.items()))
