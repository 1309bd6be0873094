"""Options shared by the commands, and the loaders that turn them into library values.

Option builders add arguments; loaders validate them. Every command validates all of its
arguments, files and output locations *before* it loads a model (a mistake costs seconds,
not a model load). Nothing here imports torch at module level, so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import GazeheadsError
from ..files import check_output_dir, check_run_name, readable_file  # noqa: F401  (re-exported for commands)

if TYPE_CHECKING:
    from ..heads import HeadSet
    from ..layout import ModelLayout
    from ..model import GazeModel
    from ..ranking import Ranking
    from ..specs import HeadSpec, SteerSpec

DTYPES = ("auto", "float32", "bfloat16", "float16")
COMICS_HELP = ("comic strips: a folder ROOT/<comic>/p1.png..pN.png, hf:<dataset>[:<split>] (e.g. "
               "hf:baulab/openai-comic-strips), comics:<root> for the raw COMICS corpus, or synth[:SEED]; "
               "any of them with a slice, e.g. synth:7[0:40]")


# option builders -----------------------------------------------------------------------


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=None,
                       help="hub id (e.g. Qwen/Qwen3-VL-2B-Instruct), local model folder, or a bundled model's name; "
                            "default: the bundled tiny Qwen3-VL")
    group.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) of --model")
    group.add_argument("--device", default=None, help="torch device: cpu, cuda, cuda:N, mps (default: cuda if "
                                                      "available, else cpu)")
    group.add_argument("--dtype", choices=DTYPES, default="auto",
                       help="weights dtype (auto: bfloat16 on GPU, float32 on CPU)")
    group.add_argument("--device-map", default=None,
                       help="accelerate device map, e.g. 'auto' to spread a large model over GPUs")


def add_comics_options(parser: argparse.ArgumentParser, *, required: bool = False, n_strips: int | None = 20,
                       comics_help: str | None = None) -> None:
    """--comics, --n-strips, --n-panels, --strip-height and --strip-gap."""
    group = parser.add_argument_group("strips")
    group.add_argument("--comics", required=required, default=None,
                       help=(comics_help or COMICS_HELP) + ("" if required else
                                                            "; default: synthetic strips for a model trained on them"))
    group.add_argument("--n-strips", type=int, default=n_strips,
                       help=f"number of strips to use (default {n_strips if n_strips else 'all'})")
    add_layout_options(group)


def add_layout_options(group) -> None:
    group.add_argument("--n-panels", type=int, default=None, help="panels per strip (default 6)")
    group.add_argument("--strip-height", type=int, default=None,
                       help="stitched strip height in px (default: the model's layout, 256 for hub models)")
    group.add_argument("--strip-gap", type=int, default=None,
                       help="width of the white band painted over each panel boundary (default: the model's "
                            "layout, 6 px for hub models)")


def add_head_options(parser: argparse.ArgumentParser, *, kinds: bool = True) -> None:
    group = parser.add_argument_group("heads")
    group.add_argument("--ranking", default=None,
                       help="ranking JSON from `gazeheads discover` (needed for gaze and random heads)")
    if kinds:
        group.add_argument("--heads", choices=("gaze", "random", "all"), default="gaze",
                           help="top-K gaze heads (default), K random non-gaze heads (control), or all heads")
    group.add_argument("-k", "--k", type=int, default=None,
                       help="number of heads (default: 8.7%% of the heads, the paper's 100 of 1,152)")
    group.add_argument("--control-percentile", type=float, default=None,
                       help="random control heads come from heads at or below this score percentile "
                            "(default: the model's layout; 5, the paper's, for hub models)")
    group.add_argument("--seed", type=int, default=0, help="seed for random control heads (default 0)")


def add_steer_options(group, *, default_phase: str = "prefill+decode") -> None:
    """--mode, --strength, --phase and --numerics (None: the spec's or protocol's default)."""
    from ..specs import MODES, NUMERICS, PHASES

    group.add_argument("--mode", default=None, choices=MODES,
                       help="bias mode (default boost_suppress: +B on the target, -B on other image tokens)")
    group.add_argument("--strength", type=float, default=None, help="bias size B (default 10000)")
    group.add_argument("--phase", choices=PHASES, default=None,
                       help=f"which queries get the bias (default {default_phase}; decode leaves the first "
                            "generated token unsteered, as published)")
    group.add_argument("--numerics", choices=NUMERICS, default=None,
                       help="reference (default): the published computation, bias added to the scores in the "
                            "model's dtype; exact: the target's scores keep full precision")


def add_target_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_argument_group("steering target (one of)")
    target = group.add_mutually_exclusive_group(required=required)
    target.add_argument("--panel", type=int, help="steer to panel K (1 = leftmost)")
    target.add_argument("--box", help="steer to a pixel box x0,y0,x1,y1 of the image as given")
    target.add_argument("--schedule", help="move the target during generation: 'STEP:PANEL,...' e.g. '0:3,10:1,20:5'")
    add_steer_options(group)


def add_image_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("image")
    group.add_argument("--comic", default=None,
                       help="a comic: a folder holding p1.png .. pN.png, or any --comics spec naming one strip "
                            "(e.g. synth:7)")
    group.add_argument("--image", default=None, help="a single image file (target it with --box)")
    add_layout_options(group)


def add_output_options(parser: argparse.ArgumentParser, default: str, *, overwrite: bool = True) -> None:
    parser.add_argument("--out", default=default, help=f"output folder (default {default})")
    if overwrite:
        parser.add_argument("--overwrite", action="store_true",
                            help="replace the files an earlier run wrote in --out (refused otherwise)")


# argv ------------------------------------------------------------------------------------

_NUMERIC_VALUE = re.compile(r"^-[\d.,:\s-]+$")
VALUE_OPTIONS = ("--box", "--schedule", "--ks")


def join_negative_values(argv: list[str]) -> list[str]:
    """`--box -100,-100,5,5` -> `--box=-100,-100,5,5`, so argparse does not take the value for an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in VALUE_OPTIONS and i + 1 < len(argv) and _NUMERIC_VALUE.match(argv[i + 1]):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


# validation ------------------------------------------------------------------------------


def require_positive(args: argparse.Namespace, *names: str) -> None:
    """Each named option, when given, must be a whole number >= 1."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise GazeheadsError(f"{flag} {value}: must be at least 1.", f"Give {flag} 1 or more.")


# loaders ---------------------------------------------------------------------------------


def model_layout(args: argparse.Namespace) -> "ModelLayout":
    """The model's layout (gazeheads.json or defaults) with --strip-height/--strip-gap/--n-panels applied.

    Reads no weights, so it can be checked before the model loads (the --model value is checked too)."""
    from dataclasses import replace

    from ..layout import read_layout

    check_model_source(getattr(args, "model", None))
    layout = read_layout(getattr(args, "model", None))
    strip = layout.strip.replace(height=getattr(args, "strip_height", None), gap=getattr(args, "strip_gap", None),
                                 n_panels=getattr(args, "n_panels", None))
    return replace(layout, strip=strip)


def check_model_source(model: str | None) -> None:
    """--model must be a bundled name, a model folder (with config.json) or something shaped like a hub id."""
    if model is None:
        return
    from ..assets import bundled_models

    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise GazeheadsError(f"--model {model} is a file, not a model folder.",
                                 "Give the folder that holds config.json and the weights, or a hub id.")
        if not (path / "config.json").is_file():
            raise GazeheadsError(f"--model {model} holds no config.json: it is not a model folder.",
                                 "Give the folder written by save_pretrained (config.json, weights, processor files).")
        return
    if model in bundled_models():
        return
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model
    if looks_like_path:
        raise GazeheadsError(f"--model {model}: no such folder.", "Check the path, or give a hub id like "
                                                                    "Qwen/Qwen3-VL-2B-Instruct.")


def check_target_fits(target, image) -> None:
    """A --panel or --schedule panel beyond the strip's panels, or a --box off the image, fails now."""
    from ..data.strips import Strip
    from ..regions import Box, Panel, Schedule

    if target is None:
        return
    regions = [r for _, r in target.entries] if isinstance(target, Schedule) else [target]
    width, height = (image.image if isinstance(image, Strip) else image).size
    for region in regions:
        if isinstance(region, Panel):
            if not isinstance(image, Strip):
                raise GazeheadsError(f"{region} needs a comic strip, and --image is one picture.",
                                     "Pass --comic (a strip), or target a --box of the image.")
            if region.index > image.n_panels:
                raise GazeheadsError(f"Panel {region.index} asked of a {image.n_panels}-panel strip.",
                                     f"Choose a panel from 1 to {image.n_panels}.")
        elif isinstance(region, Box):
            if region.x1 <= 0 or region.y1 <= 0 or region.x0 >= width or region.y0 >= height:
                raise GazeheadsError(f"--box {region.x0:g},{region.y0:g},{region.x1:g},{region.y1:g} lies outside the "
                                     f"{width} x {height} px image.", f"Give a box inside 0,0,{width},{height}.")


def check_device(args: argparse.Namespace) -> None:
    """A clear error for a device this machine lacks (before loading)."""
    if getattr(args, "device_map", None) is None:
        from ..model import resolve_device

        resolve_device(getattr(args, "device", None))


def load_model(args: argparse.Namespace, layout: "ModelLayout | None" = None) -> "GazeModel":
    """Load --model (default: the bundled model) and give it `layout` (the one the command validated)."""
    import sys

    import torch

    from ..model import load

    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    print(f"loading {args.model or 'the bundled tiny model'} ...", file=sys.stderr)
    gm = load(args.model, device=args.device, dtype=dtype, device_map=args.device_map, revision=args.revision)
    if layout is not None:
        gm.layout = layout
    return gm


def load_ranking(path: str | None) -> "Ranking | None":
    """The ranking at `path` checked whole (JSON and arrays), or None when no path is given."""
    if path is None:
        return None
    from ..ranking import Ranking

    return Ranking.load(path)


def head_spec(args: argparse.Namespace, layout: "ModelLayout", kind: str | None = None) -> "HeadSpec":
    """The HeadSpec the options name (the control percentile defaults to the model's layout)."""
    from ..specs import HeadSpec

    percentile = args.control_percentile if args.control_percentile is not None else layout.control_percentile
    return HeadSpec(kind or getattr(args, "heads", "gaze"), k=args.k, seed=args.seed, percentile=percentile)


def check_heads(spec: "HeadSpec", ranking: "Ranking | None") -> None:
    """Gaze and random heads need a ranking; K must fit it (checked before the model loads)."""
    if spec.kind != "all" and ranking is None:
        raise GazeheadsError(f"--heads {spec.kind} needs a ranking.",
                             "Run `gazeheads discover` and pass --ranking runs/<name>/ranking.json.")
    if ranking is not None:
        spec.resolve_k(ranking.shape.total)


def select_heads(spec: "HeadSpec", gm: "GazeModel", ranking: "Ranking | None") -> "HeadSet":
    if ranking is not None:
        ranking.check_compatible(gm)
        return ranking.select(spec)
    from ..heads import select_heads

    return select_heads(spec, None, gm.shape)


def steer_spec(args: argparse.Namespace, base: "SteerSpec | None" = None) -> "SteerSpec":
    """`base` (default: the published SteerSpec) with the --mode/--strength/--phase/--numerics given."""
    from ..specs import SteerSpec

    return (base or SteerSpec()).replace(mode=args.mode, strength=args.strength, phase=args.phase,
                                          numerics=args.numerics)


def given_steer_options(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in ("mode", "strength", "phase", "numerics")
            if getattr(args, name, None) is not None}


def parse_box(text: str):
    from ..regions import Box

    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise GazeheadsError(f"Cannot read box {text!r}.", "Write it as x0,y0,x1,y1 in pixels.") from None
    return Box(x0, y0, x1, y1)


def parse_schedule(text: str):
    from ..regions import Panel, Schedule

    entries = []
    for part in text.split(","):
        try:
            step, panel = part.split(":")
            entries.append((int(step), Panel(int(panel))))
        except ValueError:
            raise GazeheadsError(f"Cannot read schedule entry {part!r}.",
                                 "Write the schedule as STEP:PANEL pairs, e.g. '0:3,10:1'.") from None
    return Schedule(entries)


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise GazeheadsError(f"{option} {text!r}: not a comma-separated list of whole numbers.",
                             f"Write e.g. {option} 1,2,4,8.") from None
    if not values or any(v < 1 for v in values):
        raise GazeheadsError(f"{option} {text!r}: every value must be at least 1.", f"Write e.g. {option} 1,2,4,8.")
    return values


def target(args: argparse.Namespace):
    """The --panel, --box or --schedule target (None when none is given)."""
    from ..regions import Panel

    if args.panel is not None:
        return Panel(args.panel)
    if args.box:
        return parse_box(args.box)
    if args.schedule:
        return parse_schedule(args.schedule)
    return None


def comics_spec(args: argparse.Namespace, layout: "ModelLayout", *, required_for_hub: bool = True):
    """The parsed --comics spec (synthetic strips when omitted for a model trained on them), checked."""
    from ..data.spec import check_comics, parse_comics

    text = args.comics
    if text is None:
        if not layout.synthetic and required_for_hub:
            raise GazeheadsError("No strips given.", "Pass --comics FOLDER or hf:baulab/openai-comic-strips (see "
                                                     "--help for every form).")
        text = "synth"
    spec = parse_comics(text)
    check_comics(spec)
    return spec


def one_image(args: argparse.Namespace, layout: "ModelLayout"):
    """The strip of --comic, or the image of --image (a header check now; pixels when needed)."""
    from ..data import open_image, resolve_comics

    if args.comic and args.image:
        raise GazeheadsError("Both --comic and --image given.", "Give one of them.")
    if args.comic:
        strips = resolve_comics(args.comic, layout.strip, limit=1)
        return strips[0]
    if args.image:
        readable_file(args.image, "--image")
        return open_image(args.image)
    raise GazeheadsError("No image given.", "Pass --comic FOLDER (p1.png .. pN.png) or --image FILE.")


def print_written(paths: Iterable[Path | str]) -> None:
    """Every command ends by saying what it wrote."""
    paths = [str(p) for p in paths]
    if paths:
        print("wrote " + ", ".join(paths))
