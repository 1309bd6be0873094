"""Re-judge a finished run from its JSONL without generating again."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..data.strips import Strip, open_image
from ..errors import DataError
from .judges import JudgeItem
from .protocols import Protocol
from .runner import GeneratedText, dynamic_record, static_record
from .store import JsonlStore


def rejudge(run_dir: str | Path, judge, strips: Sequence[Strip], coco: tuple[str | None, str | None] = (None, None)):
    """Apply `judge` to every generation in RUN/generations.jsonl and rewrite it in place."""
    store = JsonlStore(Path(run_dir) / "generations.jsonl")
    if not len(store):
        raise DataError(f"No generations in {run_dir}.", "Run `gazeheads eval` first (or check --out).")
    by_id = {s.comic_id: s for s in strips}
    baselines = {(r["protocol"], r["strip"]): r for r in store if r["condition"] == "baseline"}
    categories = None
    if coco[0]:
        from .coco import load_instances

        categories = load_instances(coco[0])[1]
    updated = []
    for record in store:
        if record["condition"] == "baseline" or record.get("untargetable"):
            updated.append(record)
            continue
        if record["protocol"] == "coco":
            if categories is None or coco[1] is None:
                raise DataError("Re-judging COCO records needs the categories and images.",
                                "Pass --coco-instances and --coco-images.")
            item = JudgeItem(text=record["text"], n_panels=0, captions=None, attributes=None,
                             baseline=record["baseline"], image=open_image(Path(coco[1]) / record["strip"]),
                             category_names=categories, key=record["key"])
            verdict = judge.judge(item)
            updated.append({**record, "verdict": verdict.to_dict(), "hit": verdict.hit(record["target"]),
                            "junk": verdict.junk})
            continue
        strip = by_id.get(record["strip"])
        if strip is None:
            raise DataError(f"Strip {record['strip']!r} of the run is not among the given strips.",
                            "Pass the same --comics (and --n-strips) as the run.")
        baseline = baselines[(record["protocol"], record["strip"])]
        if record["protocol"] == "dynamic":
            spec = Protocol("dynamic", "", 0, record["segment_tokens"])
            gen = GeneratedText(record["text"], record["segments"])
            base = GeneratedText(baseline["text"], baseline.get("segments", []))
            updated.append(dynamic_record(spec, record["condition"], record["k"], strip, gen, base,
                                          record["schedule"], judge))
        else:
            spec = Protocol(record["protocol"], "", 0)
            gen = GeneratedText(record["text"], [], record.get("n_tokens", 0))
            updated.append(static_record(spec, record["condition"], record["k"], strip, record["target"], gen,
                                         baseline["text"], judge))
    settings = {section: {**saved, "judge": judge.name} for section, saved in store.settings.items()}
    store.rewrite(sorted(updated, key=lambda r: r["key"]), settings)
    return store
