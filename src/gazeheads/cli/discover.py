"""`gazeheads discover`: score every head on comic strips and save a ranking."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import options

OUTPUTS = ("ranking.json", "ranking.npz", "score_histogram.png", "score_map.png", "panel_matrices.png")


def register(sub) -> None:
    p = sub.add_parser("discover", help="score every attention head on comic strips and save a ranking",
                       description="Run the panel questions over comic strips (no generation), score every head by "
                                   "how much its last-token attention lands on the queried panel, and write "
                                   "ranking.json/.npz plus plots. The ranking records every strip it used, so "
                                   "`gazeheads eval` can refuse to test on them.")
    options.add_model_options(p)
    options.add_comics_options(p)
    options.add_output_options(p, "runs/discover")
    p.add_argument("--resume", action="store_true",
                   help="keep per-strip results in OUT/discovery-checkpoint and skip strips already done")
    p.add_argument("-k", "--k", type=int, default=None, help="top-K cut to mark in the plots (default 8.7%% of heads)")
    p.add_argument("--show", type=int, default=10, help="how many top heads to print (default 10)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data import resolve_comics

    options.require_positive(args, "n_strips", "k", "show")
    layout = options.model_layout(args)
    spec = options.comics_spec(args, layout)
    out = options.check_output_dir(Path(args.out), OUTPUTS, overwrite=args.overwrite or args.resume)
    strips = resolve_comics(spec, layout.strip, limit=args.n_strips)
    options.check_device(args)
    gm = options.load_model(args, layout)
    from .. import plots
    from ..discovery import discover
    from ..specs import HeadSpec

    k = HeadSpec(k=args.k).resolve_k(gm.shape.total)
    print(f"discovery on {len(strips)} strips of {spec.text} ({layout.describe()})")
    checkpoint = out / "discovery-checkpoint" if args.resume else None
    ranking = discover(gm, strips, checkpoint_dir=checkpoint, source=spec.base)
    written = [ranking.save(out / "ranking.json")]
    if not args.no_plots:
        written += [plots.score_histogram(ranking, out / "score_histogram.png", top_k=k),
                    plots.score_map(ranking, out / "score_map.png", top_k=k),
                    plots.panel_matrices(ranking, out / "panel_matrices.png")]
    print(f"{'rank':>4} {'layer':>5} {'head':>4} {'gaze score':>10}")
    for i, (layer, head, score) in enumerate(ranking.ordered()[: args.show], 1):
        print(f"{i:>4} {layer:>5} {head:>4} {score:>10.4f}")
    print(f"chance level: {1 / ranking.n_panels:.4f} x image attention; top-{k} cut: {ranking.ordered()[k - 1][2]:.4f}")
    options.print_written(written)
    return 0
