"""Command line: `gazeheads discover | steer | track ...`.

Every command prints what it does and writes plain files (JSON, PNG) under --out. Errors
from bad input print the problem and the fix, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import GazeheadsError

DTYPES = ("auto", "float32", "bfloat16", "float16")


# shared options ------------------------------------------------------------------------


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=None,
                       help="hub id (e.g. Qwen/Qwen3-VL-2B-Instruct) or local model folder; "
                            "default: the bundled tiny Qwen3-VL")
    group.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) of --model")
    group.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    group.add_argument("--dtype", choices=DTYPES, default="auto",
                       help="weights dtype (auto: bfloat16 on GPU, float32 on CPU)")
    group.add_argument("--device-map", default=None,
                       help="accelerate device map, e.g. 'auto' to spread a large model over GPUs")


def add_strip_options(parser, n_strips_help: str = "number of strips to use (default 20)") -> None:
    """--n-strips, --n-panels and --strip-height for commands that read many strips."""
    parser.add_argument("--n-strips", type=int, default=20, help=n_strips_help)
    parser.add_argument("--n-panels", type=int, default=6, help="panels per strip (default 6)")
    parser.add_argument("--strip-height", type=int, default=None, help="stitched strip height in px")


def _add_image_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("image")
    group.add_argument("--comic", default=None,
                       help="a comic folder holding p1.png .. pN.png (panels are stitched into one strip)")
    group.add_argument("--image", default=None, help="a single image file (target it with --box)")
    group.add_argument("--n-panels", type=int, default=6, help="panels per strip (default 6)")
    group.add_argument("--strip-height", type=int, default=None,
                       help="stitched strip height in px (default: 256, or 64 for the bundled model)")


def _add_head_options(parser: argparse.ArgumentParser, default_heads: str = "gaze") -> None:
    group = parser.add_argument_group("heads")
    group.add_argument("--ranking", default=None,
                       help="ranking JSON from `gazeheads discover` (needed for gaze and random heads)")
    group.add_argument("--heads", choices=("gaze", "random", "all"), default=default_heads,
                       help="top-K gaze heads, K random non-gaze heads (control), or all heads")
    group.add_argument("-k", "--k", type=int, default=None, help="number of heads (default: about 9%% of heads)")
    group.add_argument("--control-percentile", type=float, default=5.0,
                       help="random control heads come from heads at or below this score percentile (default 5)")
    group.add_argument("--seed", type=int, default=0, help="seed for the random control heads")


def _add_steering_options(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_argument_group("steering target (one of)")
    target = group.add_mutually_exclusive_group(required=required)
    target.add_argument("--panel", type=int, help="steer to panel K (1 = leftmost)")
    target.add_argument("--box", help="steer to a pixel box x0,y0,x1,y1 of the image as given")
    target.add_argument("--schedule",
                        help="move the target during generation: 'STEP:PANEL,...' e.g. '0:3,10:1,20:5'")
    add_bias_options(group)


def add_bias_options(group) -> None:
    """--mode, --strength and --phase, shared by every command that steers."""
    from .steering import DEFAULT_STRENGTH, MODES, PHASES

    group.add_argument("--mode", default=MODES[0], choices=MODES,
                       help="bias mode (default boost_suppress: +B on target, -B on other image tokens)")
    group.add_argument("--strength", type=float, default=DEFAULT_STRENGTH, help="bias size B (default 10000)")
    group.add_argument("--phase", choices=PHASES, default=PHASES[0],
                       help="bias every query (default) or only the queries that generate tokens")


# helpers -------------------------------------------------------------------------------


def _load_model(args):
    import torch

    from .model import load

    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    print(f"loading {args.model or 'the bundled tiny model'} ...", file=sys.stderr)
    return load(args.model, device=args.device, dtype=dtype, device_map=args.device_map, revision=args.revision)


def _strip_height(args) -> int:
    if args.strip_height:
        return args.strip_height
    return 64 if args.model is None else 256


def _load_image(args):
    from .data import load_strip, open_image

    if args.comic and args.image:
        raise GazeheadsError("Both --comic and --image given.", "Give one of them.")
    if args.comic:
        return load_strip(args.comic, n_panels=args.n_panels, height=_strip_height(args))
    if args.image:
        return open_image(args.image)
    raise GazeheadsError("No image given.", "Pass --comic FOLDER (p1.png .. pN.png) or --image FILE.")


def _load_ranking(args, gm):
    from .ranking import Ranking

    if args.ranking is None:
        return None
    ranking = Ranking.load(args.ranking)
    ranking.check_compatible(gm)
    return ranking


def _head_set(args, gm, ranking):
    from .heads import HeadSet

    if args.heads == "all":
        return HeadSet.all(gm.shape)
    if ranking is None:
        raise GazeheadsError(f"--heads {args.heads} needs a ranking.",
                             "Run `gazeheads discover` and pass --ranking runs/<name>/ranking.json.")
    from .heads import default_k

    k = args.k or default_k(gm.shape.total)
    if args.heads == "gaze":
        return ranking.top(k)
    return ranking.random_control(k, seed=args.seed, percentile=args.control_percentile)


def parse_box(text: str):
    from .regions import Box

    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise GazeheadsError(f"Cannot read box {text!r}.", "Write it as x0,y0,x1,y1 in pixels.") from None
    return Box(x0, y0, x1, y1)


def parse_schedule(text: str):
    from .regions import Panel, Schedule

    entries = []
    for part in text.split(","):
        try:
            step, panel = part.split(":")
            entries.append((int(step), Panel(int(panel))))
        except ValueError:
            raise GazeheadsError(f"Cannot read schedule entry {part!r}.",
                                 "Write the schedule as STEP:PANEL pairs, e.g. '0:3,10:1'.") from None
    return Schedule(entries)


def _target(args):
    from .regions import Panel

    if args.panel is not None:
        return Panel(args.panel)
    if args.box:
        return parse_box(args.box)
    if args.schedule:
        return parse_schedule(args.schedule)
    return None


# commands ------------------------------------------------------------------------------


def cmd_discover(args) -> int:
    from . import plots
    from .data import resolve_comics
    from .discovery import discover

    from .heads import check_k

    gm = _load_model(args)
    from .heads import default_k

    k = args.k or default_k(gm.shape.total)
    check_k(k, gm.shape)
    strips = resolve_comics(args.comics, n_panels=args.n_panels, limit=args.n_strips, height=_strip_height(args))
    out = Path(args.out)
    checkpoint = out / "discovery-checkpoint" if args.resume else None
    ranking = discover(gm, strips, checkpoint_dir=checkpoint, source=args.comics)
    path = ranking.save(out / "ranking.json")
    if not args.no_plots:
        plots.score_histogram(ranking, out / "score_histogram.png", top_k=k)
        plots.score_map(ranking, out / "score_map.png")
        plots.panel_matrices(ranking, out / "panel_matrices.png")
    print(f"ranking written to {path}")
    print(f"{'rank':>4} {'layer':>5} {'head':>4} {'gaze score':>10}")
    for i, (layer, head, score) in enumerate(ranking.ordered()[: args.show], 1):
        print(f"{i:>4} {layer:>5} {head:>4} {score:>10.4f}")
    print(f"chance level: {1 / ranking.n_panels:.4f} x image attention; top-{k} cut: {ranking.ordered()[k - 1][2]:.4f}")
    return 0


def _prepare_generation(args):
    """Model, head set, question, encoded prompt and target shared by `steer` and `track`."""
    from . import prompts

    gm = _load_model(args)
    image = _load_image(args)
    heads = _head_set(args, gm, _load_ranking(args, gm))
    question = args.question or prompts.NARRATION_QUESTION
    return gm, heads, question, gm.encode(image, question), _target(args)


def cmd_steer(args) -> int:
    from .steering import steer

    gm, heads, question, encoded, target = _prepare_generation(args)
    result = {"question": question, "heads": args.heads, "k": len(heads), "target": repr(target)}
    if args.baseline:
        result["baseline"] = gm.generate(encoded, args.max_new_tokens)[0]
        print(f"without steering: {result['baseline']}")
    with steer(gm, heads, target, encoded, mode=args.mode, strength=args.strength, phase=args.phase):
        result["steered"] = gm.generate(encoded, args.max_new_tokens)[0]
    print(f"steered to {target!r} with {heads.name}: {result['steered']}")
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_track(args) -> int:
    import contextlib

    from . import plots
    from .steering import steer
    from .tracking import track

    gm, heads, question, encoded, target = _prepare_generation(args)
    steering = (steer(gm, heads, target, encoded, mode=args.mode, strength=args.strength, phase=args.phase)
                if target is not None else contextlib.nullcontext())
    with steering, track(gm, heads, encoded, value_weighted=args.value_weighted) as tracker:
        ids = gm.generate_ids(encoded, args.max_new_tokens)
    trace = tracker.trace()
    tokens = gm.tokenizer.convert_ids_to_tokens(ids[0])[: trace.raw.shape[1]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = gm.decode(ids)[0]
    (out / "track.json").write_text(json.dumps({"question": question, "text": text, "tokens": tokens,
                                                "heads": [list(h) for h in heads], "trace": trace.to_dict()}))
    plots.tracking_staircase(trace, out / "track_staircase.png", tokens=tokens, title=text[:80])
    print(f"answer: {text}")
    focus = trace.focus()[0]
    labels = [plots._region_label(r) for r in trace.regions[0]]
    print("most attended region per token: " + " ".join(f"{t}->{labels[f]}" for t, f in zip(tokens, focus)))
    print(f"wrote {out / 'track.json'} and {out / 'track_staircase.png'}")
    return 0


def cmd_run(args) -> int:
    from .mainjob import run_main_job

    return run_main_job(args)


def cmd_synth(args) -> int:
    from .synth import write_synthetic_comics, write_synthetic_scenes

    out = Path(args.out)
    if args.n_strips:
        folders = write_synthetic_comics(out / "comics", args.n_strips, seed=args.seed, n_panels=args.n_panels)
        print(f"wrote {len(folders)} strips to {out / 'comics'} (p1..p{args.n_panels}.png, captions.json)")
    if args.scenes:
        instances = write_synthetic_scenes(out / "scenes", args.scenes, seed=args.seed)
        print(f"wrote {args.scenes} scenes and {instances}")
    return 0


def cmd_train_tiny(args, extra: list[str]) -> int:
    from .tiny.train import main as train_main

    return train_main(extra)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gazeheads",
        description="Discover, steer and track the gaze heads of vision-language models.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("discover", help="score every attention head on comic strips and save a ranking",
                       description="Run the panel questions over comic strips (no generation), score every "
                                   "head by how much its last-token attention lands on the queried panel, "
                                   "and write ranking.json/.npz plus plots.")
    _add_model_options(p)
    p.add_argument("--comics", required=True,
                   help="comic strips: a folder ROOT/<comic>/p1.png..pN.png, hf:baulab/openai-comic-strips, "
                        "or comics:<root> for the raw COMICS corpus")
    add_strip_options(p)
    p.add_argument("--out", default="runs/discover", help="output folder (default runs/discover)")
    p.add_argument("--resume", action="store_true",
                   help="keep per-strip results in OUT/discovery-checkpoint and skip strips already done")
    p.add_argument("-k", "--k", type=int, default=None, help="top-K cut to mark in the plots")
    p.add_argument("--show", type=int, default=10, help="how many top heads to print (default 10)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("steer", help="generate while steering heads towards a panel, box or schedule",
                       description="Bias the chosen heads towards a target region and print the answer.")
    _add_model_options(p)
    _add_image_options(p)
    _add_head_options(p)
    _add_steering_options(p, required=True)
    p.add_argument("--question", default=None, help="the question (default: the ambiguous panel question)")
    p.add_argument("--max-new-tokens", type=int, default=40, help="tokens to generate (default 40)")
    p.add_argument("--baseline", action="store_true", help="also print the unsteered answer")
    p.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    p.set_defaults(func=cmd_steer)

    p = sub.add_parser("track", help="record where the heads look at every generated token",
                       description="Generate an answer and record, per token, the attention of a head set "
                                   "over each panel (optionally while steering); writes JSON and a "
                                   "staircase plot.")
    _add_model_options(p)
    _add_image_options(p)
    _add_head_options(p)
    _add_steering_options(p, required=False)
    p.add_argument("--question", default=None, help="the question (default: the ambiguous panel question)")
    p.add_argument("--max-new-tokens", type=int, default=40, help="tokens to generate (default 40)")
    p.add_argument("--value-weighted", action="store_true",
                   help="weight attention by value-vector norms (Kobayashi et al. 2020)")
    p.add_argument("--out", default="runs/track", help="output folder (default runs/track)")
    p.set_defaults(func=cmd_track)

    from .evaluation.cli import add_eval_parser

    add_eval_parser(sub, _add_model_options)

    from .presence import add_presence_parser

    add_presence_parser(sub, _add_model_options)

    from .demo import add_demo_parser

    add_demo_parser(sub, _add_model_options)

    p = sub.add_parser("run", help="the main job: discover, steer, evaluate and track, with an HTML report",
                       description="Discover gaze heads, steer with top-K gaze heads, K random non-gaze heads "
                                   "and all heads (ambiguous panel question, VQA, dynamic narration, scene "
                                   "boxes), track a steered narration, and write runs/<name>/ with the ranking, "
                                   "every generation, summary.json and report.html. With no options it uses "
                                   "the bundled tiny model and synthetic strips (no download).")
    _add_model_options(p)
    p.add_argument("--comics", default=None,
                   help="strips for a real model: folder or hf:baulab/openai-comic-strips (first strips for "
                        "discovery, the rest for evaluation); default: synthetic strips")
    p.add_argument("--quick", action="store_true", help="a small run (a minute on a CPU) that exercises every step")
    p.add_argument("--discover-strips", type=int, default=None, help="strips for discovery (default 40; quick 8)")
    p.add_argument("--n-strips", type=int, default=None, help="held-out strips to evaluate (default 100; quick 6)")
    p.add_argument("--scenes", type=int, default=None, help="synthetic scenes for box steering (default 100; quick 8)")
    p.add_argument("--strip-height", type=int, default=None, help="stitched strip height for a real model (256)")
    p.add_argument("-k", "--k", type=int, default=None, help="heads per condition (default about 9%% of heads)")
    p.add_argument("--control-percentile", type=float, default=None,
                   help="random control heads come from heads at or below this percentile "
                        "(default 5; 50 for the bundled model, which has only 48 heads)")
    p.add_argument("--judge", default="truth", help="judge spec as in `gazeheads eval` (default truth)")
    p.add_argument("--seed", type=int, default=0, help="seed for random heads and schedules")
    p.add_argument("--name", default=None, help="run name: output goes to OUT_ROOT/NAME (default main or quick)")
    p.add_argument("--out-root", default="runs", help="folder holding runs (default runs)")
    p.add_argument("--restart", action="store_true",
                   help="discard the run folder's generations and discovery checkpoint instead of resuming "
                        "(a rerun resumes by default, and refuses changed settings)")
    p.set_defaults(func=cmd_run)

    data = sub.add_parser("data", help="data tools: synthetic comics and scenes",
                          description="Data tools.").add_subparsers(dest="data_command", required=True,
                                                                     metavar="DATA_COMMAND", help="data tool")
    p = data.add_parser("synth", help="write seeded synthetic comic strips and COCO-style scenes",
                        description="Write synthetic strips (ROOT/comics/<id>/p1..pN.png + captions.json + "
                                    "attributes.json) and scenes (ROOT/scenes/*.png + instances.json).")
    p.add_argument("--out", default="data/synth", help="output folder (default data/synth)")
    p.add_argument("--n-strips", type=int, default=100, help="number of strips (default 100)")
    p.add_argument("--n-panels", type=int, default=6, help="panels per strip (default 6)")
    p.add_argument("--scenes", type=int, default=50, help="number of scenes (default 50)")
    p.add_argument("--seed", type=int, default=0, help="first seed; strip i uses seed+i (default 0)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train-tiny", add_help=False,
                       help="retrain the bundled tiny Qwen3-VL (options: gazeheads train-tiny --help)",
                       description="Train the tiny model from scratch; all options go to gazeheads.tiny.train.")
    p.set_defaults(func=cmd_train_tiny, passthrough=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train-tiny"]:
        return cmd_train_tiny(None, argv[1:])
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except GazeheadsError as exc:
        print(f"error: {exc.problem}", file=sys.stderr)
        if exc.fix:
            print(f"fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
