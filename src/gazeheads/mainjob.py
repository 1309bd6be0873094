"""`gazeheads run`: the whole story in one command, on the bundled model by default.

discover gaze heads -> steer (top-K gaze vs K random non-gaze vs all heads) on the ambiguous
panel question, VQA, dynamic narration and scene boxes -> track a steered narration ->
runs/<name>/ with the ranking, every generation, aggregates and report.html.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from . import plots, prompts
from .errors import GazeheadsError


@dataclass
class RunPlan:
    """Sizes of one main-job run."""

    discover_strips: int
    eval_strips: int
    scenes: int
    max_new_tokens: int
    segment_tokens: int | None
    dynamic_question: str
    strips_per_batch: int = 1


def bundled_layout(model_path: Path | None) -> dict:
    """The bundled model's strip layout and narration prompt (its gazeheads.json), or {}."""
    if model_path is None:
        return {}
    meta = Path(model_path) / "gazeheads.json"
    return json.loads(meta.read_text()).get("layout", {}) if meta.exists() else {}


def model_layout(model: str | None) -> dict:
    """The layout of `--model`: the bundled model's when None, a local folder's, else {}."""
    from .assets import bundled_model_path

    if model is None:
        return bundled_layout(bundled_model_path())
    return bundled_layout(Path(model)) if Path(str(model)).is_dir() else {}


def plan_for(args, layout: dict) -> RunPlan:
    if layout:  # the bundled model: short synthetic answers
        quick = args.quick
        return RunPlan(
            discover_strips=args.discover_strips or (8 if quick else 40),
            eval_strips=args.n_strips or (6 if quick else 100),
            scenes=args.scenes if args.scenes is not None else (8 if quick else 100),
            max_new_tokens=4,
            segment_tokens=3,
            dynamic_question=layout.get("narrate_prompt", prompts.NARRATION_QUESTION),
            strips_per_batch=20,
        )
    return RunPlan(
        discover_strips=args.discover_strips or (6 if args.quick else 50),
        eval_strips=args.n_strips or (6 if args.quick else 100),
        scenes=0,
        max_new_tokens=100,
        segment_tokens=50,
        dynamic_question=prompts.NARRATION_QUESTION,
    )


def run_main_job(args) -> int:
    from .cli import _load_model
    from .heads import default_k
    from .discovery import discover
    from .evaluation.cli import resolve_strips
    from .evaluation.judges import make_judge
    from .evaluation.runner import EvalSettings, evaluate_strips
    from .evaluation.session import ProcessInfo, finish, open_store

    started = time.time()
    layout = model_layout(args.model)
    plan = plan_for(args, layout)
    out = Path(args.out_root) / (args.name or ("quick" if args.quick else "main"))
    restart = getattr(args, "restart", False)
    if restart:  # the generations go when the store opens without resume
        shutil.rmtree(out / "discovery-checkpoint", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    gm = _load_model(args)
    height = args.strip_height or layout.get("strip_height") or 256
    if not layout and args.comics is None:
        raise GazeheadsError("A real model needs real strips.", "Pass --comics FOLDER or hf:baulab/openai-comic-strips.")
    k = args.k or default_k(gm.shape.total)
    percentile = args.control_percentile if args.control_percentile is not None else (50.0 if layout else 5.0)

    # 1. discovery on strips disjoint from the evaluation strips
    spec = args.comics or "synth"
    if spec.startswith("synth"):
        discover_strips = resolve_strips("synth:300000", bundled=True, n=plan.discover_strips, n_panels=6,
                                         height=height)
        eval_strips = resolve_strips("synth:100000", bundled=True, n=plan.eval_strips, n_panels=6, height=height)
    else:
        both = resolve_strips(spec, bundled=False, n=plan.discover_strips + plan.eval_strips, n_panels=6,
                              height=height, seed=args.seed)
        discover_strips, eval_strips = both[: plan.discover_strips], both[plan.discover_strips :]
    print(f"[1/4] discovery on {len(discover_strips)} strips")
    ranking = discover(gm, discover_strips, checkpoint_dir=out / "discovery-checkpoint", source=spec)
    ranking.save(out / "ranking.json")
    plots.score_histogram(ranking, out / "discovery_score_histogram.png", top_k=k)
    plots.score_map(ranking, out / "discovery_score_map.png")
    plots.panel_matrices(ranking, out / "discovery_panel_matrices.png")

    # 2. steering protocols with the ground-truth judge
    judge = make_judge(args.judge)
    judge.check_ready()
    store = open_store(out, ProcessInfo(), resume=not restart)
    common = dict(k=k, control_percentile=percentile, seed=args.seed, strips_per_batch=plan.strips_per_batch)
    protocols = [
        EvalSettings(protocol="narration", max_new_tokens=plan.max_new_tokens, **common),
        EvalSettings(protocol="vqa", max_new_tokens=min(15, plan.max_new_tokens), **common),
        EvalSettings(protocol="dynamic", question=plan.dynamic_question, segment_tokens=plan.segment_tokens,
                     **common),
    ]
    print(f"[2/4] steering on {len(eval_strips)} held-out strips: narration, vqa, dynamic (K={k})")
    for settings in protocols:
        evaluate_strips(gm, ranking, eval_strips, settings, judge, store)
    if plan.scenes:
        print(f"[3/4] box steering on {plan.scenes} synthetic scenes")
        _scenes(gm, ranking, out, plan, store, judge, common)
    else:
        print("[3/4] scenes skipped (use `gazeheads eval coco` with COCO val2017 for a real model)")

    # 4. track one steered dynamic narration
    print("[4/4] tracking a steered narration")
    _track_example(gm, ranking, eval_strips[0], out, k, plan)
    rows = finish(out, ProcessInfo(), title=f"gazeheads run: {gm.name}",
                  settings={"model": gm.name, "k": k, "control_percentile": percentile, "seed": args.seed,
                            "discover_strips": len(discover_strips), "eval_strips": len(eval_strips),
                            "scenes": plan.scenes, "judge": args.judge})
    print(f"done in {time.time() - started:.0f} s: {out / 'report.html'}")
    return 0 if rows is not None else 1


def _scenes(gm, ranking, out: Path, plan: RunPlan, store, judge, common: dict) -> None:
    from .evaluation.coco import evaluate_coco, load_instances
    from .evaluation.runner import EvalSettings
    from .synth import write_synthetic_scenes

    scene_dir = out / "scenes"
    instances = write_synthetic_scenes(scene_dir, plan.scenes, seed=200_000)
    objects, categories = load_instances(instances)
    settings = EvalSettings(protocol="coco", conditions=("gaze", "random"), max_new_tokens=plan.max_new_tokens,
                            **common)
    evaluate_coco(gm, ranking, objects, categories, scene_dir, settings, judge, store)


def _track_example(gm, ranking, strip, out: Path, k: int, plan: RunPlan) -> None:
    from .evaluation.protocols import derangement
    from .evaluation.runner import strip_rng
    from .regions import Panel, Schedule
    from .steering import steer
    from .tracking import track

    order = derangement(strip.n_panels, strip_rng(strip.comic_id, 0))
    schedule = Schedule.every(plan.segment_tokens, [Panel(p) for p in order])
    encoded = gm.encode(strip, plan.dynamic_question)
    heads = ranking.top(k)
    with steer(gm, heads, schedule, encoded), track(gm, heads, encoded) as tracker:
        ids = gm.generate_ids(encoded, plan.segment_tokens * strip.n_panels)
    trace = tracker.trace()
    tokens = gm.tokenizer.convert_ids_to_tokens(ids[0])[: trace.raw.shape[1]]
    scheduled = [order[min(i // plan.segment_tokens, len(order) - 1)] - 1 for i in range(trace.raw.shape[1])]
    plots.tracking_staircase(trace, out / "tracking_staircase.png", tokens=tokens, scheduled=scheduled,
                             title=f"steered narration, schedule {order}: {gm.decode(ids)[0][:70]}")
    (out / "tracking.json").write_text(json.dumps({"strip": strip.comic_id, "schedule": order, "tokens": tokens,
                                                   "text": gm.decode(ids)[0], "trace": trace.to_dict()}))
