"""What a run folder holds, read once for the report, and the words the report uses for it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from ..data.strips import Strip
    from ..ranking import Ranking

PROTOCOL_NAMES = {
    "narration": "Panel question",
    "vqa": "VQA question",
    "dynamic": "Dynamic narration",
    "topk": "Top-K sweep",
    "coco": "Object boxes",
}
CONDITION_ORDER = ("gaze", "random", "all", "unsteered")


def percent(value: float | None, digits: int = 1) -> str:
    """0.8312 -> '83.1%' ('n/a' for None)."""
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def interval(row: dict) -> str:
    """'[75.0, 83.3]' in percent, or '' when the row has no interval."""
    if "ci_low" not in row:
        return ""
    return f"[{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]"


def duration(seconds: float) -> str:
    """102.4 -> '1 min 42 s'."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@dataclass
class RunData:
    """One run folder as the report sees it: results, records, settings and the artifacts beside them."""

    run_dir: Path
    rows: list[dict]
    records: list[dict]
    settings: dict
    extra: dict
    unsteered: list[dict] = field(default_factory=list)
    protocol_settings: dict = field(default_factory=dict)
    ranking: "Ranking | None" = None
    tracking: dict | None = None
    strips: Sequence["Strip"] | None = None
    image_root: Path | None = None

    @classmethod
    def load(cls, run_dir: Path, rows: list[dict], records: list[dict], settings: dict | None, extra: dict | None,
             strips: Sequence["Strip"] | None = None, image_root: Path | None = None) -> "RunData":
        from ..evaluation.summary import unsteered_rows

        run_dir = Path(run_dir)
        data = cls(run_dir, rows, records, dict(settings or {}), dict(extra or {}), unsteered_rows(records),
                   _read_json(run_dir / "generations.settings.json") or {}, strips=strips, image_root=image_root)
        if (run_dir / "ranking.json").is_file():
            from ..ranking import Ranking

            data.ranking = Ranking.load(run_dir / "ranking.json")
        data.tracking = _read_json(run_dir / "tracking.json")
        return data

    # -- facts ---------------------------------------------------------------------------

    def protocols(self) -> list[str]:
        from ..evaluation.protocols import PROTOCOL_ORDER

        names = {r["protocol"] for r in self.rows}
        return sorted(names, key=lambda p: (PROTOCOL_ORDER.index(p) if p in PROTOCOL_ORDER else 9, p))

    def model_name(self) -> str:
        model = self.settings.get("model")
        if isinstance(model, str) and model:
            return model
        if self.ranking is not None:
            return self.ranking.model_id
        ranking_file = self.settings.get("ranking")
        meta = _read_json(Path(ranking_file)) if isinstance(ranking_file, str) else None
        return (meta or {}).get("model", {}).get("id") or "the bundled tiny model"

    def synthetic(self) -> bool:
        """Strips and scenes drawn by gazeheads (the bundled model's data) rather than real images."""
        layout = self.settings.get("layout") or {}
        if "synthetic" in layout:
            return bool(layout["synthetic"])
        return all(str(r["strip"]).startswith(("synth_", "images/scene_")) for r in self.records[:50])

    def k(self) -> int | None:
        ks = [r["k"] for r in self.rows if r["condition"] == "gaze" and r["protocol"] != "topk"]
        return self.settings.get("k") or (ks[0] if ks else None)

    def percentile(self) -> float | None:
        heads = self.settings.get("heads") or {}
        value = self.settings.get("control_percentile", heads.get("percentile"))
        return None if value is None else float(value)

    def n_heads(self) -> int | None:
        if self.ranking is not None:
            return self.ranking.shape.total
        ks = [r["k"] for r in self.rows if r["condition"] == "all"]
        return ks[0] if ks else None

    def protocol_name(self, protocol: str) -> str:
        if protocol == "coco":
            return "Scene boxes (synthetic scenes)" if self.synthetic() else "COCO object boxes"
        return PROTOCOL_NAMES.get(protocol, protocol)

    def question(self, protocol: str) -> str | None:
        return (self.protocol_settings.get(protocol) or {}).get("question")

    def condition_name(self, condition: str, k: int | str | None = None, *, short: bool = False) -> str:
        """Head sets in words: 'top-4 gaze heads', '4 random non-gaze heads (gaze score in the lowest 50%)'."""
        k = "K" if k is None else k
        if condition == "gaze":
            return f"top-{k} gaze heads"
        if condition == "random":
            p = self.percentile()
            if short or p is None:
                return f"{k} random non-gaze heads"
            return f"{k} random non-gaze heads (gaze score in the lowest {p:g}%)"
        if condition == "all":
            return "all heads" if k == "K" else f"all {k} heads"
        if condition == "unsteered":
            return "unsteered"
        return f"{condition} ({k})"

    def rows_of(self, protocol: str, size: str | None = None) -> list[dict]:
        return [r for r in self.rows if r["protocol"] == protocol and r.get("size_class") == size]

    def unsteered_of(self, protocol: str, size: str | None = None) -> dict | None:
        return next((r for r in self.unsteered if r["protocol"] == protocol and r.get("size_class") == size
                     and r.get("n")), None)

    def records_of(self, protocol: str, condition: str | None = None) -> list[dict]:
        return [r for r in self.records if r["protocol"] == protocol
                and (condition is None or r["condition"] == condition)]

    def box_chance(self, size: str) -> float | None:
        """Chance of naming the boxed object by naming a random one of the object kinds in its image
        (None without the images' annotations: scenes/instances.json or `image_root`/instances.json)."""
        roots = [self.run_dir / "scenes"] + ([self.image_root] if self.image_root else [])
        instances = next((found for root in roots if (found := _read_json(Path(root) / "instances.json"))), None)
        if not instances:
            return None
        files = {image["id"]: image["file_name"] for image in instances.get("images", [])}
        kinds: dict[str, set] = {}
        for annotation in instances.get("annotations", []):
            kinds.setdefault(files.get(annotation["image_id"], ""), set()).add(annotation["category_id"])
        odds = [1 / len(kinds[r["strip"]]) for r in self.records_of("coco", "gaze")
                if not r.get("untargetable") and r["strip"] in kinds and size in ("all", r.get("size_class"))]
        return sum(odds) / len(odds) if odds else None

    def chance(self, protocol: str, size: str | None = None) -> float | None:
        """Chance accuracy: one panel in N for strips, `box_chance` for boxes."""
        if protocol == "coco":
            return self.box_chance(size or "all")
        return next((r["chance"] for r in self.rows_of(protocol, size) if "chance" in r), None)

    def n_strips(self, protocol: str) -> int:
        return len({r["strip"] for r in self.records_of(protocol, "baseline")}) or \
            len({r["strip"] for r in self.records_of(protocol)})


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
