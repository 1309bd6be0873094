"""`gazeheads data synth`: write seeded synthetic comic strips and COCO-style scenes."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DataError
from . import options


def register(sub) -> None:
    data = sub.add_parser("data", help="data tools: synthetic comics and scenes", description="Data tools.")
    tools = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND", help="data tool")
    p = tools.add_parser("synth", help="write seeded synthetic comic strips and COCO-style scenes",
                         description="Write synthetic strips (OUT/comics/<id>/p1..pN.png + captions.json + "
                                     "attributes.json) and scenes (OUT/scenes/*.png + instances.json). Strip i uses "
                                     "seed SEED+i, so `--comics OUT/comics` gives the same strips as `synth:SEED`.")
    options.add_output_options(p, "data/synth")
    p.add_argument("--n-strips", type=int, default=100, help="number of strips (default 100; 0 for none)")
    p.add_argument("--n-panels", type=int, default=6, help="panels per strip (default 6)")
    p.add_argument("--scenes", type=int, default=50, help="number of scenes (default 50; 0 for none)")
    p.add_argument("--seed", type=int, default=0, help="first seed; strip i uses seed+i (default 0)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..layout import StripLayout
    from ..synth import write_synthetic_comics, write_synthetic_scenes

    for name in ("n_strips", "scenes", "seed"):
        if getattr(args, name) < 0:
            raise DataError(f"--{name.replace('_', '-')} {getattr(args, name)} is negative.", "Give 0 or more.")
    if args.n_strips == 0 and args.scenes == 0:
        raise DataError("Nothing to write: --n-strips 0 and --scenes 0.", "Ask for some strips or scenes.")
    StripLayout(n_panels=args.n_panels)  # checks the panel count
    out = Path(args.out)
    options.check_output_dir(out, [name for name, n in (("comics", args.n_strips), ("scenes", args.scenes)) if n],
                             overwrite=args.overwrite)
    written = []
    if args.n_strips:
        folders = write_synthetic_comics(out / "comics", args.n_strips, seed=args.seed, n_panels=args.n_panels)
        print(f"{len(folders)} strips (p1..p{args.n_panels}.png, captions.json, attributes.json)")
        written.append(out / "comics")
    if args.scenes:
        written.append(write_synthetic_scenes(out / "scenes", args.scenes, seed=args.seed))
    options.print_written(written)
    return 0
