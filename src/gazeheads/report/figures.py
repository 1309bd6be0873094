"""The run's steering figures: one grouped accuracy figure, per-panel accuracy, what the unsteered
model describes, boxes by object size. Each returns a Figure whose caption says what it shows."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .. import plots
from ..evaluation.summary import baseline_verdicts, described_panels
from .page import Figure
from .run import RunData, percent

STEERED = ("gaze", "random", "all")
UNSTEERED_STYLE = dict(color=plots.COLOURS["unsteered"], ls="--", lw=1.4, zorder=3)
CHANCE_STYLE = dict(color="#000000", ls=":", lw=1.6, zorder=4)


def _label(data: RunData, condition: str) -> str:
    """A head set's legend entry with its K: 'top-4 gaze heads', 'all 48 heads'."""
    if condition == "unsteered":
        return "unsteered"
    return data.condition_name(condition, data.n_heads() if condition == "all" else data.k(), short=True)


def _legend(fig, ax) -> None:
    """One legend below the plot: head sets first, then the lines."""
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i] in ("chance", "unsteered"))
    fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside lower center",
               ncols=len(labels), fontsize=7, frameon=False)


def _value_label(ax, x: float, value: float, top: float) -> None:
    """The value in percent just above the bar (so a zero-height bar still reads 0)."""
    ax.annotate(f"{100 * value:.0f}", (x, top), xytext=(0, 2), textcoords="offset points", ha="center",
                va="bottom", fontsize=7)


def _first(seen: set, label: str) -> str | None:
    """`label` the first time it is asked for (one legend entry per kind), else None."""
    if label in seen:
        return None
    seen.add(label)
    return label


def _condition_bars(ax, data: RunData, g: int, rows: dict[str, dict], conditions: list[str], seen: set,
                    junk_ax=None) -> None:
    """Group `g`: one bar per head set with its 95% interval and value; junk rates on `junk_ax`."""
    width = 0.8 / len(conditions)
    for i, condition in enumerate(conditions):
        row = rows.get(condition)
        if row is None:
            continue
        x = g + (i - (len(conditions) - 1) / 2) * width
        err = [[row["accuracy"] - row["ci_low"]], [row["ci_high"] - row["accuracy"]]]
        ax.bar(x, row["accuracy"], width * 0.92, yerr=err, capsize=3, color=plots.COLOURS[condition],
               label=_label(data, condition) if _first(seen, condition) else None, error_kw={"lw": 1})
        _value_label(ax, x, row["accuracy"], row["ci_high"])
        if junk_ax is not None:
            junk_ax.bar(x, row["junk_rate"], width * 0.92, color=plots.COLOURS[condition], alpha=0.55, hatch="///",
                        edgecolor=plots.COLOURS[condition])
            _value_label(junk_ax, x, row["junk_rate"], row["junk_rate"])


def _lines(ax, g: int, seen: set, chance: float | None, unsteered: dict | None) -> None:
    """Chance and the unsteered answers' accuracy as short lines across group `g`."""
    if chance is not None:
        ax.hlines(chance, g - 0.45, g + 0.45, label=_first(seen, "chance"), **CHANCE_STYLE)
    if unsteered is not None:
        ax.hlines(unsteered["accuracy"], g - 0.45, g + 0.45, label=_first(seen, "unsteered"), **UNSTEERED_STYLE)


def _percent_axis(ax, top: float = 1.12) -> None:
    ax.set_ylim(0, top)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1], ["0%", "25%", "50%", "75%", "100%"])


def accuracy_overview(data: RunData) -> Figure | None:
    """Accuracy per protocol and head set with intervals, chance and unsteered lines; junk below."""
    groups = [(p, "all" if p == "coco" else None) for p in data.protocols() if p != "topk"]
    groups = [(p, s) for p, s in groups if data.rows_of(p, s)]
    if not groups:
        return None
    conditions = [c for c in STEERED if any(r["condition"] == c for p, s in groups for r in data.rows_of(p, s))]
    fig, (ax, junk_ax) = plots.plt.subplots(
        2, 1, figsize=(max(5.5, 2.1 * len(groups) + 2.2), 4.8), sharex=True, layout="constrained",
        gridspec_kw={"height_ratios": [3, 1.1]})
    seen: set = set()
    for g, (protocol, size) in enumerate(groups):
        rows = {r["condition"]: r for r in data.rows_of(protocol, size)}
        _condition_bars(ax, data, g, rows, conditions, seen, junk_ax)
        _lines(ax, g, seen, data.chance(protocol, size), data.unsteered_of(protocol, size))
    _percent_axis(ax)
    ax.set_ylabel("accuracy (95% CI)")
    _legend(fig, ax)
    junk_ax.set_ylim(0, 1.25)
    junk_ax.set_yticks([0, 0.5, 1], ["0%", "50%", "100%"])
    junk_ax.set_ylabel("junk")
    junk_ax.set_xticks(range(len(groups)), [_group_label(data, p, s) for p, s in groups], fontsize=8)
    ax.set_title("Steered answers that describe the target", fontsize=10)
    path = plots._save(fig, data.run_dir / "accuracy.png")
    return Figure(path, _overview_caption(data, groups))


def _group_label(data: RunData, protocol: str, size: str | None) -> str:
    name = data.protocol_name(protocol)
    if protocol == "dynamic":
        name += "\n(per segment)"
    elif size == "all":
        name += "\n(all sizes)"
    return name


def _amount(data: RunData, protocol: str, size: str | None = None) -> str:
    rows = data.rows_of(protocol, size)
    if not rows:
        return ""
    n, clusters = rows[0]["n"], rows[0]["n_clusters"]
    if protocol == "coco":
        return f"{n} objects in {clusters} scenes" if data.synthetic() else f"{n} objects in {clusters} images"
    if protocol == "dynamic":
        return f"{clusters} strips, {n} segments"
    return f"{clusters} strips x {n // max(clusters, 1)} targets = {n} answers"


def _overview_caption(data: RunData, groups) -> str:
    amounts = "; ".join(f"{data.protocol_name(p).lower()}: {_amount(data, p, s)}" for p, s in groups)
    k = data.k()
    heads = ", ".join(data.condition_name(c, k if c != "all" else data.n_heads())
                      for c in STEERED if any(r["condition"] == c for r in data.rows))
    boxes = any(p == "coco" for p, _ in groups)
    chance = "1/N for strips of N panels" + ("; for boxes, naming a random one of the kinds of object in the image"
                                             if boxes and data.chance("coco") is not None else "")
    return (f"Share of steered answers that describe the steered-to target, per protocol and head set ({heads}); "
            f"bars give the accuracy in percent with 95% bootstrap intervals that resample whole strips"
            f"{' (scenes)' if boxes else ''}. Dotted: chance ({chance}). Dashed: the unsteered answers scored "
            f"against the same targets (what an intervention that changes nothing scores). Lower panel: share of "
            f"junk answers (empty, repetitive or describing nothing), which count as misses. Data: {amounts}.")


def per_panel(data: RunData) -> Figure | None:
    """Accuracy per target panel for each head set and the unsteered answers (static and dynamic)."""
    panels: dict[str, dict[str, dict[str, float]]] = {}
    for protocol in data.protocols():
        if protocol in ("coco", "topk"):
            continue
        table = {r["condition"]: r["per_panel"] for r in data.rows_of(protocol) if "per_panel" in r}
        if protocol == "dynamic":
            table = _dynamic_per_panel(data)
        unsteered = data.unsteered_of(protocol)
        if unsteered and "per_panel" in unsteered:
            table["unsteered"] = unsteered["per_panel"]
        if table:
            panels[protocol] = table
    if not panels:
        return None
    fig, axes = plots.plt.subplots(1, len(panels), figsize=(3.6 * len(panels) + 0.6, 3.1), sharey=True,
                                   squeeze=False, layout="constrained")
    for ax, (protocol, table) in zip(axes[0], panels.items()):
        conditions = [c for c in (*STEERED, "unsteered") if c in table]
        targets = sorted({t for values in table.values() for t in values}, key=int)
        width = 0.84 / len(conditions)
        for i, condition in enumerate(conditions):
            xs = np.arange(len(targets)) + (i - (len(conditions) - 1) / 2) * width
            values = [table[condition].get(t, np.nan) for t in targets]
            style = {"color": "#ffffff", "edgecolor": UNSTEERED_STYLE["color"], "hatch": "////"} \
                if condition == "unsteered" else {"color": plots.COLOURS[condition]}
            ax.bar(xs, values, width * 0.95, label=_label(data, condition), **style)
        ax.set_xticks(range(len(targets)), targets)
        ax.set_xlabel("target panel" if protocol != "dynamic" else "scheduled panel")
        ax.set_title(data.protocol_name(protocol), fontsize=9)
        _percent_axis(ax, 1.05)
    axes[0][0].set_ylabel("accuracy")
    _legend(fig, axes[0][0])
    path = plots._save(fig, data.run_dir / "accuracy_per_panel.png")
    amounts = "; ".join(f"{data.protocol_name(p).lower()}: {_amount(data, p)}" for p in panels)
    return Figure(path, "Accuracy per target panel, for each head set and for the unsteered answers (hatched). "
                        "A head set that leaves the answer where it was scores on one panel only: the panel the "
                        f"unsteered model describes. Data: {amounts}.")


def _dynamic_per_panel(data: RunData) -> dict[str, dict[str, float]]:
    hits: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in data.records_of("dynamic"):
        if record["condition"] in STEERED:
            for target, hit in zip(record["schedule"], record["segment_hits"]):
                hits[record["condition"]][str(target)].append(float(hit))
    return {c: {t: float(np.mean(v)) for t, v in sorted(by.items(), key=lambda kv: int(kv[0]))}
            for c, by in hits.items()}


def unsteered_panels(data: RunData) -> Figure | None:
    """Which panel the unsteered answer describes: share of strips per panel; per segment for dynamic narration."""
    verdicts = baseline_verdicts(data.records)
    protocols = [p for p in data.protocols() if p not in ("coco", "topk") and any(k[0] == p for k in verdicts)]
    if not protocols:
        return None
    fig, axes = plots.plt.subplots(1, len(protocols), figsize=(3.5 * len(protocols) + 0.6, 3.0), squeeze=False,
                                   layout="constrained")
    sentences = []
    for ax, protocol in zip(axes[0], protocols):
        found = [v for (p, _), v in verdicts.items() if p == protocol]
        n_panels = _n_panels(data, protocol)
        if protocol == "dynamic":
            counts = np.zeros((n_panels, n_panels))
            for segments in found:
                for i, verdict in enumerate(segments[:n_panels]):
                    choice = (verdict or {}).get("choice")
                    if choice and not verdict.get("junk") and 1 <= choice <= n_panels:
                        counts[choice - 1, i] += 1
            shares = counts / np.maximum(counts.sum(0, keepdims=True), 1)  # of the placed segments at each position
            image = ax.imshow(shares, cmap="Greys", vmin=0, vmax=1, origin="lower")
            ticks = [str(i + 1) for i in range(n_panels)]
            ax.set_xticks(range(n_panels), ticks)
            ax.set_yticks(range(n_panels), ticks)
            ax.set_xlabel("segment of the narration")
            ax.set_ylabel("panel it describes")
            fig.colorbar(image, ax=ax, label="share of placed segments", shrink=0.85)
            in_order = np.trace(counts) / max(counts.sum(), 1)
            sentences.append(f"{data.protocol_name(protocol).lower()}: {percent(in_order, 0)} of the "
                             f"{int(counts.sum())} placed segments (of {len(found) * n_panels}) describe the panel "
                             f"in reading order")
        else:
            labels = [str(i + 1) for i in range(n_panels)] + ["junk", "not placed"]
            counts = {**dict.fromkeys(labels, 0), **described_panels(found)}
            shares = [counts[label] / max(len(found), 1) for label in labels]
            colours = ["#4c72b0"] * n_panels + ["#6e7781", "#d0d7de"]
            ax.bar(range(len(labels)), shares, color=colours)
            ax.set_xticks(range(len(labels)), [label.replace(" ", "\n") for label in labels], fontsize=7)
            ax.set_xlabel("panel the unsteered answer describes")
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("share of strips")
            top = max(range(n_panels), key=lambda i: counts[str(i + 1)]) if n_panels else 0
            sentences.append(f"{data.protocol_name(protocol).lower()}: panel {top + 1} in {counts[str(top + 1)]} of "
                             f"{len(found)} strips")
        ax.set_title(data.protocol_name(protocol), fontsize=9)
    path = plots._save(fig, data.run_dir / "unsteered_panels.png")
    return Figure(path, "What the model describes without steering, one unsteered answer per strip: "
                        + "; ".join(sentences) + ". An unsteered answer is placed by the judge's verdict on an "
                        "identical steered answer of the same strip; \"not placed\" where no steered answer "
                        "repeated it.")


def _n_panels(data: RunData, protocol: str) -> int:
    return max((r.get("n_panels", 0) for r in data.records_of(protocol)), default=0) or 6


def boxes_by_size(data: RunData) -> Figure | None:
    """Box steering accuracy per object size class, with the unsteered answers as a dashed line."""
    sizes = [s for s in ("small", "medium", "large", "all") if data.rows_of("coco", s)]
    if not sizes:
        return None
    conditions = [c for c in STEERED if any(r["condition"] == c for r in data.rows_of("coco", "all"))]
    fig, ax = plots.plt.subplots(figsize=(1.5 * len(sizes) + 2.4, 3.2), layout="constrained")
    seen: set = set()
    for g, size in enumerate(sizes):
        _condition_bars(ax, data, g, {r["condition"]: r for r in data.rows_of("coco", size)}, conditions, seen)
        _lines(ax, g, seen, data.chance("coco", size), data.unsteered_of("coco", size))
    n = {s: data.rows_of("coco", s)[0]["n"] for s in sizes}
    ax.set_xticks(range(len(sizes)), [f"{'all sizes' if s == 'all' else s}\n({n[s]} objects)" for s in sizes],
                  fontsize=8)
    _percent_axis(ax)
    ax.set_ylabel("answer names the boxed object")
    _legend(fig, ax)
    path = plots._save(fig, data.run_dir / "boxes_by_size.png")
    return Figure(path, f"Steering to one object's box: share of answers that name the boxed object, per object "
                        f"size class (small < 32x32 px, medium < 96x96 px, large otherwise) with 95% bootstrap "
                        f"intervals over images. Dashed: the unsteered answer scored against the same objects"
                        + ("; dotted: chance, naming a random one of the kinds of object in the image" if
                           data.box_chance("all") is not None else "") + ". "
                        f"Data: {_amount(data, 'coco', 'all')}.")
