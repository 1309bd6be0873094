"""`gazeheads monitor` (watch one generation) and `gazeheads eval monitor` (measure the monitor).

The evaluation shares the `eval` command's parser: :func:`add_eval_options` adds its options
there and :func:`run_eval` runs it when the protocol is "monitor".
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from ..errors import GazeheadsError
from . import options
from .steer import add_generation_options, prepare

OUTPUTS = ("monitor.json",)
GROUPS_HELP = "strength,mode,phase,k,random,schedule,question,scene"


def register(sub) -> None:
    p = sub.add_parser(
        "monitor", help="watch a generation for redirected attention (optionally while steering it)",
        description="Generate an answer while a monitor that sees only attention (never the steering plan) scores "
                    "every step and the whole generation for redirected gaze. Give --panel/--box/--schedule to "
                    "steer the same generation and see what the monitor makes of it. Without --calibration (from "
                    "`gazeheads eval monitor`) the scores are raw and no decision is made.")
    add_generation_options(p, required_target=False)
    group = p.add_argument_group("monitor")
    group.add_argument("--calibration", default=None,
                       help="monitor_calibration.json from `gazeheads eval monitor` on this model (thresholds, probe)")
    group.add_argument("--monitor-k", type=int, default=None,
                       help="gaze heads the monitor watches, the top of --ranking (default: the calibration's, else "
                            "8.7%% of the heads)")
    group.add_argument("--shadow", action="store_true",
                       help="also replay the generation on a second, untouched copy of the weights (shadow detector)")
    group.add_argument("--fpr", type=float, default=0.01, help="false-positive rate of the decisions (default 0.01)")
    options.add_output_options(p, "runs/monitor")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..files import write_text
    from ..monitor import Calibration, monitor, shadow_model
    from ..steering import steer

    options.require_positive(args, "monitor_k")
    _check_rate(args.fpr)
    out = options.check_output_dir(Path(args.out), OUTPUTS, overwrite=args.overwrite)
    calibration = Calibration.load(options.readable_file(args.calibration, "--calibration")) \
        if args.calibration else None
    if args.ranking is None and calibration is None:
        raise GazeheadsError("The monitor needs its own gaze heads.",
                             "Pass --ranking runs/<name>/ranking.json or --calibration RUN/monitor_calibration.json.")
    gm, heads, question, encoded, target, spec = prepare(args)
    ranking = options.load_ranking(args.ranking)
    shadow = shadow_model(gm) if args.shadow else None
    steering = steer(gm, heads, target, encoded, spec, client="cli") if target is not None else contextlib.nullcontext()
    with steering, monitor(gm, ranking, encoded, calibration=calibration, shadow=shadow, fpr=args.fpr,
                           k=args.monitor_k) as watcher:
        ids = gm.generate_ids(encoded, args.max_new_tokens)
    result = watcher.result(ids)
    text = gm.decode(ids)[0]
    tokens = gm.tokenizer.convert_ids_to_tokens(ids[0])[: int(result.lengths[0])]
    print(f"answer: {text}" + (f"  (steered to {target!r} with {heads.name}, {spec.describe()})" if target else ""))
    print(_step_table(result, tokens))
    for name in result.detectors:
        score = result.generation_scores[name][0]
        verdict = ""
        if name in result.generation_p:
            flagged = bool(result.flagged(name)[0])
            verdict = f"  p = {result.generation_p[name][0]:.4f}  {'REDIRECTED' if flagged else 'not flagged'} at " \
                      f"FPR {args.fpr:g}"
        print(f"generation {name:8s} score {score:9.4f}{verdict}")
    if not result.calibrated:
        print("(no --calibration: raw scores only; run `gazeheads eval monitor` to calibrate thresholds)")
    written = write_text(out / "monitor.json", json.dumps({
        "question": question, "text": text, "tokens": tokens, "target": repr(target) if target else None,
        "steering": spec.to_dict() if target is not None else None, "result": result.to_dict()}, indent=1))
    options.print_written([written])
    return 0


def _step_table(result, tokens: list[str]) -> str:
    names = list(result.detectors)
    lines = ["step  token         " + " ".join(f"{n:>14s}" for n in names)]
    for step, token in enumerate(tokens):
        cells = []
        for name in names:
            score = result.step_scores[name][0, step]
            mark = ""
            if name in result.step_p:
                mark = " *" if bool(result.flagged(name, "step")[0, step]) else "  "
            cells.append(f"{score:12.4f}{mark}")
        lines.append(f"{step:4d}  {token[:12]:12s}  " + " ".join(cells))
    if result.calibrated:
        lines.append("(* over the per-step threshold)")
    return "\n".join(lines)


def _check_rate(fpr: float) -> None:
    if not 0 < fpr < 1:
        raise GazeheadsError(f"--fpr {fpr}: a false-positive rate is strictly between 0 and 1.", "Use e.g. 0.01.")


# gazeheads eval monitor ------------------------------------------------------------------


def add_eval_options(p: argparse.ArgumentParser) -> None:
    """The options of `gazeheads eval monitor`, added to the `eval` parser."""
    group = p.add_argument_group("monitor (eval monitor only)")
    group.add_argument("--n-fit", type=int, default=60,
                       help="fitting strips: the first of --fit-comics, or without it the first of --comics, with the "
                            "--n-strips held-out strips following them (default 60)")
    group.add_argument("--fit-comics", default=None,
                       help="strips to fit and calibrate the detectors on (same forms as --comics), disjoint from the "
                            "held-out --comics; default: the start of --comics")
    group.add_argument("--n-scenes", type=int, default=None,
                       help="held-out synthetic scenes (default 40 for a model trained on them, else 0)")
    group.add_argument("--n-fit-scenes", type=int, default=None,
                       help="fitting synthetic scenes (default 40 for a model trained on them, else 0)")
    group.add_argument("--scene-seed", type=int, default=200_000,
                       help="first scene seed; the fitting scenes come first (default 200000, never a training scene)")
    group.add_argument("--strengths", default="1,3,10,30,100,300,1000,3000,10000",
                       help="bias strengths B of the strength sweep (default log-spaced 1..10000)")
    group.add_argument("--monitor-ks", default=None,
                       help="other K values steered at B = 10000 (default 1, 2 and twice the default K)")
    group.add_argument("--groups", default=GROUPS_HELP, help=f"condition groups to run (default all: {GROUPS_HELP})")
    group.add_argument("--monitor-ranking", default=None,
                       help="the monitor's own ranking (default: --ranking, the one the steering uses)")
    group.add_argument("--monitor-k", type=int, default=None,
                       help="gaze heads the monitor watches (default 8.7%% of the heads)")
    group.add_argument("--onset-step", type=int, default=None,
                       help="step at which onset steering starts (default: the middle panel's first token)")
    group.add_argument("--fpr", type=float, default=0.01, help="false-positive rate of the thresholds (default 0.01)")
    group.add_argument("--no-shadow", action="store_true", help="skip the shadow detector (no second model copy)")
    group.add_argument("--batch", type=int, default=32, help="generations per batch (default 32)")
    group.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples per interval (default 2000)")


def _parse_floats(text: str, option: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise GazeheadsError(f"{option} {text!r}: not a comma-separated list of numbers.",
                             f"Write e.g. {option} 1,10,100,10000.") from None
    if not values or any(not v > 0 for v in values):
        raise GazeheadsError(f"{option} {text!r}: every value must be positive.", f"Write e.g. {option} 1,10,10000.")
    return values


def _refuse_other_protocol_options(args: argparse.Namespace) -> None:
    given = [flag for flag, value in (("--rejudge", args.rejudge), ("--coco-instances", args.coco_instances),
                                      ("--coco-images", args.coco_images), ("--one-at-a-time", args.one_at_a_time))
             if value]
    if args.judge != "truth":
        given.append("--judge")
    if given:
        raise GazeheadsError(f"{', '.join(given)}: not used by `gazeheads eval monitor`.",
                             "Drop them: the monitor evaluation judges detection, not answers.")


def scene_counts(args: argparse.Namespace, layout) -> tuple[int, int]:
    """(fitting, held-out) synthetic scenes: 40 each by default for a model trained on them, else none."""
    default = 40 if layout.synthetic else 0
    return (args.n_fit_scenes if args.n_fit_scenes is not None else default,
            args.n_scenes if args.n_scenes is not None else default)


def eval_settings(args: argparse.Namespace, layout, ranking):
    """The evaluation's settings from the options (checked; nothing is loaded)."""
    from .. import prompts
    from ..monitor.design import Design
    from ..monitor.evaluate import MonitorEvalSettings
    from ..monitor.generate import Budget
    from ..specs import default_k

    total = ranking.shape.total
    k = options.head_spec(args, layout).resolve_k(total)
    ks = options.parse_ints(args.monitor_ks, "--monitor-ks") if args.monitor_ks else (1, 2, min(2 * k, total))
    if max(ks) > total:
        raise GazeheadsError(f"--monitor-ks asks for {max(ks)} heads of a model with {total}.",
                             f"Give K values up to {total}.")
    groups = tuple(g.strip() for g in args.groups.split(",") if g.strip())
    n_panels = layout.strip.n_panels
    segment = args.segment_tokens or layout.segment_tokens or 50
    narrate = args.max_new_tokens or (segment * n_panels + 1 if layout.segment_tokens else 100)
    onset = args.onset_step if args.onset_step is not None else (
        segment * (n_panels // 2) if segment * (n_panels // 2) < narrate else narrate // 2)
    if not 1 <= onset < narrate:
        raise GazeheadsError(f"--onset-step {onset} for narrations of {narrate} tokens.",
                             f"Give a step from 1 to {narrate - 1}.")
    scenes = sum(scene_counts(args, layout)) > 0
    numerics = args.numerics or "reference"
    design = Design(k=k, strengths=_parse_floats(args.strengths, "--strengths"), ks=ks, groups=groups,
                    numerics=numerics, panel_prompt=layout.narration_question != prompts.NARRATION_QUESTION,
                    scenes=scenes)
    budget = Budget(narrate_tokens=narrate, answer_tokens=layout.answer_tokens or 15, segment_tokens=segment,
                    onset_step=onset)
    monitor_k = args.monitor_k or default_k(total)
    return MonitorEvalSettings(design=design, budget=budget, question=args.question or layout.narration_question,
                               monitor_k=monitor_k, seed=args.seed, control_percentile=(
                                   args.control_percentile if args.control_percentile is not None
                                   else layout.control_percentile),
                               shadow=not args.no_shadow, fpr=args.fpr, batch=args.batch, n_resamples=args.bootstrap)


def run_eval(args: argparse.Namespace) -> int:
    """`gazeheads eval monitor`: validate everything, then load, generate (resumable) and write the run."""
    from ..data import resolve_comics
    from ..data.spec import check_comics, parse_comics
    from ..evaluation.runner import check_disjoint, overlap_error
    from ..evaluation.session import ProcessInfo, check_store_policy, open_store
    from ..monitor.evaluate import format_summary, generate, write_outputs
    from ..monitor.generate import scene_items, strip_items
    from ..monitor.view import MonitorView

    _refuse_other_protocol_options(args)
    options.require_positive(args, "n_strips", "n_fit", "k", "monitor_k", "max_new_tokens", "segment_tokens",
                             "batch", "bootstrap")
    for name in ("n_scenes", "n_fit_scenes"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise GazeheadsError(f"--{name.replace('_', '-')} must be 0 or more.", "Give a count >= 0.")
    _check_rate(args.fpr)
    layout = options.model_layout(args)
    out = Path(args.out or "runs/eval-monitor")
    options.check_output_dir(out)
    ranking = options.load_ranking(args.ranking)
    monitor_ranking = options.load_ranking(args.monitor_ranking) if args.monitor_ranking else ranking
    if monitor_ranking.shape != ranking.shape:
        raise GazeheadsError("--monitor-ranking and --ranking come from models of different shapes.",
                             "Give two rankings of the same model.")
    settings = eval_settings(args, layout, ranking)
    if settings.monitor_k > ranking.shape.total:
        raise GazeheadsError(f"--monitor-k {settings.monitor_k} of a model with {ranking.shape.total} heads.",
                             f"Give at most {ranking.shape.total}.")
    spec = options.comics_spec(args, layout)
    if args.fit_comics:
        fit_spec = parse_comics(args.fit_comics)
        check_comics(fit_spec)
        fit = resolve_comics(fit_spec, layout.strip, limit=args.n_fit, seed=args.seed)
        held_out = resolve_comics(spec, layout.strip, limit=args.n_strips, seed=args.seed)
        shared = set(held_out.ids) & set(fit.ids) if fit_spec.base == spec.base else set()
        if shared:
            raise GazeheadsError(f"--fit-comics and --comics share {len(shared)} strips (e.g. {sorted(shared)[0]}).",
                                 "Fit on strips disjoint from the held-out ones.")
    else:
        strips = resolve_comics(spec, layout.strip, limit=args.n_fit + args.n_strips, seed=args.seed)
        if len(strips) <= args.n_fit:
            raise GazeheadsError(f"--comics {spec.text!r} holds {len(strips)} strips, and --n-fit takes {args.n_fit}.",
                                 "Give more strips (a wider slice), a smaller --n-fit, or --fit-comics.")
        fit, held_out = strips[:args.n_fit], strips[args.n_fit:]
    rankings = [ranking] if monitor_ranking is ranking else [ranking, monitor_ranking]
    for strips in (fit, held_out):  # by name now; by pixels as each strip is read
        overlap = [] if args.allow_overlap else [i for r in rankings for i in r.overlap_ids(strips.ids, strips.source)]
        if overlap:
            raise overlap_error(overlap)

    def disjoint_from_rankings(source: str):
        def check(strip) -> None:
            if not args.allow_overlap:
                for r in rankings:
                    check_disjoint(r, [strip], source)
        return check

    items = (strip_items(fit, "fit", disjoint_from_rankings(fit.source))
             + strip_items(held_out, "test", disjoint_from_rankings(held_out.source)))
    n_fit_scenes, n_scenes = scene_counts(args, layout)
    items += scene_items(range(args.scene_seed, args.scene_seed + n_fit_scenes), "fit")
    items += scene_items(range(args.scene_seed + n_fit_scenes, args.scene_seed + n_fit_scenes + n_scenes), "test")
    check_store_policy(out, resume=args.resume, restart=args.restart)
    options.check_device(args)
    gm = options.load_model(args, layout)
    ranking.check_compatible(gm)
    monitor_ranking.check_compatible(gm)
    view = MonitorView.from_ranking(monitor_ranking, settings.monitor_k)
    store = open_store(out, ProcessInfo(), resume=args.resume, restart=args.restart)
    generate(gm, ranking, view, items, settings, store)
    summary = write_outputs(out, list(store), settings, view, gm.fingerprint())
    print(format_summary(summary))
    written = [out / "generations.jsonl", out / "monitor_calibration.json", out / "monitor_summary.json",
               out / "monitor_report.html"]
    written += _add_to_main_report(out)
    options.print_written(written)
    return 0


def _add_to_main_report(out: Path) -> list[Path]:
    """With --out RUN/monitor inside a main-job run folder, rewrite RUN/report.html with the monitor's section."""
    from ..mainjob import MONITOR_DIR, monitor_sections
    from ..report import write_run_report

    run_dir = out.parent
    if out.name != MONITOR_DIR or not (run_dir / "summary.json").is_file() or not (run_dir / "report.html").is_file():
        return []
    return [write_run_report(run_dir, extra_sections=monitor_sections(run_dir))]
