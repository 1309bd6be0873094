"""COCO boxes: steer to one object's box, ask what is in the picture, score the named category.

Reads a COCO `instances` JSON and its image folder (COCO val2017, or the synthetic scenes
of `gazeheads data synth`), samples objects per size class (seeded), and compares gaze
heads with the random non-gaze control per size class.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from ..data.strips import open_image
from ..errors import DataError, RegionError
from ..model import GazeModel
from ..progress import progress_bar
from ..ranking import Ranking
from ..regions import Box
from ..steering import steer
from .judges import JudgeItem
from .protocols import protocol, size_class
from .runner import EvalSettings, condition_plan, record_key, run_settings, split_generation
from .store import JsonlStore


@dataclass(frozen=True)
class CocoObject:
    """One annotated object: its image, box (x, y, w, h) in pixels, category and size class."""

    annotation_id: int
    image_file: str
    bbox: tuple[float, float, float, float]
    area: float
    category: str
    category_index: int
    size: str

    @property
    def box(self) -> Box:
        x, y, w, h = self.bbox
        return Box(x, y, x + w, y + h)


def load_instances(instances: str | Path) -> tuple[list[CocoObject], list[str]]:
    """All non-crowd objects and the category names (index = position in the list)."""
    path = Path(instances)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"COCO instances file not found: {path}", "Give instances_val2017.json or the synthetic "
                        "scenes' instances.json.") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}).", "Give a COCO instances JSON file.") from None
    if not isinstance(data, dict) or {"images", "annotations", "categories"} - set(data):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path} is not a COCO instances file (it needs images, annotations and categories; found "
                        f"{found}).", "Give a COCO instances JSON file such as instances_val2017.json.")
    fix = "Repair the annotation file (every annotation needs an image_id, a category_id and a bbox that exist)."
    try:
        categories = sorted(data["categories"], key=lambda c: c["id"])
        names = [str(c["name"]) for c in categories]
        index = {c["id"]: i for i, c in enumerate(categories)}
        files = {im["id"]: im["file_name"] for im in data["images"]}
    except (KeyError, TypeError) as exc:
        raise DataError(f"{path}: a category or image entry lacks {exc}.", fix) from None
    objects = []
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or ann.get("iscrowd"):
            continue
        where = f"{path}: annotation {ann.get('id')!r}"
        if ann.get("category_id") not in index:
            raise DataError(f"{where} names category {ann.get('category_id')!r}, which the file does not define.", fix)
        if ann.get("image_id") not in files:
            raise DataError(f"{where} names image {ann.get('image_id')!r}, which the file does not list.", fix)
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)
                and bbox[2] > 0 and bbox[3] > 0):
            raise DataError(f"{where} has no usable bbox ({bbox!r}).", fix)
        area = float(ann.get("area") or bbox[2] * bbox[3])
        category = index[ann["category_id"]]
        objects.append(CocoObject(ann["id"], files[ann["image_id"]], tuple(bbox), area, names[category], category,
                                  size_class(area)))
    if not objects:
        raise DataError(f"{path} has no objects to steer to (no non-crowd annotations).",
                        "Give an annotation file with object boxes.")
    return objects, names


def sample_objects(objects: Sequence[CocoObject], per_size: int, seed: int = 0) -> list[CocoObject]:
    """Up to `per_size` objects of each size class, drawn with a seed, grouped by image."""
    rng = random.Random(seed)
    chosen = []
    for size in ("small", "medium", "large"):
        pool = [o for o in objects if o.size == size]
        rng.shuffle(pool)
        chosen += pool[:per_size]
    return sorted(chosen, key=lambda o: (o.image_file, o.annotation_id))


def evaluate_coco(
    gm: GazeModel,
    ranking: Ranking,
    objects: Sequence[CocoObject],
    categories: list[str],
    images_dir: str | Path,
    settings: EvalSettings,
    judge,
    store: JsonlStore,
    *,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> JsonlStore:
    """Steer to each object's box per condition; one record per (condition, object)."""
    ranking.check_compatible(gm)
    spec = protocol("coco").with_overrides(settings.question, settings.max_new_tokens)
    plan = condition_plan(ranking, settings)
    store.claim("coco", run_settings(gm, settings, spec, plan, judge))
    by_image: dict[str, list[CocoObject]] = defaultdict(list)
    for obj in objects:
        by_image[obj.image_file].append(obj)
    images = sorted(by_image)[shard[0] :: shard[1]]
    label = "coco" if shard[1] == 1 else f"coco (process {shard[0] + 1} of {shard[1]})"
    for name in progress_bar(images, desc=label, unit="image", disable=not progress):
        image = open_image(Path(images_dir) / name)
        baseline_key = record_key("coco", "baseline", 0, name, "-")
        if baseline_key not in store:
            encoded = gm.encode(image, spec.question)
            text = split_generation(gm, gm.generate_ids(encoded, spec.max_new_tokens)[0], spec).text
            store.add([{"key": baseline_key, "protocol": "coco", "condition": "baseline", "k": 0,
                        "strip": name, "text": text}])
        baseline = store.records[baseline_key]["text"]
        for condition, k, heads in plan:
            todo = [o for o in by_image[name] if record_key("coco", condition, k, name, o.annotation_id) not in store]
            if not todo:
                continue
            encoded = gm.encode(image, [spec.question] * len(todo))
            reachable = []
            for row, obj in enumerate(todo):
                try:
                    encoded.geometries[row].positions_of(obj.box)
                    reachable.append(obj)
                except RegionError:
                    store.add([_record(condition, k, name, obj, None, None, baseline, untargetable=True)])
            if not reachable:
                continue
            if len(reachable) != len(todo):
                encoded = gm.encode(image, [spec.question] * len(reachable))
            with steer(gm, heads, [o.box for o in reachable], encoded, settings.steer_spec()):
                ids = gm.generate_ids(encoded, spec.max_new_tokens)
            records = []
            for obj, row in zip(reachable, ids):
                text = split_generation(gm, row, spec).text
                key = record_key("coco", condition, k, name, obj.annotation_id)
                verdict = judge.judge(JudgeItem(text=text, n_panels=0, captions=None, attributes=None,
                                                baseline=baseline, image=image, category_names=categories, key=key))
                records.append(_record(condition, k, name, obj, text, verdict, baseline))
            store.add(records)
    return store


def _record(condition, k, image_name, obj: CocoObject, text, verdict, baseline, untargetable=False) -> dict:
    return {
        "key": record_key("coco", condition, k, image_name, obj.annotation_id),
        "protocol": "coco", "condition": condition, "k": k, "strip": image_name,
        "object": asdict(obj), "size_class": obj.size, "target": obj.category_index,
        "text": text, "baseline": baseline, "untargetable": untargetable,
        "verdict": verdict.to_dict() if verdict else None,
        "hit": bool(verdict.hit(obj.category_index)) if verdict else False,
        "junk": bool(verdict.junk) if verdict else False,
    }
