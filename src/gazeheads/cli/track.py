"""`gazeheads track`: record where a head set looks at every generated token."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from . import options
from .steer import add_generation_options, prepare

OUTPUTS = ("track.json", "track_staircase.png")


def register(sub) -> None:
    p = sub.add_parser("track", help="record where the heads look at every generated token",
                       description="Generate an answer and record, per token, the attention of a head set over "
                                   "each panel (optionally while steering); writes JSON and a staircase plot. "
                                   "Attention is value-weighted by default, as in the published trajectory script.")
    add_generation_options(p, required_target=False)
    p.add_argument("--raw", action="store_true", help="raw attention instead of value-weighted attention")
    options.add_output_options(p, "runs/track")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import plots
    from ..files import write_text
    from ..steering import steer
    from ..tracking import track

    out = options.check_output_dir(Path(args.out), OUTPUTS, overwrite=args.overwrite)
    gm, heads, question, encoded, target, spec = prepare(args)
    steering = steer(gm, heads, target, encoded, spec, client="cli") if target is not None else contextlib.nullcontext()
    with steering, track(gm, heads, encoded, value_weighted=not args.raw) as tracker:
        ids = gm.generate_ids(encoded, args.max_new_tokens)
    trace = tracker.trace()
    tokens = gm.tokenizer.convert_ids_to_tokens(ids[0])[: trace.raw.shape[1]]
    text = gm.decode(ids)[0]
    scheduled = plots.scheduled_regions(target, trace.raw.shape[1]) if target is not None else None
    written = [write_text(out / "track.json", json.dumps({
        "question": question, "text": text, "tokens": tokens, "heads": [list(h) for h in heads],
        "target": repr(target), "steering": spec.to_dict() if target is not None else None,
        "trace": trace.to_dict()})),
        plots.tracking_staircase(trace, out / "track_staircase.png", tokens=tokens, scheduled=scheduled,
                                 title=f"{heads.name}: {text[:70]}")]
    print(f"answer: {text}")
    labels = [plots.region_label(r) for r in trace.regions[0]]
    print("most attended region per token: " + " ".join(f"{t}->{labels[f]}" for t, f in zip(tokens, trace.focus()[0])))
    options.print_written(written)
    return 0
