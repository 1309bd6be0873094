"""`gazeheads steer`: generate while steering heads towards a panel, box or schedule."""

from __future__ import annotations

import argparse
import json

from . import options


def register(sub) -> None:
    p = sub.add_parser("steer", help="generate while steering heads towards a panel, box or schedule",
                       description="Bias the chosen heads towards a target region and print the answer.")
    add_generation_options(p, required_target=True)
    p.add_argument("--baseline", action="store_true", help="also print the unsteered answer")
    p.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    p.set_defaults(run=run)


def add_generation_options(p: argparse.ArgumentParser, *, required_target: bool) -> None:
    """What `steer` and `track` share: model, image, heads, target and question."""
    options.add_model_options(p)
    options.add_image_options(p)
    options.add_head_options(p)
    options.add_target_options(p, required=required_target)
    p.add_argument("--question", default=None,
                   help="the question (default: the model's narration question, the paper's for hub models)")
    p.add_argument("--max-new-tokens", type=int, default=40, help="tokens to generate (default 40)")


def prepare(args: argparse.Namespace):
    """Validate everything, then load: (model, heads, question, encoded prompt, target, spec)."""
    options.require_positive(args, "k", "max_new_tokens", "panel")
    layout = options.model_layout(args)
    image = options.one_image(args, layout)
    ranking = options.load_ranking(args.ranking)
    spec = options.head_spec(args, layout)
    options.check_heads(spec, ranking)
    target = options.target(args)
    options.check_target_fits(target, image)
    steering = options.steer_spec(args)
    options.check_device(args)
    gm = options.load_model(args, layout)
    heads = options.select_heads(spec, gm, ranking)
    question = args.question or layout.narration_question
    return gm, heads, question, gm.encode(image, question), target, steering


def run(args: argparse.Namespace) -> int:
    from ..steering import steer

    gm, heads, question, encoded, target, spec = prepare(args)
    result = {"question": question, "heads": heads.name, "k": len(heads), "target": repr(target),
              "steering": spec.to_dict()}
    if args.baseline:
        result["baseline"] = gm.generate(encoded, args.max_new_tokens)[0]
        print(f"without steering: {result['baseline']}")
    with steer(gm, heads, target, encoded, spec, client="cli"):
        result["steered"] = gm.generate(encoded, args.max_new_tokens)[0]
    print(f"steered to {target!r} with {heads.name} ({spec.describe()}): {result['steered']}")
    if args.json:
        print(json.dumps(result))
    return 0
