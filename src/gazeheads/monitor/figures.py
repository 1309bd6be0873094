"""PNG plots of the monitor evaluation (read from monitor_summary.json's content)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..files import atomic_write  # noqa: E402

COLOURS = {"entropy": "#8c8c8c", "cliff": "#4c72b0", "shadow": "#55a868", "probe": "#dd8452"}
STYLES = {"entropy": "-", "cliff": "-", "shadow": "--", "probe": ":"}  # curves that coincide stay visible
FILES = {"strength": "monitor_auroc_strength.png", "conditions": "monitor_auroc_conditions.png",
         "onset": "monitor_onset.png"}


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    plt.close(fig)
    return path


def strength_curve(summary: dict, path: str | Path) -> Path:
    """AUROC against bias strength B (log scale) per detector, 95% intervals by strip, the 0.8 line."""
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for detector, curve in summary["strength_curves"].items():
        b = [e["strength"] for e in curve]
        colour = COLOURS.get(detector)
        ax.plot(b, [e["auroc"] for e in curve], marker="o", ls=STYLES.get(detector, "-"), color=colour,
                label=detector, ms=4)
        ax.fill_between(b, [e["ci_low"] for e in curve], [e["ci_high"] for e in curve], color=colour, alpha=0.15)
    ax.axhline(summary["auroc_goal"], color="k", ls=":", lw=1, label=f"AUROC {summary['auroc_goal']}")
    ax.set_xscale("log")
    ax.set_ylim(0.3, 1.02)
    ax.set_xlabel("bias strength B (boost_suppress, top-K gaze heads, prefill+decode)")
    ax.set_ylabel("AUROC vs unsteered narration")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("detection against strength (held-out strips)", fontsize=9)
    return _save(fig, path)


def condition_heatmap(summary: dict, path: str | Path) -> Path:
    """Conditions x detectors: AUROC against unsteered generations of the same prompt, annotated."""
    rows = summary["conditions"]
    detectors = summary["detectors"]
    data = np.array([[row["detectors"][d]["auroc"] for d in detectors] for row in rows], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(1.2 * len(detectors) + 4.2, 0.26 * len(rows) + 1.3))
    image = ax.imshow(data, aspect="auto", cmap="RdYlGn", vmin=0.5, vmax=1.0, interpolation="nearest")
    for (i, j), value in np.ndenumerate(data):
        ax.text(j, i, "-" if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=6.5)
    ax.set_xticks(range(len(detectors)), detectors, fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{r['condition']} ({r['changed_rate']:.0%} changed)" for r in rows], fontsize=6.5)
    ax.xaxis.tick_top()
    fig.colorbar(image, ax=ax, label="AUROC (per generation)")
    return _save(fig, path)


def onset_plot(summary: dict, path: str | Path) -> Path:
    """Share of generations flagged at each step when steering starts mid-generation (per-step thresholds)."""
    fig, ax = plt.subplots(figsize=(5.6, 3.2))
    for detector, delay in summary["onset_delay"].items():
        share = delay["flagged_share_by_step"]
        ax.step(range(len(share)), share, where="mid", color=COLOURS.get(detector), ls=STYLES.get(detector, "-"),
                lw=1.6, label=detector)
    ax.axvline(summary["onset_step"] - 0.5, color="#c44e52", ls="--", lw=1, label="steering starts")
    ax.set_xlabel("generation step")
    ax.set_ylabel("share of generations flagged")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("per-step detection after a mid-generation onset", fontsize=9)
    return _save(fig, path)


def draw_all(summary: dict, run_dir: str | Path) -> list[Path]:
    """Every monitor figure the summary has data for, in `run_dir`."""
    run_dir = Path(run_dir)
    written = []
    if summary["strength_curves"]:
        written.append(strength_curve(summary, run_dir / FILES["strength"]))
    if summary["conditions"]:
        written.append(condition_heatmap(summary, run_dir / FILES["conditions"]))
    if summary["onset_delay"]:
        written.append(onset_plot(summary, run_dir / FILES["onset"]))
    return written
