"""`gazeheads reproduce`: the paper's protocol end to end (or, with --dry-run, its plan and cost)."""

from __future__ import annotations

import argparse

from . import options


def register(sub) -> None:
    from ..reproduce.gpus import GPUS
    from ..reproduce.paper import EVAL_DATASET, PAPER_JUDGE, PAPER_MODEL

    p = sub.add_parser(
        "reproduce", help="run the paper's protocol end to end and report paper vs measured (--dry-run: plan and cost)",
        description="Discover gaze heads on strips disjoint from the evaluation strips (COMICS with "
                    "--comics-discovery, else the first 100 strips of baulab/openai-comic-strips), then VQA, static "
                    "narration, dynamic narration (50-token segments) and the top-K sweep with K = 100 (8.7% of the "
                    "heads), random non-gaze and all-heads controls, judged by Claude (the paper's judge) or any "
                    "--judge; report.html and paper_vs_measured.json show the paper's figure beside each measured "
                    "one. --dry-run reads only the config and processor and prints strips, generations, tokens, "
                    "judge calls and an estimate of GPU time and memory. A rerun resumes. See docs/reproducing.md.")
    group = p.add_argument_group("model")
    group.add_argument("--model", default=PAPER_MODEL, help=f"hub id or local folder (default {PAPER_MODEL})")
    group.add_argument("--revision", default=None, help="hub revision of --model")
    group.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    group.add_argument("--dtype", choices=options.DTYPES, default="auto", help="weights dtype (auto: bf16 on GPU)")
    group.add_argument("--device-map", default=None, help="accelerate device map, e.g. auto for several GPUs")
    data = p.add_argument_group("data")
    data.add_argument("--comics-discovery", default=None,
                      help="strips to discover on, e.g. comics:/data/COMICS/raw_panel_images (the paper's); "
                           "default: the first 100 strips of --comics")
    data.add_argument("--comics", default=None,
                      help=f"strips to evaluate on (default {EVAL_DATASET}; synthetic strips for a model trained "
                           "on them); any --comics form")
    data.add_argument("--discover-strips", type=int, default=None,
                      help="discovery strips (default 500 from --comics-discovery, else 100)")
    data.add_argument("--n-strips", type=int, default=None,
                      help="evaluation strips (default all 500, or the 400 left after a discovery split)")
    data.add_argument("--strip-height", type=int, default=None, help="strip height (default: the model's layout)")
    data.add_argument("--strip-gap", type=int, default=None, help="panel band width (default: the model's layout)")
    heads = p.add_argument_group("heads and protocols")
    heads.add_argument("-k", "--k", type=int, default=None, help="heads per condition (default 8.7%%: 100 of 1,152)")
    heads.add_argument("--ks", default=None, help="top-K sweep, e.g. 5,10,20,50,100,200 (default: those shares)")
    heads.add_argument("--topk-protocol", choices=("vqa", "narration"), default="vqa",
                       help="the protocol measured at each K of the sweep (default vqa)")
    heads.add_argument("--control-percentile", type=float, default=None,
                       help="random control heads at or below this score percentile (default 5, the paper's)")
    heads.add_argument("--dynamic-question", default=None,
                       help="the dynamic narration prompt (default: the model's narration question)")
    heads.add_argument("--seed", type=int, default=0, help="seed for random heads and schedules")
    p.add_argument("--judge", default=PAPER_JUDGE,
                   help="judge spec (default anthropic = claude-sonnet-4-6, the paper's; captions:<model> offline; "
                        "truth for synthetic strips; see docs/judges.md)")
    p.add_argument("--out", default="runs/reproduce", help="run folder (default runs/reproduce)")
    p.add_argument("--restart", action="store_true", help="discard the run folder's generations and start over")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan and the estimated GPU time and memory without loading weights")
    p.add_argument("--gpu", choices=sorted(GPUS), default="h100", help="GPU the estimate assumes (default h100)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..reproduce.plan import ReproduceConfig

    options.require_positive(args, "discover_strips", "n_strips", "k")
    config = ReproduceConfig(
        model=args.model, revision=args.revision, device=args.device, dtype=args.dtype, device_map=args.device_map,
        comics_discovery=args.comics_discovery, comics=args.comics, discover_strips=args.discover_strips,
        eval_strips=args.n_strips, k=args.k, ks=options.parse_ints(args.ks, "--ks") if args.ks else None,
        topk_protocol=args.topk_protocol, control_percentile=args.control_percentile,
        dynamic_question=args.dynamic_question, judge=args.judge, seed=args.seed, out=args.out, restart=args.restart,
        strip_height=args.strip_height, strip_gap=args.strip_gap)
    if args.dry_run:
        from ..reproduce.dryrun import dry_run, format_dry_run

        print(format_dry_run(dry_run(config, args.gpu)))
        return 0
    from ..reproduce.run import run_reproduction

    return run_reproduction(config)
