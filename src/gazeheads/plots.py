"""PNG plots: gaze-score histogram, layer x head map, panel matrices, tracking staircase."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib
import matplotlib.patches

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .files import atomic_write  # noqa: E402
from .ranking import Ranking  # noqa: E402
from .tracking import Trace  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def score_histogram(ranking: Ranking, path: str | Path, top_k: int | None = None) -> Path:
    """Distribution of gaze scores over all heads, with chance (1/N) and the top-K cut marked."""
    scores = ranking.scores.reshape(-1)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(scores, bins=min(60, max(10, scores.size // 4)), color="#4c72b0")
    ax.set_yscale("log")
    ax.set_xlabel("gaze score (mean diagonal of the panel matrix)")
    ax.set_ylabel("heads")
    if top_k:
        cut = np.sort(scores)[-top_k]
        ax.axvline(cut, color="#c44e52", ls="--", label=f"top-{top_k} cut")
        ax.legend()
    ax.set_title(f"{ranking.model_id}: {scores.size} heads, {ranking.n_strips} strips", fontsize=9)
    return _save(fig, path)


def score_map(ranking: Ranking, path: str | Path, top_k: int | None = None) -> Path:
    """Layer x head heat map of gaze scores; the top-K heads are outlined."""
    fig, ax = plt.subplots(figsize=(max(4, ranking.shape.n_heads * 0.22 + 2), max(3, ranking.shape.n_layers * 0.18 + 1)))
    image = ax.imshow(ranking.scores, aspect="auto", cmap="magma", interpolation="nearest", vmin=0)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    if top_k:
        for layer, head, _ in ranking.ordered()[:top_k]:
            ax.add_patch(matplotlib.patches.Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, ec="#2ca02c", lw=1.5))
        ax.set_title(f"gaze score per head; top-{top_k} outlined in green", fontsize=9)
    fig.colorbar(image, ax=ax, label="gaze score")
    return _save(fig, path)


def panel_matrices(ranking: Ranking, path: str | Path, n_top: int = 4, n_low: int = 4) -> Path:
    """N x N matrices (queried x attended panel) of the top heads and of low-scoring heads."""
    ordered = ranking.ordered()
    picks = [("gaze", h) for h in ordered[:n_top]] + [("non-gaze", h) for h in ordered[::-1][:n_low]]
    cols = max(n_top, n_low)
    fig, axes = plt.subplots(2, cols, figsize=(2.2 * cols, 4.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (kind, (layer, head, score)) in enumerate(picks):
        ax = axes[0 if kind == "gaze" else 1][i if kind == "gaze" else i - n_top]
        ax.axis("on")
        ax.imshow(ranking.matrices[layer, head], cmap="viridis", vmin=0)
        ax.set_title(f"{kind} L{layer}H{head}\nscore {score:.3f}", fontsize=8)
        ax.set_xticks(range(ranking.n_panels), [str(k + 1) for k in range(ranking.n_panels)], fontsize=6)
        ax.set_yticks(range(ranking.n_panels), [str(k + 1) for k in range(ranking.n_panels)], fontsize=6)
    fig.supxlabel("attended panel", fontsize=8)
    fig.supylabel("queried panel", fontsize=8)
    return _save(fig, path)


def tracking_staircase(
    trace: Trace,
    path: str | Path,
    *,
    row: int = 0,
    tokens: Sequence[str] | None = None,
    scheduled: Sequence[int] | None = None,
    title: str = "",
) -> Path:
    """Step x region heat map of normalised attention; dots mark a scheduled target per step."""
    data = trace.normalised[row].T  # (regions, steps)
    fig, ax = plt.subplots(figsize=(max(5, data.shape[1] * 0.25 + 2), 0.45 * data.shape[0] + 1.6))
    image = ax.imshow(data, aspect="auto", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(data.shape[0]), [region_label(r) for r in trace.regions[row]], fontsize=7)
    ax.set_xlabel("generated token")
    if tokens is not None and len(tokens) == data.shape[1] and len(tokens) <= 80:
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=6)
    if scheduled is not None:
        ax.plot(range(len(scheduled)), scheduled, "o", ms=3, color="#c44e52", label="scheduled target")
        ax.legend(loc="upper right", fontsize=7)
    fig.colorbar(image, ax=ax, label="share of image attention")
    ax.set_title(title or "gaze-head attention per region", fontsize=9)
    return _save(fig, path)


def tracking_pair(gaze: Trace, control: Trace, path: str | Path, *, tokens: Sequence[str] | None = None,
                  labels: tuple[str, str] = ("gaze heads", "control heads"), title: str = "") -> Path:
    """Two staircases of one generation on one colour scale: gaze heads beside control heads."""
    n_steps = gaze.normalised.shape[1]
    fig, axes = plt.subplots(1, 2, figsize=(2 * max(4.5, n_steps * 0.2 + 2), 0.45 * gaze.normalised.shape[2] + 2),
                             squeeze=False, sharey=True)
    image = None
    for ax, trace, label in zip(axes[0], (gaze, control), labels):
        data = trace.normalised[0].T
        image = ax.imshow(data, aspect="auto", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        ax.set_yticks(range(data.shape[0]), [region_label(r) for r in trace.regions[0]], fontsize=7)
        ax.set_xlabel("generated token")
        if tokens is not None and len(tokens) == data.shape[1] and len(tokens) <= 60:
            ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=6)
        ax.set_title(label, fontsize=9)
    fig.colorbar(image, ax=list(axes[0]), label="share of image attention")
    fig.suptitle(title or "where the heads look while the model narrates", fontsize=9)
    return _save(fig, path)


def scheduled_regions(target, n_steps: int) -> list[int] | None:
    """Per generation step, the 0-based index of the scheduled panel (None for box targets)."""
    from .regions import Panel, Schedule

    entries = target.entries if isinstance(target, Schedule) else [(0, target)]
    if not all(isinstance(region, Panel) for _, region in entries):
        return None
    out = []
    for step in range(n_steps):
        active = [region for start, region in entries if start <= step][-1]
        out.append(active.index - 1)
    return out


def region_label(region) -> str:
    """'panel 3' or 'box x0,y0,x1,y1'."""
    name = type(region).__name__
    if name == "Panel":
        return f"panel {region.index}"
    return f"box {region.x0:.0f},{region.y0:.0f},{region.x1:.0f},{region.y1:.0f}"


_COLOURS = {"gaze": "#4c72b0", "random": "#dd8452", "all": "#8c8c8c"}


def accuracy_bars(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Accuracy with 95% intervals per condition (and size class if present), chance as a line."""
    labels = [f"{r['condition']}\nK={r['k']}" + (f"\n{r['size_class']}" if "size_class" in r else "") for r in rows]
    means = np.array([r["accuracy"] for r in rows])
    errors = np.array([[r["accuracy"] - r["ci_low"] for r in rows], [r["ci_high"] - r["accuracy"] for r in rows]])
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(rows) + 1), 3.4))
    ax.bar(range(len(rows)), means, yerr=errors, capsize=4,
           color=[_COLOURS.get(r["condition"], "#55a868") for r in rows])
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (95% bootstrap CI)")
    chance = [r["chance"] for r in rows if "chance" in r]
    if chance:
        ax.axhline(chance[0], color="k", ls=":", lw=1, label=f"chance {chance[0]:.3f}")
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def topk_curve(rows: list[dict], path: str | Path) -> Path:
    """Accuracy against K for gaze and random heads."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for condition in ("gaze", "random"):
        sel = sorted((r for r in rows if r["condition"] == condition), key=lambda r: r["k"])
        if not sel:
            continue
        ks = [r["k"] for r in sel]
        ax.plot(ks, [r["accuracy"] for r in sel], "o-", color=_COLOURS[condition], label=condition)
        ax.fill_between(ks, [r["ci_low"] for r in sel], [r["ci_high"] for r in sel], color=_COLOURS[condition],
                        alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("K heads steered")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    chance = [r["chance"] for r in rows if "chance" in r]
    if chance:
        ax.axhline(chance[0], color="k", ls=":", lw=1, label="chance")
    ax.legend(fontsize=7)
    return _save(fig, path)


def dynamic_schedules(records: list[dict], path: str | Path, n_strips: int = 4) -> Path:
    """Scheduled vs judged panel per segment for a few strips and each condition."""
    strips = sorted({r["strip"] for r in records})[:n_strips]
    conditions = sorted({r["condition"] for r in records}, key=lambda c: list(_COLOURS).index(c) if c in _COLOURS else 9)
    fig, axes = plt.subplots(1, len(strips), figsize=(3.2 * len(strips), 3), squeeze=False)
    for ax, strip in zip(axes[0], strips):
        for condition in conditions:
            rec = next((r for r in records if r["strip"] == strip and r["condition"] == condition), None)
            if rec is None:
                continue
            if condition == conditions[0]:
                ax.step(range(len(rec["schedule"])), rec["schedule"], where="mid", color="k", lw=2, label="schedule")
            judged = [j if j is not None else np.nan for j in rec["judged"]]
            ax.plot(range(len(judged)), judged, "o", color=_COLOURS.get(condition, "#55a868"), label=condition, ms=5)
        ax.set_title(strip[:24], fontsize=8)
        ax.set_xlabel("segment")
        ax.set_ylabel("panel")
    axes[0][0].legend(fontsize=6)
    return _save(fig, path)
