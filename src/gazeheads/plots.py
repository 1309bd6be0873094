"""PNG plots: gaze-score histogram, layer x head map, panel matrices, tracking staircases, top-K curve.

Every figure uses matplotlib's constrained layout and wraps long titles, so titles never
overlap tick labels or each other.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib
import matplotlib.patches

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

from .files import atomic_write  # noqa: E402
from .ranking import Ranking  # noqa: E402
from .tracking import Trace  # noqa: E402

COLOURS = {"gaze": "#4c72b0", "random": "#dd8452", "all": "#8c8c8c", "unsteered": "#8250df"}
CONDITION_LABELS = {"gaze": "top-K gaze heads", "random": "K random non-gaze heads", "all": "all heads",
                    "unsteered": "unsteered"}
TITLE_WIDTH = 60  # characters per title line


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def wrap(text: str, width: int = TITLE_WIDTH) -> str:
    """A title over as many lines as it needs (long unbroken names are cut where they must be)."""
    return "\n".join(textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)) or text


def display_name(model_id: str) -> str:
    """A model as people name it: a local folder's name rather than its full path."""
    if "/" in model_id and (model_id.startswith(("/", ".", "~")) or ":\\" in model_id):
        return Path(model_id).name or model_id
    return model_id


def head_name(layer: int, head: int) -> str:
    """'L1H2', the short name of layer 1, head 2 (both 0-based), as in the paper."""
    return f"L{layer}H{head}"


def score_histogram(ranking: Ranking, path: str | Path, top_k: int | None = None) -> Path:
    """Distribution of gaze scores over all heads, with chance (1/N) and the top-K cut marked."""
    scores = ranking.scores.reshape(-1)
    fig, ax = plt.subplots(figsize=(5.4, 3.3), layout="constrained")
    ax.hist(scores, bins=min(60, max(10, scores.size // 4)), range=(0, max(1.0, float(scores.max()))),
            color="#4c72b0")
    ax.set_yscale("log")
    ax.set_xlabel("gaze score (mean diagonal of the queried x attended panel matrix)")
    ax.set_ylabel("heads")
    chance = 1 / ranking.n_panels
    ax.axvline(chance, color="k", ls=":", lw=1.3, label=f"chance 1/{ranking.n_panels}: all attention on the "
                                                         "image, spread evenly")
    if top_k:
        cut = np.sort(scores)[-top_k]
        ax.axvline(cut, color="#c44e52", ls="--", label=f"top-{top_k} cut ({cut:.3f})")
    ax.legend(fontsize=7)
    ax.set_title(wrap(f"{display_name(ranking.model_id)}: {scores.size} heads, {ranking.n_strips} strips"),
                 fontsize=9)
    return _save(fig, path)


def score_map(ranking: Ranking, path: str | Path, top_k: int | None = None) -> Path:
    """Layer x head heat map of gaze scores; the top-K heads are outlined."""
    n_layers, n_heads = ranking.scores.shape
    fig, ax = plt.subplots(figsize=(max(4.2, n_heads * 0.24 + 2), max(3, n_layers * 0.2 + 1.3)),
                           layout="constrained")
    image = ax.imshow(ranking.scores, aspect="auto", cmap="magma", interpolation="nearest", vmin=0,
                      vmax=max(1e-9, float(ranking.scores.max())))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    step = max(1, n_heads // 16)
    ax.set_xticks(range(0, n_heads, step))
    ax.set_yticks(range(0, n_layers, max(1, n_layers // 18)))
    title = "gaze score per head"
    if top_k:
        for layer, head, _ in ranking.ordered()[:top_k]:
            ax.add_patch(matplotlib.patches.Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, ec="#00e5ff",
                                                      lw=1.8))
        title += f"; top-{top_k} heads outlined in cyan"
    ax.set_title(wrap(title), fontsize=9)
    fig.colorbar(image, ax=ax, label="gaze score")
    return _save(fig, path)


def panel_matrices(ranking: Ranking, path: str | Path, n_top: int = 4, n_low: int = 4) -> Path:
    """N x N matrices (queried x attended panel) of the top and the lowest-scoring heads, on one colour scale."""
    ordered = ranking.ordered()
    rows = [("top gaze heads", ordered[:n_top]), ("lowest-scoring heads", ordered[::-1][:n_low])]
    cols = max(n_top, n_low)
    picked = [h for _, heads in rows for h in heads]
    vmax = max(1e-9, max(float(ranking.matrices[l, h].max()) for l, h, _ in picked))
    fig, axes = plt.subplots(2, cols, figsize=(2.1 * cols + 1.2, 5.0), squeeze=False, layout="constrained")
    ticks = [str(k + 1) for k in range(ranking.n_panels)]
    image = None
    for r, (kind, heads) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(heads):
                ax.axis("off")
                continue
            layer, head, score = heads[c]
            image = ax.imshow(ranking.matrices[layer, head], cmap="viridis", vmin=0, vmax=vmax)
            ax.set_title(f"{head_name(layer, head)}, score {score:.3f}", fontsize=8)
            ax.set_xticks(range(ranking.n_panels), ticks, fontsize=6)
            ax.set_yticks(range(ranking.n_panels), ticks, fontsize=6)
            if c == 0:
                ax.set_ylabel(f"{kind}\nqueried panel", fontsize=8)
            if r == 1:
                ax.set_xlabel("attended panel", fontsize=8)
    fig.colorbar(image, ax=axes, label="attention mass on the panel (mean over strips)", shrink=0.8)
    return _save(fig, path)


# -- tracking -------------------------------------------------------------------------------

_BPE_SPACES = {"\u0120": " ", "\u2581": " ", "\u010a": "\n"}


def token_text(token: str) -> str:
    """The text a tokenizer's token stands for ('Ġpanel' and '▁panel' -> ' panel')."""
    for mark, text in _BPE_SPACES.items():
        token = token.replace(mark, text)
    return token


_PANEL_MARK = re.compile(r"panel[\s*_]*(\d+)[\s*_]*:", re.IGNORECASE)


def narration_transitions(tokens: Sequence[str], n_panels: int, *,
                          separator: str | None = None) -> list[tuple[int, int]]:
    """Where a narration moves to each panel: (token index, panel number), in token order.

    Without `separator`: the tokens where the text "Panel k:" begins (k = 1..n_panels, first
    time each), as a real model narrates. With it: panel 1 at token 0 and panel k + 1 after
    the k-th token that is the separator, as in the bundled model's "caption . caption .".
    """
    pieces = [token_text(t) for t in tokens]
    if separator is not None:
        found, panel = ([(0, 1)] if pieces else []), 1
        for i, piece in enumerate(pieces):
            if piece.strip() == separator and panel < n_panels and i + 1 < len(pieces):
                panel += 1
                found.append((i + 1, panel))
        return found
    starts = np.cumsum([0] + [len(p) for p in pieces])
    found, seen = [], set()
    for match in _PANEL_MARK.finditer("".join(pieces)):
        panel = int(match.group(1))
        if 1 <= panel <= n_panels and panel not in seen:
            seen.add(panel)
            found.append((int(np.searchsorted(starts, match.start(), side="right")) - 1, panel))
    return sorted(found)


def _token_ticks(ax, tokens: Sequence[str] | None, n_steps: int, limit: int) -> None:
    if tokens is not None and len(tokens) == n_steps and n_steps <= limit:
        ax.set_xticks(range(n_steps), [token_text(t).strip() or repr(token_text(t)) for t in tokens], rotation=90,
                      fontsize=6)


def _mark_transitions(ax, transitions: Sequence[tuple[int, int]], n_steps: int) -> None:
    """Dashed lines where the narration moves on, the panel's number on top, and a red line at that panel
    until the next transition (where a head that follows the narration would look)."""
    ordered = sorted(transitions)
    for j, (step, panel) in enumerate(ordered):
        end = ordered[j + 1][0] if j + 1 < len(ordered) else n_steps
        if step > 0:
            ax.axvline(step - 0.5, color="#c44e52", ls="--", lw=0.9)
        ax.hlines(panel - 1, step - 0.5, end - 0.5, color="#c44e52", lw=1.2, alpha=0.8)
        ax.annotate(f"P{panel}", (step - 0.5, 1.0), xycoords=("data", "axes fraction"), xytext=(2, 2),
                    textcoords="offset points", fontsize=7, color="#c44e52", va="bottom")


def tracking_staircase(
    trace: Trace,
    path: str | Path,
    *,
    row: int = 0,
    tokens: Sequence[str] | None = None,
    scheduled: Sequence[int] | None = None,
    transitions: Sequence[tuple[int, int]] = (),
    title: str = "",
) -> Path:
    """Step x region heat map of normalised attention; the scheduled target (if any) is outlined per step."""
    data = trace.normalised[row].T  # (regions, steps)
    fig, ax = plt.subplots(figsize=(max(5, data.shape[1] * 0.25 + 2), 0.45 * data.shape[0] + 2), layout="constrained")
    image = ax.imshow(data, aspect="auto", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(data.shape[0]), [region_label(r) for r in trace.regions[row]], fontsize=7)
    ax.set_xlabel("generated token")
    _token_ticks(ax, tokens, data.shape[1], 80)
    if scheduled is not None:
        for step, region in enumerate(scheduled):
            ax.add_patch(matplotlib.patches.Rectangle((step - 0.5, region - 0.5), 1, 1, fill=False, ec="#c44e52",
                                                      lw=1.0, label="scheduled target" if step == 0 else None))
        fig.legend(loc="outside lower left", fontsize=7, frameon=False)
    _mark_transitions(ax, transitions, data.shape[1])
    fig.colorbar(image, ax=ax, label="share of image attention")
    ax.set_title(wrap(title or "gaze-head attention per region", 90), fontsize=9, pad=14 if transitions else 6)
    return _save(fig, path)


def tracking_pair(gaze: Trace, control: Trace, path: str | Path, *, tokens: Sequence[str] | None = None,
                  labels: tuple[str, str] = ("gaze heads", "control heads"), title: str = "",
                  transitions: Sequence[tuple[int, int]] = ()) -> Path:
    """Two staircases of one generation on one colour scale: gaze heads beside control heads, with the
    narration's transitions between panels marked on both."""
    n_steps = gaze.normalised.shape[1]
    fig, axes = plt.subplots(1, 2, figsize=(2 * max(4.5, n_steps * 0.2 + 2), 0.45 * gaze.normalised.shape[2] + 2.4),
                             squeeze=False, sharey=True, layout="constrained")
    image = None
    for ax, trace, label in zip(axes[0], (gaze, control), labels):
        data = trace.normalised[0].T
        image = ax.imshow(data, aspect="auto", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        ax.set_yticks(range(data.shape[0]), [region_label(r) for r in trace.regions[0]], fontsize=7)
        ax.set_xlabel("generated token")
        _token_ticks(ax, tokens, data.shape[1], 60)
        _mark_transitions(ax, transitions, data.shape[1])
        ax.set_title(wrap(label, 45), fontsize=9, pad=14 if transitions else 6)
    weighting = "value-weighted" if gaze.value_weighted else "raw"
    fig.colorbar(image, ax=list(axes[0]), label=f"share of image attention ({weighting})")
    fig.suptitle(wrap(title or "where the heads look while the model narrates", 110), fontsize=9)
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


# -- evaluation -----------------------------------------------------------------------------


def topk_curve(rows: list[dict], path: str | Path, *, unsteered: float | None = None) -> Path:
    """Accuracy against K for gaze and random heads, ticks at the K values measured."""
    fig, ax = plt.subplots(figsize=(5.4, 3.3), layout="constrained")
    ks_all: set[int] = set()
    for condition in ("gaze", "random"):
        sel = sorted((r for r in rows if r["condition"] == condition), key=lambda r: r["k"])
        if not sel:
            continue
        ks = [r["k"] for r in sel]
        ks_all.update(ks)
        ax.plot(ks, [r["accuracy"] for r in sel], "o-", color=COLOURS[condition], label=CONDITION_LABELS[condition])
        ax.fill_between(ks, [r["ci_low"] for r in sel], [r["ci_high"] for r in sel], color=COLOURS[condition],
                        alpha=0.2)
    if len(ks_all) > 1 and max(ks_all) / max(1, min(ks_all)) >= 8:
        ax.set_xscale("log")
    ticks = sorted(ks_all)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(k) for k in ticks], fontsize=7, rotation=90 if len(ticks) > 10 else 0)
    ax.set_xlabel("K heads steered")
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_ylim(0, 1.05)
    chance = [r["chance"] for r in rows if "chance" in r]
    if chance:
        ax.axhline(chance[0], color="k", ls=":", lw=1.2, label=f"chance ({chance[0]:.3f})")
    if unsteered is not None:
        ax.axhline(unsteered, color=COLOURS["unsteered"], ls="--", lw=1.2, label="unsteered")
    ax.legend(fontsize=7)
    return _save(fig, path)


def dynamic_schedules(records: list[dict], path: str | Path, n_strips: int = 4,
                      labels: dict[str, str] | None = None) -> Path:
    """Scheduled vs judged panel per segment for a few strips and each condition (`labels`: legend names)."""
    labels = {**CONDITION_LABELS, **(labels or {})}
    strips = sorted({r["strip"] for r in records})[:n_strips]
    order = list(COLOURS)
    conditions = sorted({r["condition"] for r in records}, key=lambda c: order.index(c) if c in order else 9)
    fig, axes = plt.subplots(1, len(strips), figsize=(3.1 * len(strips) + 0.4, 3.2), squeeze=False, sharey=True,
                             layout="constrained")
    offsets = {c: (i - (len(conditions) - 1) / 2) * 0.12 for i, c in enumerate(conditions)}
    for ax, strip in zip(axes[0], strips):
        first, n_segments = True, 0
        for condition in conditions:
            rec = next((r for r in records if r["strip"] == strip and r["condition"] == condition), None)
            if rec is None:
                continue
            if first:
                ax.step(range(len(rec["schedule"])), rec["schedule"], where="mid", color="k", lw=2,
                        label="schedule")
                first, n_segments = False, len(rec["schedule"])
            judged = [j if j is not None else np.nan for j in rec["judged"]]
            ax.plot(np.arange(len(judged)) + offsets[condition], judged, "o", color=COLOURS.get(condition, "#55a868"),
                    label=labels.get(condition, condition), ms=5)
        ax.set_title(wrap(strip, 28), fontsize=8)
        ax.set_xlabel("segment")
        ax.set_xticks(range(n_segments))
    axes[0][0].set_ylabel("panel (judged)")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=len(names), fontsize=7, frameon=False)
    return _save(fig, path)
