"""Run a protocol over strips and head-set conditions, one durable JSONL record per generation.

Each strip's targets are generated as one batch with a per-row bias. Records are keyed
(protocol, condition, K, strip, target), so a rerun, or a resume after a crash, skips
what is on disk; the settings that decide the records are saved beside them, and a resume
with other settings is refused. Under `accelerate launch`, process r of w takes strips r, r+w, ... and
writes its own shard; the main process merges them.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from ..data.strips import Strip
from ..errors import GazeheadsError
from ..heads import HeadSet, default_k
from ..model import GazeModel
from ..ranking import Ranking
from ..regions import Panel, Schedule
from ..steering import DEFAULT_STRENGTH, steer
from .judges import JudgeItem
from .protocols import TOPK_DEFAULT, Protocol, derangement, protocol
from .store import JsonlStore

CONDITIONS = ("gaze", "random", "all")


@dataclass
class EvalSettings:
    """Everything that decides what is generated (saved with the run)."""

    protocol: str = "narration"
    conditions: tuple[str, ...] = CONDITIONS
    k: int | None = None
    topk: tuple[int, ...] = TOPK_DEFAULT
    topk_protocol: str = "narration"
    question: str | None = None
    max_new_tokens: int | None = None
    segment_tokens: int | None = None
    mode: str = "boost_suppress"
    strength: float = DEFAULT_STRENGTH
    phase: str = "prefill+decode"
    seed: int = 0
    control_percentile: float = 5.0
    batch_targets: bool = True
    strips_per_batch: int = 1

    def resolved_protocol(self) -> Protocol:
        if self.protocol == "dynamic" and self.max_new_tokens is not None:
            raise GazeheadsError("Dynamic narration generates one segment per panel; max_new_tokens does not apply.",
                                 "Set the segment length instead (--segment-tokens, default 50).")
        if self.protocol != "topk":
            return protocol(self.protocol).with_overrides(self.question, self.max_new_tokens, self.segment_tokens)
        base = protocol(self.topk_protocol).with_overrides(self.question, self.max_new_tokens, self.segment_tokens)
        return replace(base, name="topk")

    def to_dict(self) -> dict:
        return asdict(self)


def condition_plan(ranking: Ranking, settings: EvalSettings) -> list[tuple[str, int, HeadSet | None]]:
    """(condition, K, head set) triples to run; condition 'baseline' has no heads."""
    total = ranking.shape.total
    if settings.protocol == "topk":
        plan = []
        for k in sorted({min(k, total) for k in settings.topk}):
            plan.append(("gaze", k, ranking.top(k)))
            if "random" in settings.conditions:
                plan.append(("random", k, _control(ranking, k, settings)))
        return plan
    k = settings.k or default_k(total)
    sets = {"gaze": lambda: ranking.top(k), "random": lambda: _control(ranking, k, settings),
            "all": ranking.all_heads}
    unknown = set(settings.conditions) - set(sets)
    if unknown:
        raise GazeheadsError(f"Unknown condition(s) {sorted(unknown)}.", f"Use some of {', '.join(CONDITIONS)}.")
    return [(c, k if c != "all" else total, sets[c]()) for c in settings.conditions]


def _control(ranking: Ranking, k: int, settings: EvalSettings) -> HeadSet:
    return ranking.random_control(k, seed=settings.seed, percentile=settings.control_percentile)


def run_settings(gm: GazeModel, settings: EvalSettings, spec: Protocol, plan, judge) -> dict:
    """What decides a section's records, saved beside them and compared when a run resumes.

    Head sets are keyed by condition and K, so a resume may add conditions or K values.
    """
    return {"model": gm.fingerprint(), "question": spec.question, "max_new_tokens": spec.max_new_tokens,
            "segment_tokens": spec.segment_tokens, "mode": settings.mode, "strength": settings.strength,
            "phase": settings.phase, "seed": settings.seed, "judge": getattr(judge, "name", type(judge).__name__),
            "heads": {f"{condition}@{k}": [list(h) for h in heads] for condition, k, heads in plan}}


def record_key(protocol_name: str, condition: str, k: int, strip_id: str, target: object) -> str:
    return f"{protocol_name}|{condition}|k={k}|{strip_id}|{target}"


def strip_rng(strip_id: str, seed: int) -> random.Random:
    """A stream that depends only on the strip and the seed (same on every process)."""
    return random.Random(zlib.crc32(f"{seed}:{strip_id}".encode()))


@dataclass
class Generation:
    text: str
    segments: list[str] = field(default_factory=list)
    n_tokens: int = 0


def _generate(gm: GazeModel, rows: list[tuple[Strip, object]], spec: Protocol, heads: HeadSet | None,
              settings: EvalSettings) -> list[Generation]:
    """One answer per (strip, target) row, as one batch (or one at a time with batch_targets=False)."""
    if not rows:
        return []
    if not settings.batch_targets and len(rows) > 1:
        return [g for row in rows for g in _generate(gm, [row], spec, heads, settings)]
    encoded = gm.encode([strip for strip, _ in rows], [spec.question] * len(rows))
    new_tokens = spec.new_tokens(max(strip.n_panels for strip, _ in rows))
    if heads is None:
        ids = gm.generate_ids(encoded, new_tokens)
    else:
        with steer(gm, heads, [target for _, target in rows], encoded, mode=settings.mode,
                   strength=settings.strength, phase=settings.phase):
            ids = gm.generate_ids(encoded, new_tokens)
    return [split_generation(gm, row, spec, strip.n_panels) for (strip, _), row in zip(rows, ids)]


def split_generation(gm: GazeModel, ids: torch.Tensor, spec: Protocol, n_panels: int = 0) -> Generation:
    """The answer up to its end token; for a segmented protocol also one text per panel's segment."""
    eos = {gm.tokenizer.eos_token_id, gm.tokenizer.pad_token_id}
    kept = ids.tolist()
    for i, token in enumerate(kept):
        if token in eos:
            kept = kept[:i]
            break
    text = gm.decode(torch.tensor([kept]))[0] if kept else ""
    segments = []
    if spec.segment_tokens:
        size = spec.segment_tokens
        segments = [gm.decode(torch.tensor([kept[i : i + size]]))[0] if kept[i : i + size] else ""
                    for i in range(0, size * n_panels, size)]
    return Generation(text, segments, len(kept))


def _judge_item(strip: Strip, text: str, baseline: str | None, key: str) -> JudgeItem:
    return JudgeItem(text=text, n_panels=strip.n_panels, captions=strip.captions,
                     attributes=strip.meta.get("attributes"), baseline=baseline, image=strip.image, key=key)


def static_record(spec, condition, k, strip, target, gen, baseline, judge) -> dict:
    """The judged record of one steered answer (target = 1-based panel)."""
    key = record_key(spec.name, condition, k, strip.comic_id, target)
    verdict = judge.judge(_judge_item(strip, gen.text, baseline, key))
    return {"key": key, "protocol": spec.name, "condition": condition, "k": k,
            "strip": strip.comic_id, "target": target, "n_panels": strip.n_panels,
            "text": gen.text, "baseline": baseline, "n_tokens": gen.n_tokens,
            "verdict": verdict.to_dict(), "hit": verdict.hit(target), "junk": verdict.junk}


def dynamic_record(spec, condition, k, strip, gen, baseline_gen, order, judge) -> dict:
    """The judged record of one dynamic narration: one verdict per segment, Spearman per strip."""
    from .stats import spearman

    key = record_key(spec.name, condition, k, strip.comic_id, "-".join(map(str, order)))
    verdicts, judged = [], []
    for i, (segment, target) in enumerate(zip(gen.segments, order)):
        base = baseline_gen.segments[i] if baseline_gen and i < len(baseline_gen.segments) else None
        verdict = judge.judge(_judge_item(strip, segment, base, f"{key}#{i}"))
        verdicts.append(verdict)
        judged.append(verdict.choice if not verdict.junk else None)
    hits = [v.hit(t) for v, t in zip(verdicts, order)]
    pairs = [(t, j) for t, j in zip(order, judged) if j is not None]
    rho = spearman([p[0] for p in pairs], [p[1] for p in pairs]) if len(pairs) >= 2 else float("nan")
    return {"key": key, "protocol": spec.name, "condition": condition, "k": k, "strip": strip.comic_id,
            "schedule": order, "segment_tokens": spec.segment_tokens, "n_panels": strip.n_panels,
            "text": gen.text, "segments": gen.segments, "judged": judged, "segment_hits": hits,
            "verdicts": [v.to_dict() for v in verdicts], "spearman": rho,
            "hit": sum(hits) / len(hits) if hits else 0.0, "junk": all(v.junk for v in verdicts)}


def evaluate_strips(
    gm: GazeModel,
    ranking: Ranking,
    strips: Sequence[Strip],
    settings: EvalSettings,
    judge,
    store: JsonlStore,
    *,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    on_record: Callable[[dict], None] | None = None,
) -> JsonlStore:
    """Generate and judge every (strip, condition, target) not yet in `store`."""
    ranking.check_compatible(gm)
    spec = settings.resolved_protocol()
    plan = condition_plan(ranking, settings)
    store.claim(spec.name, run_settings(gm, settings, spec, plan, judge))
    rank, world = shard
    mine = list(strips)[rank::world]

    def save(records: list[dict]) -> None:
        store.add(records)
        for record in records if on_record else []:
            on_record(record)

    chunks = [mine[i : i + settings.strips_per_batch] for i in range(0, len(mine), settings.strips_per_batch)]
    bar = tqdm(total=len(mine), desc=f"{settings.protocol} [{rank}/{world}]", unit="strip", disable=not progress)
    for chunk in chunks:
        _baselines(gm, chunk, spec, settings, store, save)
        for condition, k, heads in plan:
            if spec.segment_tokens:
                jobs = []
                for strip in chunk:
                    order = derangement(strip.n_panels, strip_rng(strip.comic_id, settings.seed))
                    if record_key(spec.name, condition, k, strip.comic_id, "-".join(map(str, order))) not in store:
                        jobs.append((strip, order))
                rows = [(strip, Schedule.every(spec.segment_tokens, [Panel(p) for p in order])) for strip, order in jobs]
                gens = _generate(gm, rows, spec, heads, settings)
                records = []
                for (strip, order), gen in zip(jobs, gens):
                    baseline = store.records[record_key(spec.name, "baseline", 0, strip.comic_id, "-")]
                    base = Generation(baseline["text"], baseline.get("segments", []))
                    records.append(dynamic_record(spec, condition, k, strip, gen, base, order, judge))
            else:
                jobs = [(strip, p) for strip in chunk for p in range(1, strip.n_panels + 1)
                        if record_key(spec.name, condition, k, strip.comic_id, p) not in store]
                gens = _generate(gm, [(strip, Panel(p)) for strip, p in jobs], spec, heads, settings)
                records = [static_record(spec, condition, k, strip, p, gen, _baseline_text(store, spec, strip), judge)
                           for (strip, p), gen in zip(jobs, gens)]
            save(records)
        bar.update(len(chunk))
    bar.close()
    return store


def _baseline_text(store: JsonlStore, spec: Protocol, strip: Strip) -> str:
    return store.records[record_key(spec.name, "baseline", 0, strip.comic_id, "-")]["text"]


def _baselines(gm, chunk, spec, settings, store, save) -> None:
    """Unsteered answers of the strips in `chunk` that have none yet (one batch)."""
    todo = [s for s in chunk if record_key(spec.name, "baseline", 0, s.comic_id, "-") not in store]
    gens = _generate(gm, [(strip, None) for strip in todo], spec, None, settings)
    save([{"key": record_key(spec.name, "baseline", 0, strip.comic_id, "-"), "protocol": spec.name,
           "condition": "baseline", "k": 0, "strip": strip.comic_id, "text": gen.text, "segments": gen.segments,
           "n_tokens": gen.n_tokens} for strip, gen in zip(todo, gens)])
