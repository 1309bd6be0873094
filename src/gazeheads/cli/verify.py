"""`gazeheads verify`: is gazeheads exact on this model? One line per check, JSON, exit 1 on a failure."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import GazeheadsError
from . import options

DEFAULT_OUT = "runs/verify/verify.json"


def register(sub) -> None:
    from ..verify import GROUPS

    p = sub.add_parser(
        "verify", help="self-test gazeheads on your own checkpoint (geometry, exactness, numerics, causal)",
        description="Check on this model and its processor that gazeheads is exact: the prompt's image tokens are "
                    "the adapter's grid, every panel owns token columns, cropped or padded pixels, the chat "
                    "template's image placement, which tokens a repainted panel changes; captured attention rows "
                    "equal eager rows (in the model's dtype and in float32); a bias on a few heads changes exactly "
                    "those heads, equals eager steering and puts >= 0.99 of their image attention on the target; "
                    "the bias neither overflows nor vanishes in the model's dtype; prefix-shared discovery equals "
                    "one forward per question; with --ranking, top-K vs random vs unsteered on a few strips. "
                    "Prints one line per check, writes JSON, exits 1 when a check fails (2 on bad arguments).")
    options.add_model_options(p)
    p.add_argument("--ranking", default=None,
                   help="ranking JSON of this model: adds the quick causal check (top-K gaze vs random vs unsteered)")
    options.add_comics_options(p, n_strips=3, comics_help=(
        "strips to check on (the first one for every check, --n-strips of them for the causal check); any "
        "--comics form (default: gazeheads' synthetic strips, seed 100000 on)"))
    p.add_argument("--layers", default=None, help="layers whose heads are checked, e.g. 0,18,35 (default: first, "
                                                  "middle and last; the bias goes on the middle one)")
    p.add_argument("--heads", default=None, help="heads the bias goes on, e.g. 0,17,31 (default 0, n/2+1, n-1)")
    p.add_argument("--checks", default=",".join(GROUPS),
                   help=f"check groups to run, among {', '.join(GROUPS)} (default all; causal needs --ranking)")
    options.add_steer_options(p.add_argument_group("steering checked"))
    causal = p.add_argument_group("causal check")
    causal.add_argument("-k", "--k", type=int, default=None, help="top-K heads (default 8.7%% of the heads)")
    causal.add_argument("--control-percentile", type=float, default=None,
                        help="random control heads come from heads at or below this score percentile "
                             "(default: the model's layout; 5 for hub models)")
    causal.add_argument("--seed", type=int, default=0, help="seed of the random control heads")
    causal.add_argument("--judge", default="truth",
                        help="judge spec as in `gazeheads eval` (default truth: needs synthetic strips or captions)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"JSON report (default {DEFAULT_OUT})")
    p.set_defaults(run=run)


def _groups(text: str) -> tuple[str, ...]:
    from ..verify import GROUPS

    groups = tuple(g.strip() for g in text.split(",") if g.strip())
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown or not groups:
        raise GazeheadsError(f"--checks {text!r}: unknown group(s) {unknown or '(none given)'}.",
                             f"Choose among {', '.join(GROUPS)}, comma-separated.")
    return groups


def _indices(text: str | None, option: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise GazeheadsError(f"{option} {text!r}: not a comma-separated list of whole numbers.",
                             f"Write e.g. {option} 0,5,9.") from None
    if not values:
        raise GazeheadsError(f"{option} {text!r}: no numbers.", f"Write e.g. {option} 0,5,9.")
    return values


def run(args: argparse.Namespace) -> int:
    from ..reproduce.facts import head_shape, read_config
    from ..specs import SteerSpec
    from ..verify.runner import VerifyOptions, sample_layers, steer_heads

    options.require_positive(args, "n_strips", "k")
    layout = options.model_layout(args)
    out = Path(args.out)
    if out.suffix.lower() != ".json":
        raise GazeheadsError(f"--out {out} is not a .json file.", f"Give a JSON path, e.g. --out {DEFAULT_OUT}.")
    options.check_output_dir(out.parent)
    groups = _groups(args.checks)
    spec = options.steer_spec(args, SteerSpec())
    config = read_config(args.model, args.revision)  # no weights: checks the arguments against the model's shape
    shape = head_shape(config)
    layers = sample_layers(shape.n_layers, _indices(args.layers, "--layers"))
    heads = steer_heads(shape.n_heads, _indices(args.heads, "--heads"))
    ranking = options.load_ranking(args.ranking)
    judge = None
    head_spec = options.head_spec(args, layout, kind="gaze")
    if ranking is not None:
        if ranking.shape != shape:
            raise GazeheadsError(f"--ranking {args.ranking} was made for a model of shape {ranking.shape}, and "
                                 f"--model has {shape}.", "Use a ranking discovered on this model.")
        head_spec.resolve_k(shape.total)
        from ..evaluation.judges import JudgeSpec, make_judge

        judge = make_judge(JudgeSpec.parse(args.judge), cache_dir=out.parent)
        judge.check_ready()
    from ..data import resolve_comics

    comics = options.comics_spec(args, layout, required_for_hub=False)
    strips = resolve_comics(comics, layout.strip, limit=args.n_strips, seed=args.seed)
    if ranking is not None:
        overlap = ranking.overlap_ids(strips.ids, comics.base)
        if overlap:
            from ..evaluation.runner import overlap_error

            raise overlap_error(overlap)
    options.check_device(args)
    gm = options.load_model(args, layout)
    from ..verify import verify_model
    from ..verify.causal import format_table

    check_options = VerifyOptions(layers=tuple(layers), steer_heads=tuple(heads), spec=spec, groups=groups,
                                  heads=head_spec, new_tokens=min(15, layout.answer_tokens or 15))
    strip = strips[0]
    print(f"verifying {gm.name} on {strip.comic_id} ({strip.image.size[0]}x{strip.image.size[1]} px): layers "
          f"{layers}, bias on heads {heads} of layer {layers[len(layers) // 2] if len(layers) > 2 else layers[-1]}",
          file=sys.stderr)

    def show(result) -> None:
        print(result.line(), flush=True)
        if result.detail.get("table"):
            print(format_table(result.detail["table"]), flush=True)

    causal_strips = list(strips) if ranking is not None and "causal" in groups else []
    report = verify_model(gm, strip, options=check_options, ranking=ranking, causal_strips=causal_strips, judge=judge,
                          on_result=show)
    report.setup["command"] = {"model": args.model, "dtype": args.dtype, "comics": comics.text,
                               "ranking": args.ranking, "judge": args.judge if ranking is not None else None}
    report.save(out)
    print(report.summary())
    options.print_written([out])
    return 0 if report.ok else 1
