"""`gazeheads run`: the main job (discover, steer, evaluate, track, report)."""

from __future__ import annotations

import argparse

from . import options


def register(sub) -> None:
    p = sub.add_parser("run", help="the main job: discover, steer, evaluate and track, with an HTML report",
                       description="Discover gaze heads, steer with top-K gaze heads, K random non-gaze heads and all "
                                   "heads (ambiguous panel question, VQA, dynamic narration, scene boxes), track an "
                                   "unsteered and a steered narration, and write runs/<name>/ with the ranking, "
                                   "every generation, summary.json and report.html. With no options it uses the "
                                   "bundled tiny model and synthetic strips (no download). A rerun resumes.")
    options.add_model_options(p)
    p.add_argument("--comics", default=None,
                   help="strips for a model not trained on gazeheads' synthetic strips (any --comics form); "
                        "discovery takes the first strips and evaluation the next ones, disjoint "
                        "(default: synthetic strips)")
    p.add_argument("--quick", action="store_true", help="a small run (seconds on a CPU) that exercises every step")
    p.add_argument("--discover-strips", type=int, default=None, help="strips for discovery (default 40; quick 8)")
    p.add_argument("--n-strips", type=int, default=None, help="held-out strips to evaluate (default 100; quick 6)")
    p.add_argument("--scenes", type=int, default=None, help="synthetic scenes for box steering (default 100; quick 8)")
    p.add_argument("--strip-height", type=int, default=None, help="stitched strip height (default: the model's layout)")
    p.add_argument("--strip-gap", type=int, default=None, help="panel band width (default: the model's layout)")
    p.add_argument("-k", "--k", type=int, default=None, help="heads per condition (default 8.7%% of the heads)")
    p.add_argument("--control-percentile", type=float, default=None,
                   help="random control heads come from heads at or below this percentile (default: the model's "
                        "layout; 5 for hub models, 50 for the bundled model, which has few heads)")
    p.add_argument("--numerics", choices=("reference", "exact"), default=None,
                   help="steering numerics (default reference, the published computation)")
    p.add_argument("--judge", default="truth", help="judge spec as in `gazeheads eval` (default truth)")
    p.add_argument("--seed", type=int, default=0, help="seed for random heads and schedules")
    p.add_argument("--name", default=None, help="run name: output goes to OUT_ROOT/NAME (default main or quick)")
    p.add_argument("--out-root", default="runs", help="folder holding runs (default runs)")
    p.add_argument("--restart", action="store_true",
                   help="discard the run folder's generations and discovery checkpoint instead of resuming "
                        "(a rerun resumes by default, and refuses changed settings)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..mainjob import MainJobConfig, run_main_job

    config = MainJobConfig(
        model=args.model, revision=args.revision, device=args.device, dtype=args.dtype, device_map=args.device_map,
        comics=args.comics, quick=args.quick, discover_strips=args.discover_strips, eval_strips=args.n_strips,
        scenes=args.scenes, k=args.k, control_percentile=args.control_percentile, judge=args.judge, seed=args.seed,
        name=args.name, out_root=args.out_root, restart=args.restart, strip_height=args.strip_height,
        strip_gap=args.strip_gap, numerics=args.numerics)
    return run_main_job(config)
