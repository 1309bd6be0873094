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

from ..data.strips import Strip
from ..errors import DataError, GazeheadsError
from ..heads import HeadSet
from ..model import GazeModel
from ..progress import progress_bar
from ..ranking import Ranking
from ..regions import Panel, Schedule
from ..specs import DEFAULT_CONTROL_PERCENTILE, HeadSpec, SteerSpec
from ..steering import steer
from .judges import JudgeItem
from .protocols import TOPK_DEFAULT, Protocol, derangement, protocol
from .store import JsonlStore

CONDITIONS = ("gaze", "random", "all")


@dataclass(frozen=True)
class EvalSettings:
    """Everything that decides what is generated (saved with the run).

    `steer` None means the protocol's published steering (see :class:`Protocol`); `heads` gives
    K (None: 8.7% of the heads), the seed and the percentile of the random control; its kind is
    set per condition. `repetition_penalty` and `no_repeat_ngram_size` are generation options
    of the published dynamic-narration script (off by default).
    """

    protocol: str = "narration"
    conditions: tuple[str, ...] = CONDITIONS
    heads: HeadSpec = HeadSpec()
    topk: tuple[int, ...] = TOPK_DEFAULT
    topk_protocol: str = "narration"
    question: str | None = None
    max_new_tokens: int | None = None
    segment_tokens: int | None = None
    steer: SteerSpec | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    batch_targets: bool = True
    strips_per_batch: int = 1

    def __post_init__(self) -> None:
        unknown = sorted(set(self.conditions) - set(CONDITIONS))
        if unknown or not self.conditions:
            raise GazeheadsError(f"Unknown or no condition(s): {unknown or list(self.conditions)}.",
                                 f"Use some of {', '.join(CONDITIONS)}.")
        if not self.topk or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.topk):
            raise GazeheadsError(f"Bad top-K values {self.topk!r}.", "Give whole numbers >= 1, e.g. 5,10,20.")
        for name in ("max_new_tokens", "segment_tokens", "no_repeat_ngram_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise GazeheadsError(f"{name} must be a whole number >= 1, got {value!r}.", f"Give {name} >= 1.")
        if self.repetition_penalty is not None and not self.repetition_penalty > 0:
            raise GazeheadsError(f"repetition_penalty must be > 0, got {self.repetition_penalty!r}.",
                                 "Use 1.0 for none, e.g. 1.2 to discourage repeats.")
        if isinstance(self.strips_per_batch, bool) or not isinstance(self.strips_per_batch, int) \
                or self.strips_per_batch < 1:
            raise GazeheadsError(f"strips_per_batch must be >= 1, got {self.strips_per_batch!r}.",
                                 "Use 1 (default) or more.")
        self.resolved_protocol()

    def resolved_protocol(self) -> Protocol:
        if self.protocol == "dynamic" and self.max_new_tokens is not None:
            raise GazeheadsError("Dynamic narration generates one segment per panel; max_new_tokens does not apply.",
                                 "Set the segment length instead (--segment-tokens, default 50).")
        if self.protocol != "topk":
            return protocol(self.protocol).with_overrides(self.question, self.max_new_tokens, self.segment_tokens)
        base = protocol(self.topk_protocol).with_overrides(self.question, self.max_new_tokens, self.segment_tokens)
        return replace(base, name="topk")

    def steer_spec(self) -> SteerSpec:
        """The steering used: the given spec, else the protocol's published one."""
        return self.steer if self.steer is not None else self.resolved_protocol().steer

    def generation_options(self) -> dict:
        options = {}
        if self.repetition_penalty is not None:
            options["repetition_penalty"] = self.repetition_penalty
        if self.no_repeat_ngram_size is not None:
            options["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        return options

    def to_dict(self) -> dict:
        data = asdict(self)
        data["heads"] = self.heads.to_dict()
        data["steer"] = self.steer_spec().to_dict()
        return data


def condition_plan(ranking: Ranking, settings: EvalSettings) -> list[tuple[str, int, HeadSet]]:
    """(condition, K, head set) triples to run, each head set chosen by one HeadSpec."""
    total = ranking.shape.total
    spec = settings.heads
    if settings.protocol == "topk":
        plan = []
        for k in sorted({min(k, total) for k in settings.topk}):
            plan.append(("gaze", k, ranking.select(replace(spec, kind="gaze", k=k))))
            if "random" in settings.conditions:
                plan.append(("random", k, ranking.select(replace(spec, kind="random", k=k))))
        return plan
    chosen = [(c, ranking.select(replace(spec, kind=c))) for c in settings.conditions]
    return [(c, len(heads), heads) for c, heads in chosen]


def run_settings(gm: GazeModel, settings: EvalSettings, spec: Protocol, plan, judge) -> dict:
    """What decides a section's records, saved beside them and compared when a run resumes.

    Head sets are keyed by condition and K, so a resume may add conditions or K values.
    """
    steering = settings.steer_spec()
    return {"model": gm.fingerprint(), "question": spec.question, "max_new_tokens": spec.max_new_tokens,
            "segment_tokens": spec.segment_tokens, "mode": steering.mode, "strength": steering.strength,
            "phase": steering.phase, "numerics": steering.numerics, "seed": settings.heads.seed,
            "generation": settings.generation_options(), "judge": getattr(judge, "name", type(judge).__name__),
            "heads": {f"{condition}@{k}": [list(h) for h in heads] for condition, k, heads in plan}}


def record_key(protocol_name: str, condition: str, k: int, strip_id: str, target: object) -> str:
    return f"{protocol_name}|{condition}|k={k}|{strip_id}|{target}"


def strip_rng(strip_id: str, seed: int) -> random.Random:
    """A stream that depends only on the strip and the seed (same on every process)."""
    return random.Random(zlib.crc32(f"{seed}:{strip_id}".encode()))


@dataclass
class GeneratedText:
    """One generated answer: its text up to the end token, its segments (dynamic narration), its length."""

    text: str
    segments: list[str] = field(default_factory=list)
    n_tokens: int = 0


def _generate(gm: GazeModel, rows: list[tuple[Strip, object]], spec: Protocol, heads: HeadSet | None,
              settings: EvalSettings) -> list[GeneratedText]:
    """One answer per (strip, target) row, as one batch (or one at a time with batch_targets=False)."""
    if not rows:
        return []
    if not settings.batch_targets and len(rows) > 1:
        return [g for row in rows for g in _generate(gm, [row], spec, heads, settings)]
    encoded = gm.encode([strip for strip, _ in rows], [spec.question] * len(rows))
    new_tokens = spec.new_tokens(max(strip.n_panels for strip, _ in rows))
    options = settings.generation_options()
    if heads is None:
        ids = gm.generate_ids(encoded, new_tokens, **options)
    else:
        with steer(gm, heads, [target for _, target in rows], encoded, settings.steer_spec()):
            ids = gm.generate_ids(encoded, new_tokens, **options)
    return [split_generation(gm, row, spec, strip.n_panels) for (strip, _), row in zip(rows, ids)]


def split_generation(gm: GazeModel, ids: torch.Tensor, spec: Protocol, n_panels: int = 0) -> GeneratedText:
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
    return GeneratedText(text, segments, len(kept))


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
    allow_overlap: bool = False,
) -> JsonlStore:
    """Generate and judge every (strip, condition, target) not yet in `store`.

    Strips the ranking was discovered on are refused unless `allow_overlap` (testing steering on
    the strips that chose the heads flatters it); `strips` may be a lazy StripSet.
    """
    if len(strips) == 0:
        raise DataError("No strips to evaluate.", "Give at least one strip (check --n-strips and the slice).")
    ranking.check_compatible(gm)
    spec = settings.resolved_protocol()
    plan = condition_plan(ranking, settings)
    store.claim(spec.name, run_settings(gm, settings, spec, plan, judge))
    rank, world = shard
    mine = range(rank, len(strips), world)
    source = getattr(strips, "source", "")

    def save(records: list[dict]) -> None:
        store.add(records)
        for record in records if on_record else []:
            on_record(record)

    def load(index: int) -> Strip:
        strip = strips[index]
        if not allow_overlap:
            check_disjoint(ranking, [strip], source)
        return strip

    label = settings.protocol if world == 1 else f"{settings.protocol} (process {rank + 1} of {world})"
    bar = progress_bar(total=len(mine) * len(plan), desc=label, unit="strip x condition", disable=not progress)
    per_batch = settings.strips_per_batch
    for start in range(0, len(mine), per_batch):
        chunk = [load(i) for i in mine[start:start + per_batch]]
        _baselines(gm, chunk, spec, settings, store, save, judge)
        for condition, k, heads in plan:
            bar.set_postfix_str(f"K={k} {condition}", refresh=False)
            if spec.segment_tokens:
                jobs = []
                for strip in chunk:
                    order = derangement(strip.n_panels, strip_rng(strip.comic_id, settings.heads.seed))
                    if record_key(spec.name, condition, k, strip.comic_id, "-".join(map(str, order))) not in store:
                        jobs.append((strip, order))
                rows = [(strip, Schedule.every(spec.segment_tokens, [Panel(p) for p in order])) for strip, order in jobs]
                gens = _generate(gm, rows, spec, heads, settings)
                records = []
                for (strip, order), gen in zip(jobs, gens):
                    baseline = store.records[record_key(spec.name, "baseline", 0, strip.comic_id, "-")]
                    base = GeneratedText(baseline["text"], baseline.get("segments", []))
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


def check_disjoint(ranking: Ranking, strips: Sequence[Strip], source: str) -> None:
    """A DataError naming the strips the ranking was discovered on, with the two ways out."""
    overlap = ranking.overlap(strips, source)
    if overlap:
        raise overlap_error(overlap)


def overlap_error(overlap: Sequence[str]) -> DataError:
    shown = ", ".join(overlap[:5]) + (f" and {len(overlap) - 5} more" if len(overlap) > 5 else "")
    return DataError(
            f"The evaluation strips include strips the ranking was discovered on ({shown}): steering would be "
            "tested on the data that chose the heads.",
            "Evaluate on a disjoint slice (e.g. --comics hf:baulab/openai-comic-strips[250:500] after discovering "
            "on [0:250]), or pass --allow-overlap to do it anyway.",
        )


def _baseline_text(store: JsonlStore, spec: Protocol, strip: Strip) -> str:
    return store.records[record_key(spec.name, "baseline", 0, strip.comic_id, "-")]["text"]


def _baselines(gm, chunk, spec, settings, store, save, judge) -> None:
    """Unsteered answers of the strips in `chunk` that have none yet (one batch), judged like the others."""
    todo = [s for s in chunk if record_key(spec.name, "baseline", 0, s.comic_id, "-") not in store]
    gens = _generate(gm, [(strip, None) for strip in todo], spec, None, settings)
    save([baseline_record(spec, strip, gen, judge) for strip, gen in zip(todo, gens)])


def baseline_record(spec: Protocol, strip: Strip, gen: GeneratedText, judge) -> dict:
    """The record of a strip's unsteered answer, with the panel it describes (a verdict per segment for
    dynamic narration), so the report can show where the model looks on its own."""
    key = record_key(spec.name, "baseline", 0, strip.comic_id, "-")
    record = {"key": key, "protocol": spec.name, "condition": "baseline", "k": 0, "strip": strip.comic_id,
              "text": gen.text, "segments": gen.segments, "n_tokens": gen.n_tokens}
    if gen.segments:
        record["verdicts"] = [judge.judge(_judge_item(strip, segment, None, f"{key}#{i}")).to_dict()
                              for i, segment in enumerate(gen.segments)]
    else:
        record["verdict"] = judge.judge(_judge_item(strip, gen.text, None, key)).to_dict()
    return record
