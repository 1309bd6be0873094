"""`gazeheads reproduce`: the paper's protocol end to end, with the paper's figure beside each measured one.

discover on the discovery strips -> VQA, static narration, dynamic narration (top-K gaze, K random
non-gaze, all heads where the paper ran them) and the top-K sweep on the disjoint evaluation
strips -> judge -> OUT/ with the ranking, every generation, summary.json, paper_vs_measured.json
and report.html. A rerun resumes (same settings); `restart` starts over.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict

from ..files import write_text
from .compare import compare, format_text
from .facts import head_shape, read_config
from .plan import ReproduceConfig, ReproducePlan, Step, plan_reproduction
from .report import comparison_section


def eval_settings(step: Step, plan: ReproducePlan):
    """The evaluation runner's settings for one step of the plan."""
    from ..evaluation.protocols import protocol
    from ..evaluation.runner import EvalSettings

    cfg = plan.config
    name = cfg.topk_protocol if step.protocol == "topk" else step.protocol
    question = step.question if step.question != protocol(name).question else None
    return EvalSettings(
        protocol=step.protocol, conditions=step.conditions, heads=plan.heads, topk=step.ks,
        topk_protocol=cfg.topk_protocol, question=question,
        max_new_tokens=None if step.segment_tokens else step.new_tokens, segment_tokens=step.segment_tokens,
        strips_per_batch=plan.strips_per_batch)


def describe(plan: ReproducePlan) -> str:
    def step(s: Step) -> str:
        sweep = f", K = {', '.join(map(str, s.ks))}" if s.protocol == "topk" else ""
        return f"{s.protocol} ({', '.join(s.conditions)}, {s.new_tokens} tokens{sweep})"

    steps = "; ".join(step(s) for s in plan.steps)
    return (f"K = {plan.k} of {plan.shape.total} heads; data: {plan.data_note}\nsteps: discovery on "
            f"{plan.discover_strips} strips; {steps}")


def run_reproduction(config: ReproduceConfig) -> int:
    """Run the plan; returns the exit code (0 when every step ran and was summarised)."""
    from .. import plots
    from ..data import resolve_comics
    from ..discovery import discover
    from ..evaluation.judges import DeferredJudge, JudgeSpec, make_judge
    from ..evaluation.rejudge import rejudge
    from ..evaluation.runner import evaluate_strips
    from ..evaluation.session import ProcessInfo, finish, open_store
    from ..model import load, resolve_device

    started = time.time()
    spec = JudgeSpec.parse(config.judge)
    plan = plan_reproduction(config, head_shape(read_config(config.model, config.revision)))
    out = plan.out
    judge = make_judge(spec, cache_dir=out)
    judge.check_ready()
    generation_judge = DeferredJudge(judge) if spec.calls_model else judge
    if config.device_map is None:
        resolve_device(config.device)
    discover_strips = resolve_comics(plan.discover_spec, plan.layout.strip, seed=config.seed)
    eval_strips = resolve_comics(plan.eval_spec, plan.layout.strip, seed=config.seed)
    if hasattr(judge, "check_strip"):  # the ground-truth judge needs captions or attributes: see now
        first = eval_strips[0]
        judge.check_strip(first.captions, first.meta.get("attributes"))
    if config.restart:
        shutil.rmtree(out / "discovery-checkpoint", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    print(describe(plan))

    import torch

    dtype = None if config.dtype == "auto" else getattr(torch, config.dtype)
    print(f"loading {config.model or 'the bundled tiny model'} ...", file=sys.stderr)
    gm = load(config.model, device=config.device, dtype=dtype, device_map=config.device_map, revision=config.revision)
    gm.layout = plan.layout
    print(f"[1/{len(plan.steps) + 1}] discovery on {len(discover_strips)} strips")
    ranking = discover(gm, discover_strips, checkpoint_dir=out / "discovery-checkpoint", source=plan.discover_spec)
    ranking.save(out / "ranking.json")
    plots.score_histogram(ranking, out / "discovery_score_histogram.png", top_k=plan.k)
    plots.score_map(ranking, out / "discovery_score_map.png", top_k=plan.k)
    store = open_store(out, ProcessInfo(), resume=not config.restart, restart=config.restart)
    for i, step in enumerate(plan.steps, start=2):
        settings = eval_settings(step, plan)
        print(f"[{i}/{len(plan.steps) + 1}] {step.protocol} on {len(eval_strips)} strips: "
              f"{settings.steer_spec().describe()}")
        evaluate_strips(gm, ranking, eval_strips, settings, generation_judge, store)
    if generation_judge is not judge:
        print(f"judging every answer with {judge.name}")
        rejudge(out, judge, eval_strips)
    settings = {"model": gm.name, "k": plan.k, "heads": plan.heads.to_dict(), "judge": str(spec),
                "discovery": plan.discover_spec, "evaluation": plan.eval_spec, "data": plan.data_note,
                "layout": plan.layout.to_dict(), "steps": [asdict(s) for s in plan.steps],
                "config": asdict(config)}
    rows = finish(out, ProcessInfo(), title=f"gazeheads reproduce: {gm.name}", settings=settings,
                  extra={"run_seconds": round(time.time() - started, 1)})
    if rows is None:
        return 1
    table = compare(rows, plan)
    note = ("Paper: Qwen3-VL-8B-Instruct, COMICS discovery, 500 OpenAI strips, K = 100, Claude judge. "
            f"Here: {gm.name}, {plan.data_note}, K = {plan.k}, judge {spec}.")
    write_text(out / "paper_vs_measured.json", json.dumps({"note": note, "figures": table}, indent=1))
    from ..report import write_run_report

    write_run_report(out, title=f"gazeheads reproduce: {gm.name}", lead_sections=[comparison_section(table, note)],
                     strips=eval_strips)
    print("\npaper vs measured\n" + format_text(table))
    print(f"done in {time.time() - started:.0f} s; wrote {out / 'report.html'}, {out / 'paper_vs_measured.json'}")
    return 0
