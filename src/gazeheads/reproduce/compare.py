"""Paper vs measured: each published figure beside its counterpart in a run's summary rows."""

from __future__ import annotations

import math
from typing import Any

from .paper import FIGURES, Figure
from .plan import ReproducePlan


def _row(rows: list[dict], figure: Figure, k: int | None) -> dict | None:
    for row in rows:
        if row["protocol"] == figure.protocol and row["condition"] == figure.condition and (
                k is None or row["k"] == k):
            return row
    return None


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _interval(row: dict) -> str:
    return f"{_pct(row['accuracy'])} [{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]"


def measure(figure: Figure, rows: list[dict], plan: ReproducePlan) -> tuple[str, float | None, int | None]:
    """(the measured figure as text, its value, the number of items behind it); "not run" when absent."""
    if figure.measure in ("sweep_first", "sweep_peak"):
        sweep = sorted((r for r in rows if r["protocol"] == "topk" and r["condition"] == "gaze"), key=lambda r: r["k"])
        if not sweep:
            return "not run", None, None
        if figure.measure == "sweep_first":
            first = sweep[0]
            return f"{_interval(first)} at K = {first['k']}", first["accuracy"], first["n"]
        best = max(sweep, key=lambda r: r["accuracy"])
        text = f"K = {best['k']} ({_pct(best['accuracy'])}); curve " + ", ".join(
            f"{r['k']}: {_pct(r['accuracy'])}" for r in sweep)
        return text, float(best["k"]), sum(r["n"] for r in sweep)
    k = None if figure.condition == "all" else plan.k
    row = _row(rows, figure, k)
    if row is None:
        return "not run", None, None
    if figure.measure == "accuracy":
        return f"{_interval(row)}, {row['junk_rate']:.0%} junk", row["accuracy"], row["n"]
    if figure.measure == "junk":
        return f"{row['junk_rate']:.0%} junk, accuracy {_pct(row['accuracy'])}", row["junk_rate"], row["n"]
    mean, std = row.get("spearman_mean", math.nan), row.get("spearman_std", math.nan)
    undefined = row.get("spearman_undefined", 0)
    text = f"{mean:.2f} +- {std:.2f} over {row.get('n_strips', row['n'])} strips"
    if undefined:
        text += f" ({undefined} undefined, counted 0)"
    return text, mean, row.get("n_strips", row["n"])


def compare(rows: list[dict], plan: ReproducePlan) -> list[dict[str, Any]]:
    """One entry per published figure: claim, paper, measured (text and value), n."""
    table = []
    for figure in FIGURES:
        text, value, n = measure(figure, rows, plan)
        table.append({"key": figure.key, "claim": figure.claim, "paper": figure.paper, "paper_value": figure.value,
                      "measured": text, "measured_value": value, "n": n})
    total = plan.shape.total
    table.append({"key": "k_share", "claim": "heads steered (K)", "paper": "100 of 1,152 (8.7%)", "paper_value": 100,
                  "measured": f"{plan.k} of {total:,} ({plan.k / total:.1%})", "measured_value": plan.k, "n": None})
    return table


def format_text(table: list[dict]) -> str:
    """The comparison as a plain-text table for the terminal."""
    width = max(len(row["claim"]) for row in table)
    paper_width = max(len(row["paper"]) for row in table)
    lines = [f"{'claim':<{width}}  {'paper':<{paper_width}}  measured", "-" * (width + paper_width + 14)]
    lines += [f"{row['claim']:<{width}}  {row['paper']:<{paper_width}}  {row['measured']}" for row in table]
    return "\n".join(lines)
