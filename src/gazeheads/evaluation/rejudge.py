"""Re-judge a finished run from its JSONL without generating again.

Every answer of the run is handed to the judge in one `judge_many` call, so an LLM judge
serves what its verdict cache holds and sends the rest as one vendor batch (or one request
at a time below its batch threshold). The records are then rebuilt by the same functions
that wrote them, with the new verdicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..data.strips import Strip, open_image
from ..errors import DataError
from .judges import Judge, JudgeItem, Verdict
from .protocols import Protocol
from .runner import GeneratedText, baseline_record, dynamic_record, static_record
from .session import shard_files
from .store import JsonlStore, merge_shards


class _Recorder(Judge):
    """Collects the items a record asks about (first pass); placeholder verdicts."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: list[JudgeItem] = []

    def judge_many(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        self.items += items
        return [Verdict(None, judge=self.name) for _ in items]


class _Replay(Judge):
    """Hands out verdicts already decided, in the order the items were recorded (second pass)."""

    def __init__(self, name: str, verdicts: Sequence[Verdict]) -> None:
        self.name = name
        self._verdicts = iter(verdicts)

    def judge_many(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        return [next(self._verdicts) for _ in items]


def rejudge(run_dir: str | Path, judge, strips: Sequence[Strip], coco: tuple[str | None, str | None] = (None, None)):
    """Apply `judge` to every generation of RUN and rewrite RUN/generations.jsonl in place.

    Per-process shards (a sharded run) are merged into it first and then removed, so that a
    later `finish()` cannot merge their old verdicts back over the new ones.
    """
    run_dir = Path(run_dir)
    shards = shard_files(run_dir)
    merged = run_dir / "generations.jsonl"
    store = merge_shards(shards, merged) if shards else JsonlStore(merged)
    if not len(store):
        raise DataError(f"No generations in {run_dir}.", "Run `gazeheads eval` first (or check --out).")
    builders = _record_builders(store, strips, coco)
    recorder = _Recorder(judge.name)
    for build in builders:
        build(recorder)
    judge_many = getattr(judge, "judge_many", None) or (lambda items: [judge.judge(item) for item in items])
    replay = _Replay(judge.name, judge_many(recorder.items))
    updated = [build(replay) for build in builders]
    settings = {section: {**saved, "judge": judge.name} for section, saved in store.settings.items()}
    store.rewrite(sorted(updated, key=lambda r: r["key"]), settings)
    for shard in shards:
        shard.unlink(missing_ok=True)
        JsonlStore.settings_path_of(shard).unlink(missing_ok=True)
    return store


def _record_builders(store: JsonlStore, strips: Sequence[Strip],
                     coco: tuple[str | None, str | None]) -> list[Callable[[Judge], dict]]:
    """One function per record: given a judge, the record judged by it (unjudged records unchanged)."""
    by_id = {s.comic_id: s for s in strips}
    baselines = {(r["protocol"], r["strip"]): r for r in store if r["condition"] == "baseline"}
    categories = None
    if coco[0]:
        from .coco import load_instances

        categories = load_instances(coco[0])[1]
    images: dict[str, object] = {}
    builders: list[Callable[[Judge], dict]] = []
    for record in store:
        if record.get("untargetable") or (record["condition"] == "baseline" and record["protocol"] == "coco"):
            builders.append(lambda judge, record=record: record)
            continue
        if record["condition"] == "baseline":
            strip = _strip_of(by_id, record)
            spec = Protocol(record["protocol"], "", 0)
            gen = GeneratedText(record["text"], record.get("segments", []), record.get("n_tokens", 0))
            builders.append(lambda judge, s=spec, st=strip, g=gen: baseline_record(s, st, g, judge))
            continue
        if record["protocol"] == "coco":
            if categories is None or coco[1] is None:
                raise DataError("Re-judging COCO records needs the categories and images.",
                                "Pass --coco-instances and --coco-images.")
            if record["strip"] not in images:
                images[record["strip"]] = open_image(Path(coco[1]) / record["strip"])
            item = JudgeItem(text=record["text"], n_panels=0, captions=None, attributes=None,
                             baseline=record["baseline"], image=images[record["strip"]],
                             category_names=categories, key=record["key"])
            builders.append(lambda judge, record=record, item=item: _coco_record(record, judge.judge(item)))
            continue
        strip = _strip_of(by_id, record)
        baseline = baselines[(record["protocol"], record["strip"])]
        if record["protocol"] == "dynamic":
            spec = Protocol("dynamic", "", 0, record["segment_tokens"])
            gen = GeneratedText(record["text"], record["segments"])
            base = GeneratedText(baseline["text"], baseline.get("segments", []))
            builders.append(lambda judge, r=record, s=spec, st=strip, g=gen, b=base:
                            dynamic_record(s, r["condition"], r["k"], st, g, b, r["schedule"], judge))
        else:
            spec = Protocol(record["protocol"], "", 0)
            gen = GeneratedText(record["text"], [], record.get("n_tokens", 0))
            builders.append(lambda judge, r=record, s=spec, st=strip, g=gen, b=baseline["text"]:
                            static_record(s, r["condition"], r["k"], st, r["target"], g, b, judge))
    return builders


def _strip_of(by_id: dict[str, Strip], record: dict) -> Strip:
    strip = by_id.get(record["strip"])
    if strip is None:
        raise DataError(f"Strip {record['strip']!r} of the run is not among the given strips.",
                        "Pass the same --comics (and --n-strips) as the run.")
    return strip


def _coco_record(record: dict, verdict: Verdict) -> dict:
    return {**record, "verdict": verdict.to_dict(), "hit": verdict.hit(record["target"]), "junk": verdict.junk}
