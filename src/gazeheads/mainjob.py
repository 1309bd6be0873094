"""`gazeheads run`: the whole story in one command, on the bundled model by default.

discover gaze heads -> steer (top-K gaze vs K random non-gaze vs all heads) on the ambiguous
panel question, VQA, dynamic narration and scene boxes -> track an unsteered narration with
gaze and control heads, and a steered one -> runs/<name>/ with the ranking, every
generation, aggregates and report.html.

    config = MainJobConfig(quick=True)
    run_main_job(config)
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import plots
from .errors import GazeheadsError
from .files import write_text

if TYPE_CHECKING:
    from .layout import ModelLayout
    from .model import GazeModel
    from .ranking import Ranking

SYNTH_DISCOVERY_SEED = 300_000  # never a training strip, never an evaluation strip
SYNTH_EVAL_SEED = 100_000
SYNTH_SCENE_SEED = 200_000
MONITOR_DIR = "monitor"  # RUN/monitor: `gazeheads eval monitor` output shown in RUN/report.html


@dataclass(frozen=True)
class MainJobConfig:
    """Everything `gazeheads run` needs (None: a default chosen from the model's layout and `quick`)."""

    model: str | None = None
    revision: str | None = None
    device: str | None = None
    dtype: str = "auto"
    device_map: str | None = None
    comics: str | None = None
    quick: bool = False
    discover_strips: int | None = None
    eval_strips: int | None = None
    scenes: int | None = None
    k: int | None = None
    control_percentile: float | None = None
    judge: str = "truth"
    seed: int = 0
    name: str | None = None
    out_root: str = "runs"
    restart: bool = False
    strip_height: int | None = None
    strip_gap: int | None = None
    numerics: str | None = None


@dataclass(frozen=True)
class RunPlan:
    """Sizes and data of one run, decided from the config and the model's layout before any work."""

    out: Path
    layout: "ModelLayout"
    discover_spec: str
    eval_spec: str
    split_note: str
    discover_strips: int
    eval_strips: int
    scenes: int
    answer_tokens: int | None
    segment_tokens: int | None
    strips_per_batch: int
    numerics: str | None = None
    extra: dict = field(default_factory=dict)


def plan_run(config: MainJobConfig) -> RunPlan:
    """Check the config and decide the run (reads no weights): raises before any work on bad input."""
    from dataclasses import replace as dc_replace

    from .data.spec import check_comics, disjoint_split, parse_comics
    from .layout import read_layout

    for name in ("discover_strips", "eval_strips", "k"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise GazeheadsError(f"{name.replace('_', '-')} {value}: must be at least 1.", "Give 1 or more.")
    if config.scenes is not None and config.scenes < 0:
        raise GazeheadsError(f"--scenes {config.scenes}: must be 0 or more.", "Give 0 to skip scenes.")
    from .files import check_output_dir, check_run_name

    out = check_run_name(Path(config.out_root), config.name or ("quick" if config.quick else "main"))
    check_output_dir(out)
    layout = read_layout(config.model)
    layout = dc_replace(layout, strip=layout.strip.replace(height=config.strip_height, gap=config.strip_gap))
    quick = config.quick
    if layout.synthetic and config.comics is None:
        d = config.discover_strips or (8 if quick else 40)
        e = config.eval_strips or (6 if quick else 100)
        discover_spec = f"synth:{SYNTH_DISCOVERY_SEED}[0:{d}]"
        eval_spec = f"synth:{SYNTH_EVAL_SEED}[0:{e}]"
        note = (f"discovery on synthetic strips of seeds {SYNTH_DISCOVERY_SEED}+, evaluation on seeds "
                f"{SYNTH_EVAL_SEED}+ (disjoint, and never training strips)")
        scenes = config.scenes if config.scenes is not None else (8 if quick else 100)
        per_batch = 20
    else:
        if config.comics is None:
            raise GazeheadsError("A model not trained on gazeheads' synthetic strips needs real strips.",
                                 "Pass --comics FOLDER or hf:baulab/openai-comic-strips (see `gazeheads run --help`).")
        check_comics(parse_comics(config.comics))
        d = config.discover_strips or (6 if quick else 50)
        e = config.eval_strips or (6 if quick else 100)
        discover_spec, eval_spec = disjoint_split(config.comics, d, e)
        note = f"discovery on {discover_spec}, evaluation on {eval_spec} (disjoint slices of {config.comics})"
        scenes = 0
        per_batch = 1
    return RunPlan(out=out, layout=layout, discover_spec=discover_spec, eval_spec=eval_spec, split_note=note,
                   discover_strips=d, eval_strips=e, scenes=scenes, answer_tokens=layout.answer_tokens,
                   segment_tokens=layout.segment_tokens, strips_per_batch=per_batch, numerics=config.numerics)


def run_main_job(config: MainJobConfig) -> int:
    """Run the main job; returns the process exit code."""
    from .data import resolve_comics
    from .discovery import discover
    from .evaluation.judges import DeferredJudge, JudgeSpec, make_judge
    from .evaluation.rejudge import rejudge
    from .evaluation.runner import EvalSettings, evaluate_strips
    from .evaluation.session import ProcessInfo, finish, open_store
    from .model import load, resolve_device
    from .specs import HeadSpec

    started = time.time()
    judge_spec = JudgeSpec.parse(config.judge)  # a bad spec fails before anything loads
    plan = plan_run(config)
    out = plan.out
    judge = make_judge(judge_spec, cache_dir=out)  # LLM judges keep out/verdicts.jsonl and out/judge-batches.jsonl
    judge.check_ready()  # a missing key or package fails before discovery and generation
    generation_judge = DeferredJudge(judge) if judge_spec.calls_model else judge
    if config.device_map is None:
        resolve_device(config.device)
    discover_strips = resolve_comics(plan.discover_spec, plan.layout.strip, seed=config.seed)
    eval_strips = resolve_comics(plan.eval_spec, plan.layout.strip, seed=config.seed)
    if config.restart:
        shutil.rmtree(out / "discovery-checkpoint", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)

    import torch

    dtype = None if config.dtype == "auto" else getattr(torch, config.dtype)
    print(f"loading {config.model or 'the bundled tiny model'} ...", file=sys.stderr)
    gm = load(config.model, device=config.device, dtype=dtype, device_map=config.device_map, revision=config.revision)
    gm.layout = plan.layout
    percentile = config.control_percentile if config.control_percentile is not None else plan.layout.control_percentile
    heads = HeadSpec(k=config.k, seed=config.seed, percentile=percentile)
    k = heads.resolve_k(gm.shape.total)
    print(f"layout: {plan.layout.describe()}\ndata: {plan.split_note}")

    print(f"[1/4] discovery on {len(discover_strips)} strips")
    ranking = discover(gm, discover_strips, checkpoint_dir=out / "discovery-checkpoint", source=plan.discover_spec)
    ranking.save(out / "ranking.json")  # the report draws its figures (discovery_*.png)

    store = open_store(out, ProcessInfo(), resume=not config.restart, restart=config.restart)
    common = dict(heads=heads, strips_per_batch=plan.strips_per_batch)
    steer = {} if plan.numerics is None else {"numerics": plan.numerics}
    protocols = [EvalSettings(protocol="narration", max_new_tokens=plan.answer_tokens, **common),
                 EvalSettings(protocol="vqa", max_new_tokens=min(15, plan.answer_tokens or 15), **common),
                 EvalSettings(protocol="dynamic", question=plan.layout.narration_question,
                              segment_tokens=plan.segment_tokens, **common)]
    if steer:
        protocols = [replace(s, steer=s.steer_spec().replace(**steer)) for s in protocols]
    used = {s.protocol: s.steer_spec().describe() for s in protocols}
    print(f"[2/4] steering on {len(eval_strips)} held-out strips: narration, vqa, dynamic (K={k})")
    for name, text in used.items():
        print(f"      {name}: {text}")
    for settings in protocols:
        evaluate_strips(gm, ranking, eval_strips, settings, generation_judge, store)
    coco: tuple[str | None, str | None] = (None, None)
    if plan.scenes:
        print(f"[3/4] box steering on {plan.scenes} synthetic scenes")
        coco = _scenes(gm, ranking, out, plan, store, generation_judge, common, steer)
    else:
        print("[3/4] scenes skipped (use `gazeheads eval coco` with COCO val2017 for a real model)")
    if generation_judge is not judge:
        print(f"judging every answer with {judge.name}")
        rejudge(out, judge, eval_strips, coco=coco)

    print("[4/4] tracking narrations: unsteered (gaze vs control heads) and steered")
    tracking = track_examples(gm, ranking, eval_strips[0], out, heads, plan)
    settings = {"model": gm.name, "k": k, "heads": heads.to_dict(), "control_percentile": percentile,
                "seed": config.seed, "discover_strips": len(discover_strips), "eval_strips": len(eval_strips),
                "scenes": plan.scenes, "judge": str(judge_spec), "layout": plan.layout.to_dict(),
                "data": plan.split_note, "steering": used, "config": asdict(config)}
    rows = finish(out, ProcessInfo(), title=f"Gaze heads of {gm.name}", settings=settings,
                  extra={"tracking": tracking, "run_seconds": round(time.time() - started, 1)},
                  extra_sections=monitor_sections(out), strips=eval_strips)
    print(f"done in {time.time() - started:.0f} s")
    print("wrote " + ", ".join(str(out / f) for f in ("ranking.json", "generations.jsonl", "summary.json",
                                                        "report.html")))
    return 0 if rows is not None else 1


def _scenes(gm, ranking, out: Path, plan: RunPlan, store, judge, common: dict, steer: dict) -> tuple[str, str]:
    from .evaluation.coco import evaluate_coco, load_instances
    from .evaluation.runner import EvalSettings
    from .synth import write_synthetic_scenes

    scene_dir = out / "scenes"
    instances = write_synthetic_scenes(scene_dir, plan.scenes, seed=SYNTH_SCENE_SEED)
    objects, categories = load_instances(instances)
    settings = EvalSettings(protocol="coco", conditions=("gaze", "random"), max_new_tokens=plan.answer_tokens, **common)
    if steer:
        settings = replace(settings, steer=settings.steer_spec().replace(**steer))
    evaluate_coco(gm, ranking, objects, categories, scene_dir, settings, judge, store)
    return str(instances), str(scene_dir)  # what re-judging the scene records needs


def monitor_sections(out: Path) -> list:
    """The monitoring section, when `gazeheads eval monitor --out RUN/monitor` has measured the monitor."""
    from .monitor.report import SUMMARY, monitor_report_section

    return [monitor_report_section(out / MONITOR_DIR)] if (out / MONITOR_DIR / SUMMARY).is_file() else []


def track_examples(gm: "GazeModel", ranking: "Ranking", strip, out: Path, heads, plan: RunPlan) -> dict:
    """Two tracked narrations of one strip: unsteered, by the gaze heads and by control heads (the
    phenomenon), and steered by a schedule (the intervention). Writes their figures and tracking.json."""
    from .evaluation.protocols import derangement, protocol
    from .evaluation.runner import strip_rng
    from .regions import Panel, Schedule
    from .steering import steer
    from .tracking import track

    question = plan.layout.narration_question
    segment = plan.segment_tokens or protocol("dynamic").segment_tokens
    n_new = segment * strip.n_panels
    gaze = ranking.select(replace(heads, kind="gaze"))
    control = ranking.select(replace(heads, kind="random"))
    encoded = gm.encode(strip, question)
    traces = {}
    for name, head_set in (("gaze", gaze), ("control", control)):
        with track(gm, head_set, encoded) as tracker:
            ids = gm.generate_ids(encoded, n_new)
        traces[name] = tracker.trace()
    tokens = gm.tokenizer.convert_ids_to_tokens(ids[0])[: traces["gaze"].raw.shape[1]]
    text = gm.decode(ids)[0]
    separator = "." if plan.layout.synthetic else None  # the bundled model narrates "caption . caption ."
    plots.tracking_pair(traces["gaze"], traces["control"], out / "tracking_unsteered.png", tokens=tokens,
                        labels=(gaze.name, control.name),
                        transitions=plots.narration_transitions(tokens, strip.n_panels, separator=separator),
                        title=f"Unsteered narration of {strip.comic_id}, tracked by gaze heads and by control heads")
    order = derangement(strip.n_panels, strip_rng(strip.comic_id, 0))
    schedule = Schedule.every(segment, [Panel(p) for p in order])
    spec = protocol("dynamic").steer
    with steer(gm, gaze, schedule, encoded, spec), track(gm, gaze, encoded) as tracker:
        steered_ids = gm.generate_ids(encoded, n_new)
    steered = tracker.trace()
    steered_tokens = gm.tokenizer.convert_ids_to_tokens(steered_ids[0])[: steered.raw.shape[1]]
    steered_text = gm.decode(steered_ids)[0]
    plots.tracking_staircase(steered, out / "tracking_steered.png", tokens=steered_tokens,
                             scheduled=plots.scheduled_regions(schedule, steered.raw.shape[1]),
                             title=f"STEERED narration of {strip.comic_id}: {gaze.name} forced to panels "
                                   f"{'-'.join(map(str, order))} ({segment} tokens each, {spec.phase}) and "
                                   f"tracked by the same heads")
    result = {"strip": strip.comic_id, "question": question, "unsteered": {"text": text, "tokens": tokens,
              "gaze": traces["gaze"].to_dict(), "control": traces["control"].to_dict(),
              "gaze_heads": gaze.name, "control_heads": control.name},
              "steered": {"text": steered_text, "tokens": steered_tokens, "schedule": order, "segment_tokens": segment,
                          "trace": steered.to_dict(), "steering": spec.to_dict()}}
    write_text(out / "tracking.json", json.dumps(result))
    return {"strip": strip.comic_id, "unsteered_text": text, "steered_text": steered_text, "schedule": order,
            "gaze_heads": gaze.name, "control_heads": control.name}
