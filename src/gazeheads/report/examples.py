"""Example generations for the page: several strips, every target, the unsteered answer beside the
steered ones, and a thumbnail of the strip (or scene) with the target outlined.

Thumbnails come from the strips handed to the report, else are redrawn (gazeheads' synthetic
strips, from their id) or read (scenes in the run folder, or `image_root`); where none can
be found the cell says so.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from PIL import Image, ImageDraw

from ..evaluation.summary import baseline_verdicts
from .page import Cell, Table, data_uri
from .run import RunData

if TYPE_CHECKING:
    from ..data.strips import Strip

THUMB_WIDTH = 520  # px; shown at half size, so the outline stays sharp
SCENE_WIDTH = 150  # px, shown as is
MAX_TEXT = 420  # characters of an answer shown in a cell
OUTLINE = (214, 39, 40)
STEERED = ("gaze", "random", "all")


class Pictures:
    """Finds the image of a strip or scene named in a record."""

    def __init__(self, data: RunData) -> None:
        self.data = data
        self._strips: dict[str, "Strip | None"] = {}

    def strip(self, comic_id: str) -> "Strip | None":
        if comic_id not in self._strips:
            self._strips[comic_id] = self._find(comic_id)
        return self._strips[comic_id]

    def _find(self, comic_id: str) -> "Strip | None":
        given = self.data.strips
        if given is not None:
            ids = getattr(given, "ids", None)
            if ids is not None:
                if comic_id in ids:
                    return given[ids.index(comic_id)]
            else:
                found = next((s for s in given if s.comic_id == comic_id), None)
                if found is not None:
                    return found
        match = re.fullmatch(r"synth_(\d+)", comic_id)
        if match:
            from ..layout import StripLayout
            from ..synth import make_strip

            layout = (self.data.settings.get("layout") or {}).get("strip")
            return make_strip(int(match.group(1)), comic_id=comic_id, layout=StripLayout(**layout) if layout else None)
        return None

    def scene(self, image_file: str) -> Image.Image | None:
        for root in (self.data.image_root, self.data.run_dir / "scenes"):
            if root is not None and (Path(root) / image_file).is_file():
                with Image.open(Path(root) / image_file) as image:
                    return image.convert("RGB")
        return None


def _outlined(image: Image.Image, box: tuple[float, float, float, float] | None, width: int,
              *, dim: bool = False) -> str:
    """The image `width` px wide, the box outlined in red; with `dim`, everything outside it faded."""
    scale = width / image.width
    small = image.convert("RGB").resize((width, max(1, round(image.height * scale))), Image.Resampling.LANCZOS)
    if box is not None:
        x0, y0, x1, y1 = (round(v * scale) for v in box)
        if dim:
            faded = Image.blend(small, Image.new("RGB", small.size, (255, 255, 255)), 0.6)
            faded.paste(small.crop((x0, y0, x1, y1)), (x0, y0))
            small = faded
        ImageDraw.Draw(small).rectangle((x0, y0, x1 - 1, y1 - 1), outline=OUTLINE, width=max(3, width // 120))
    return data_uri(small)


def strip_cell(pictures: Pictures, comic_id: str, target: int | None, note: str) -> Cell:
    strip = pictures.strip(comic_id)
    if strip is None:
        return Cell(comic_id, note=f"{note} (no thumbnail: the strip was not available to the report)")
    box = None
    if target is not None and 1 <= target <= strip.n_panels:
        box = tuple(strip.panel_boxes[target - 1])  # (x0, y0, x1, y1) in pixels
    return Cell(comic_id, image=_outlined(strip.image, box, THUMB_WIDTH, dim=True), note=note)


def scene_cell(pictures: Pictures, image_file: str, bbox: Sequence[float], note: str) -> Cell:
    image = pictures.scene(image_file)
    if image is None:
        return Cell(image_file, note=f"{note} (no thumbnail: image not found)")
    x, y, w, h = bbox
    return Cell(image_file, image=_outlined(image, (x, y, x + w, y + h), SCENE_WIDTH), note=note)


def _short(text: str | None) -> str:
    text = (text or "").strip()
    if not text:
        return "(empty)"
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT].rstrip() + " ..."


def answer_cell(record: dict | None) -> Cell:
    """A steered answer marked hit, miss or junk, with the panel the judge placed it on for a miss."""
    if record is None:
        return Cell("(not generated)")
    verdict = record.get("verdict") or {}
    mark = "junk" if record.get("junk") else "hit" if record.get("hit") else "miss"
    note = ""
    if mark == "miss" and verdict.get("same_as_baseline"):
        note = "same as the unsteered answer"
    elif mark == "miss" and record["protocol"] == "coco":
        named = (verdict.get("detail") or {}).get("matched")
        note = f"names {named}" if named else ""
    elif mark == "miss" and verdict.get("choice") is not None:
        note = f"describes panel {verdict['choice']}"
    return Cell(_short(record.get("text")), mark=mark, note=note)


def _unsteered_cell(baseline: dict | None, verdict: dict | None, target: int) -> Cell:
    if baseline is None:
        return Cell("(not recorded)")
    if verdict is None:
        return Cell(_short(baseline.get("text")), note="not placed by the judge")
    from ..evaluation.judges import Verdict

    placed = Verdict.from_dict(verdict)
    mark = "junk" if placed.junk else "hit" if placed.hit(target) else "miss"
    return Cell(_short(baseline.get("text")), mark=mark)


def _heads(data: RunData, protocol: str) -> list[tuple[str, int]]:
    seen = {(r["condition"], r["k"]) for r in data.rows_of(protocol, "all" if protocol == "coco" else None)}
    return [(c, k) for c in STEERED for cc, k in sorted(seen) if cc == c]


def static_examples(data: RunData, protocol: str, pictures: Pictures) -> Table | None:
    """One row per target panel, each from another strip: unsteered answer and every head set's answer."""
    baselines = {r["strip"]: r for r in data.records_of(protocol, "baseline")}
    by_key = {(r["strip"], r["condition"], r["k"], r.get("target")): r for r in data.records_of(protocol)}
    strips = sorted(baselines)
    heads = _heads(data, protocol)
    if not strips or not heads:
        return None
    verdicts = baseline_verdicts(data.records)
    n_panels = max((r.get("n_panels", 0) for r in data.records_of(protocol)), default=0)
    rows = []
    for target in range(1, n_panels + 1):
        strip = strips[(target - 1) % len(strips)]
        verdict = (verdicts.get((protocol, strip)) or [None])[0]
        row = [strip_cell(pictures, strip, target, f"target: panel {target} (outlined)"),
               _unsteered_cell(baselines[strip], verdict, target)]
        row += [answer_cell(by_key.get((strip, c, k, target))) for c, k in heads]
        rows.append(row)
    headers = ["Strip and target", "Unsteered answer"] + [data.condition_name(c, k, short=True) for c, k in heads]
    return Table(headers, rows, f"Examples: one target panel per row, each from another of {len(strips)} strips; "
                                f"hit = the judge places the answer on the target panel.")


def dynamic_examples(data: RunData, pictures: Pictures, n_strips: int = 3) -> Table | None:
    """A few strips' narrations under the schedule: unsteered, then each head set, with judged panels."""
    baselines = {r["strip"]: r for r in data.records_of("dynamic", "baseline")}
    by_key = {(r["strip"], r["condition"], r["k"]): r for r in data.records_of("dynamic")}
    heads = _heads(data, "dynamic")
    strips = sorted(baselines)[:n_strips]
    if not strips or not heads:
        return None
    rows = []
    for strip in strips:
        steered = [by_key.get((strip, c, k)) for c, k in heads]
        schedule = next((r["schedule"] for r in steered if r), [])
        segment = next((r.get("segment_tokens") for r in steered if r), None)
        note = f"schedule {'-'.join(map(str, schedule))}" + (f", {segment} tokens a segment" if segment else "")
        row = [strip_cell(pictures, strip, None, note), Cell(_short(baselines[strip].get("text")))]
        for record in steered:
            if record is None:
                row.append(Cell("(not generated)"))
                continue
            judged = " ".join("-" if j is None else str(j) for j in record["judged"])
            hits = sum(record["segment_hits"])
            rho = record.get("spearman")
            rho_text = "undefined" if rho is None or rho != rho else f"{rho:.2f}"
            on_schedule = f"{hits} of {len(record['segment_hits'])} on schedule"
            row.append(Cell(_short(record["text"]), note=f"judged panels {judged}; {on_schedule}; Spearman {rho_text}"))
        rows.append(row)
    headers = ["Strip and schedule", "Unsteered narration"] + [data.condition_name(c, k, short=True) for c, k in heads]
    return Table(headers, rows, "Examples: the target moves through the scheduled panels, one segment each "
                                "(- = a junk segment).")


def box_examples(data: RunData, pictures: Pictures, per_size: int = 2) -> Table | None:
    """Objects of every size class from different scenes: unsteered answer and each head set's answer."""
    records = [r for r in data.records_of("coco") if r["condition"] in STEERED and not r.get("untargetable")]
    baselines = {r["strip"]: r for r in data.records_of("coco", "baseline")}
    heads = _heads(data, "coco")
    if not records or not heads:
        return None
    by_key = {(r["strip"], r["condition"], r["k"], r["object"]["annotation_id"]): r for r in records}
    chosen, used = [], set()
    by_size = defaultdict(list)
    for r in sorted(records, key=lambda r: (r["strip"], r["object"]["annotation_id"])):
        if r["condition"] == heads[0][0]:
            by_size[r["size_class"]].append(r)
    for size in ("small", "medium", "large"):
        picked = 0
        for r in by_size[size]:
            if picked < per_size and r["strip"] not in used:
                chosen.append(r)
                used.add(r["strip"])
                picked += 1
    verdicts = baseline_verdicts(data.records)
    rows = []
    for r in chosen:
        obj = r["object"]
        verdict = (verdicts.get(("coco", r["strip"])) or [None])[0]
        row = [scene_cell(pictures, r["strip"], obj["bbox"], f"{obj['category']}, {obj['size']} (outlined)"),
               _unsteered_cell(baselines.get(r["strip"]), verdict, r["target"])]
        row += [answer_cell(by_key.get((r["strip"], c, k, obj["annotation_id"]))) for c, k in heads]
        rows.append(row)
    headers = ["Scene and target object", "Unsteered answer"] + [data.condition_name(c, k, short=True)
                                                                  for c, k in heads]
    return Table(headers, rows, "Examples: objects of each size class, each from another scene; hit = the "
                                "answer names the boxed object's category.")
