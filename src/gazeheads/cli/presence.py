"""`gazeheads presence`: is there a gaze-head set at all? (permutation test on discovery results)"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import DataError
from . import options

OUTPUTS = ("presence.json", "presence.png")


def register(sub) -> None:
    from ..presence import DEFAULT_PERMUTATIONS

    p = sub.add_parser(
        "presence", help="test whether a model has a gaze-head set (permutation test on discovery results)",
        description="Compare the top-K heads' gaze scores with a null distribution in which the panel labels are "
                    "permuted across strips; report p-value and effect size per model, and a summary plot. Give "
                    "rankings from `gazeheads discover` (--ranking, repeatable, one per model) and/or --model with "
                    "--comics to run discovery first.")
    options.add_model_options(p)
    p.add_argument("--ranking", action="append", default=[], help="ranking JSON from `gazeheads discover` (repeatable)")
    options.add_comics_options(p, comics_help="strips to discover on for --model (" + options.COMICS_HELP + ")")
    p.add_argument("-k", "--k", type=int, default=None, help="top-K heads in the statistic (default 8.7%% of heads)")
    p.add_argument("--permutations", type=int, default=DEFAULT_PERMUTATIONS,
                   help=f"permutations for the null (default {DEFAULT_PERMUTATIONS})")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the verdict (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations")
    options.add_output_options(p, "runs/presence")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..presence import presence_plot, presence_table, ranking_presence

    options.require_positive(args, "n_strips", "k", "permutations")
    if not 0 < args.alpha < 1:
        raise DataError(f"--alpha {args.alpha} is not a probability.", "Use e.g. --alpha 0.05.")
    out = options.check_output_dir(Path(args.out), OUTPUTS, overwrite=args.overwrite)
    rankings = [options.load_ranking(path) for path in args.ranking]
    discovered = None
    if args.comics or args.model:
        from ..data import resolve_comics
        from ..discovery import discover

        layout = options.model_layout(args)
        spec = options.comics_spec(args, layout)
        strips = resolve_comics(spec, layout.strip, limit=args.n_strips)
        options.check_device(args)
        gm = options.load_model(args, layout)
        discovered = discover(gm, strips, source=spec.base)
        rankings.append(discovered)
    if not rankings:
        raise DataError("Nothing to test.", "Pass --ranking FILE (from `gazeheads discover`) or --model with --comics.")
    results = [ranking_presence(r, args.k, n_permutations=args.permutations, seed=args.seed, alpha=args.alpha)
               for r in rankings]
    from ..files import write_text

    written = []
    if discovered is not None:
        written.append(discovered.save(out / "ranking.json"))
    written.append(write_text(out / "presence.json", json.dumps([r.to_dict() for r in results], indent=1)))
    written.append(presence_plot(results, out / "presence.png"))
    print(presence_table(results))
    options.print_written(written)
    return 0
