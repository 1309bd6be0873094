"""Write the steering results of a `gazeheads run` (and a top-K sweep) into a tiny model's card.

    gazeheads run --name card                      # on the freshly trained, bundled model
    python -m gazeheads.tiny.card runs/card        # adds/replaces the card's steering section
    gazeheads eval topk --ranking runs/card/ranking.json --ks 1,2,4,... --out runs/card-topk ...
    python -m gazeheads.tiny.card runs/card --topk runs/card-topk   # and the top-K curve section

The card written by `gazeheads.tiny.train` holds the recipe and the unsteered accuracies; this
adds gaze heads, steering and box-steering figures measured by the project's own tools, so
every number in the card comes from a command anyone can rerun.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..evaluation.protocols import protocol
from ..files import write_text
from ..presence import ranking_presence
from ..ranking import Ranking
from . import model_path

SECTION = "## Gaze heads and steering, measured by `gazeheads run`"
TOPK_SECTION = "## Top-K curve, measured by `gazeheads eval topk`"
PROTOCOL_NAMES = {
    "narration": "ambiguous question (`prompts.NARRATION_QUESTION`)",
    "vqa": "VQA question (`prompts.VQA_QUESTION`)",
    "dynamic": "dynamic narration (target switched every caption, scrambled order)",
}


def _pct(row: dict | None) -> str:
    if row is None:
        return "-"
    return f"{100 * row['accuracy']:.1f}% [{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"


def _find(rows: list[dict], protocol: str, condition: str, size: str | None = None) -> dict | None:
    for row in rows:
        if row["protocol"] == protocol and row["condition"] == condition and row.get("size_class") == size:
            return row
    return None


def _ratio(a: dict | None, b: dict | None) -> str:
    if a is None or b is None or b["accuracy"] == 0:
        return "-"
    return f"{a['accuracy'] / b['accuracy']:.2f}x"


def _steering(settings: dict) -> str:
    """How each protocol steered, from the run's settings (runs before 0.2 did not record it)."""
    used = settings.get("steering")
    if not used:
        return "B = 10000, boost_suppress, prefill and decode"
    return "; ".join(f"{protocol} {text}" for protocol, text in used.items())


def steering_section(run_dir: Path) -> str:
    """The card section for the run in `run_dir` (summary.json and ranking.json)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    settings, rows = summary["settings"], summary["results"]
    ranking = Ranking.load(run_dir / "ranking.json")
    k = settings["k"]
    percentile = settings["control_percentile"]
    top = ", ".join(f"L{layer}H{head} {score:.2f}" for layer, head, score in ranking.ordered()[:10])
    gaze = [list(h) for h in ranking.top(k)]
    control = [list(h) for h in ranking.random_control(k, seed=settings.get("seed", 0), percentile=percentile)]
    presence = ranking_presence(ranking, k)
    lines = [
        SECTION,
        "",
        "`gazeheads run` on this model (held-out strips and scenes; ground-truth judge; greedy decoding; "
        f"steering: {_steering(settings)}). 95% bootstrap intervals (whole strips, or scenes, resampled) in "
        "brackets.",
        "",
        f"* **Discovery** (docs/method.md) on {settings['discover_strips']} strips (seeds 300000..): "
        f"top-10 heads by gaze score: {top}; median score {float(np.median(ranking.scores)):.3f}.",
        f"* **Presence test** (`gazeheads presence`: mean score of the top {presence.k} heads against "
        f"{presence.n_permutations} permutations of the queried panels within each strip): observed "
        f"{presence.observed:.3f}, null {presence.null_mean:.3f} +- {presence.null_std:.3f}, effect size "
        f"{presence.effect_size:.1f} null SDs, p = {presence.p_value:.4f}: gaze heads "
        f"{'present' if presence.present else 'not shown'} at alpha {presence.alpha:g}.",
        f"* Steered: top-{k} gaze heads {gaze} ({100 * k / ranking.shape.total:.1f}% of {ranking.shape.total}); "
        f"control: {k} random heads at or below the {percentile:g}th score percentile {control} (seed "
        f"{settings.get('seed', 0)}).",
        "",
        f"Strips ({settings['eval_strips']} strips x 6 target panels, seeds 100000..; accuracy = the answer is "
        "the target panel's caption, target 1 included; junk = the answer matches no panel):",
        "",
        f"| protocol | gaze (K={k}) | random (K={k}) | all {ranking.shape.total} heads |",
        "| --- | --- | --- | --- |",
    ]
    for protocol, name in PROTOCOL_NAMES.items():
        cells = []
        for condition in ("gaze", "random", "all"):
            row = _find(rows, protocol, condition)
            cell = _pct(row)
            if row is not None:
                cell += f", junk {100 * row['junk_rate']:.1f}%"
                if protocol == "dynamic":
                    cell += f", Spearman {row['spearman_mean']:.2f}"
                    undefined = row.get("spearman_undefined", 0)
                    if undefined:
                        cell += f" ({undefined} of {row['spearman_n']} strips undefined, counted as 0)"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    sizes = [s for s in ("all", "small", "medium", "large") if _find(rows, "coco", "gaze", s)]
    if sizes:
        lines += [
            "",
            f"Box steering on {settings['scenes']} synthetic scenes (seeds 200000..; `prompts.SCENE_QUESTION`; "
            "every object is a target; a box owns the image tokens whose cell centre lies in it; accuracy = the "
            "answer names the target's shape; COCO size classes by drawn area):",
            "",
            f"| objects | n | gaze (K={k}) | random (K={k}) | gaze / random |",
            "| --- | --- | --- | --- | --- |",
        ]
        for size in sizes:
            g, r = _find(rows, "coco", "gaze", size), _find(rows, "coco", "random", size)
            lines.append(f"| {size} | {g['n']} | {_pct(g)} | {_pct(r)} | {_ratio(g, r)} |")
    return "\n".join(lines) + "\n"


def topk_section(topk_dir: Path) -> str:
    """The card section for an `eval topk` run: accuracy at every K, gaze and random heads side by side."""
    summary = json.loads((topk_dir / "summary.json").read_text())
    settings, rows = summary["settings"], summary["results"]
    ranking = Ranking.load(settings["ranking"])
    total = ranking.shape.total
    name = settings.get("topk_protocol", "narration")
    question = settings.get("question") or protocol(name).question
    ks = sorted({row["k"] for row in rows if row["protocol"] == "topk"})
    n_strips = max((row.get("n_clusters", 0) for row in rows if row["protocol"] == "topk"), default=0)
    lines = [
        TOPK_SECTION,
        "",
        f"Protocol `{name}` (question: {question!r}), {n_strips} held-out strips x 6 "
        f"targets, {settings.get('max_new_tokens') or 'default'} new tokens; at each K the top-K gaze heads and K random "
        f"heads at or below the {settings.get('control_percentile', 5):g}th score percentile (seed {settings.get('seed', 0)}); "
        "95% bootstrap intervals over strips; junk = the answer names no panel.",
        "",
        "| K | % of heads | top-K gaze | junk | K random | junk |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for k in ks:
        cells = []
        for condition in ("gaze", "random"):
            row = next((r for r in rows if r["protocol"] == "topk" and r["condition"] == condition and r["k"] == k), None)
            cells += [_pct(row), "-" if row is None else f"{100 * row['junk_rate']:.0f}%"]
        lines.append(f"| {k} | {100 * k / total:.1f}% | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _replace_section(text: str, title: str, section: str) -> str:
    if title in text:
        start = text.index(title)
        nxt = text.find("\n## ", start + len(title))
        return text[:start] + section + (text[nxt + 1 :] if nxt >= 0 else "")
    return text.rstrip("\n") + "\n\n" + section


def update_card(run_dir: Path, model_dir: Path, topk_dir: Path | None = None) -> Path:
    """Replace (or append) the steering sections of MODEL_CARD.md and README.md in `model_dir`."""
    card = model_dir / "MODEL_CARD.md"
    text = _replace_section(card.read_text(), SECTION, steering_section(run_dir))
    if topk_dir is not None:
        text = _replace_section(text, TOPK_SECTION, topk_section(topk_dir))
    write_text(card, text)
    write_text(model_dir / "README.md", text)
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a `gazeheads run` output folder (summary.json, ranking.json)")
    parser.add_argument("--model", type=Path, default=model_path(), help="model folder (default: the bundled one)")
    parser.add_argument("--topk", type=Path, help="a `gazeheads eval topk` output folder on the same ranking")
    args = parser.parse_args(argv)
    print(update_card(args.run_dir, args.model, args.topk))
    return 0


if __name__ == "__main__":
    sys.exit(main())
