"""`gazeheads eval <protocol>`: the paper's protocols from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import GazeheadsError
from . import monitor as monitor_command
from . import options

PROTOCOL_CHOICES = ("narration", "vqa", "dynamic", "topk", "coco", "monitor")


def register(sub) -> None:
    from ..specs import TOPK_DEFAULT

    p = sub.add_parser(
        "eval", help="evaluate steering with the paper's protocols (vqa, narration, dynamic, topk, coco) or the steering monitor (monitor)",
        description="Generate steered answers for every strip and target under each head-set condition (top-K "
                    "gaze, K random non-gaze, all heads) plus the unsteered baseline, judge them, and write "
                    "generations.jsonl, summary.json, plots and report.html. Strips the ranking was discovered on "
                    "are refused. Runs resume with --resume; under `accelerate launch` the strips are sharded "
                    "across processes.")
    p.add_argument("protocol", choices=PROTOCOL_CHOICES, help="which protocol to run")
    options.add_model_options(p)
    p.add_argument("--ranking", required=True, help="ranking JSON from `gazeheads discover` on the same model")
    options.add_comics_options(p)
    p.add_argument("--allow-overlap", action="store_true",
                   help="evaluate even on strips the ranking was discovered on (refused by default)")
    coco = p.add_argument_group("coco")
    coco.add_argument("--coco-instances", default=None, help="COCO instances JSON (e.g. instances_val2017.json)")
    coco.add_argument("--coco-images", default=None, help="folder with the images named in the JSON")
    coco.add_argument("--per-size", type=int, default=50, help="objects per size class (default 50)")
    p.add_argument("--judge", default="truth",
                   help="truth (exact captions/attributes), captions:<sentence-transformers model or path>, "
                        "anthropic[:<model>] (default model claude-sonnet-4-6, the paper's), openai:<model>[@<base "
                        "url>]; options after commas, e.g. anthropic,batch=always (docs/judges.md; default truth)")
    p.add_argument("--conditions", default="gaze,random,all",
                   help="comma-separated conditions among gaze, random, all (default all three)")
    heads = p.add_argument_group("heads")
    heads.add_argument("-k", "--k", type=int, default=None, help="heads per condition (default 8.7%% of the heads)")
    heads.add_argument("--ks", default=",".join(map(str, TOPK_DEFAULT)),
                       help="topk: comma-separated K values (capped at the number of heads)")
    heads.add_argument("--topk-protocol", default="narration", choices=("narration", "vqa"),
                       help="topk: the protocol measured at each K (default narration)")
    heads.add_argument("--control-percentile", type=float, default=None,
                       help="random control heads come from heads at or below this score percentile "
                            "(default: the model's layout; 5 for hub models)")
    heads.add_argument("--seed", type=int, default=0, help="seed for random heads, derangements and sampling")
    gen = p.add_argument_group("generation")
    gen.add_argument("--question", default=None, help="override the protocol's question")
    gen.add_argument("--max-new-tokens", type=int, default=None, help="override the protocol's generation length")
    gen.add_argument("--segment-tokens", type=int, default=None, help="dynamic: tokens per target segment (default 50)")
    gen.add_argument("--repetition-penalty", type=float, default=None,
                     help="generation repetition penalty (off by default; the published dynamic script exposes it)")
    gen.add_argument("--no-repeat-ngram-size", type=int, default=None,
                     help="forbid repeating n-grams of this size (off by default)")
    options.add_steer_options(p.add_argument_group("steering"),
                              default_phase="the protocol's: prefill+decode, decode for dynamic")
    run_group = p.add_argument_group("run")
    run_group.add_argument("--one-at-a-time", action="store_true",
                           help="generate targets one by one instead of one batch per strip (slower; for checking)")
    run_group.add_argument("--strips-per-batch", type=int, default=1,
                           help="strips whose targets share one generation batch (default 1)")
    run_group.add_argument("--out", default=None, help="run folder (default runs/eval-<protocol>)")
    run_group.add_argument("--resume", action="store_true", help="keep OUT's generations and skip what is done")
    run_group.add_argument("--restart", action="store_true", help="discard OUT's generations and start over")
    run_group.add_argument("--rejudge", action="store_true",
                           help="do not generate: re-judge OUT/generations.jsonl with --judge and rewrite the summary")
    monitor_command.add_eval_options(p)  # `eval monitor` (gazeheads/cli/monitor.py)
    p.set_defaults(run=run)


def settings_from_args(args: argparse.Namespace, layout) -> "EvalSettings":
    from ..evaluation.protocols import protocol
    from ..evaluation.runner import EvalSettings

    conditions = tuple(c.strip() for c in args.conditions.split(",") if c.strip())
    steer = None
    given = options.given_steer_options(args)
    if given:
        name = args.topk_protocol if args.protocol == "topk" else args.protocol
        steer = protocol(name).steer.replace(**given)
    return EvalSettings(
        protocol=args.protocol,
        conditions=conditions,
        heads=options.head_spec(args, layout, kind="gaze"),
        topk=options.parse_ints(args.ks, "--ks"),
        topk_protocol=args.topk_protocol,
        question=args.question,
        max_new_tokens=args.max_new_tokens if args.max_new_tokens is not None else _layout_tokens(args, layout),
        segment_tokens=args.segment_tokens if args.segment_tokens is not None else (
            layout.segment_tokens if args.protocol == "dynamic" or args.topk_protocol == "dynamic" else None),
        steer=steer,
        repetition_penalty=args.repetition_penalty,
        no_repeat_ngram_size=args.no_repeat_ngram_size,
        batch_targets=not args.one_at_a_time,
        strips_per_batch=args.strips_per_batch,
    )


def _layout_tokens(args, layout) -> int | None:
    """A model trained to answer briefly (its layout's answer_tokens) is asked for that many tokens."""
    if args.protocol == "dynamic" or layout.answer_tokens is None:
        return None
    return min(layout.answer_tokens, 15) if args.protocol == "vqa" else layout.answer_tokens


def run(args: argparse.Namespace) -> int:
    if args.protocol == "monitor":  # the monitor's evaluation has its own runner (gazeheads/cli/monitor.py)
        return monitor_command.run_eval(args)
    from ..evaluation.judges import DeferredJudge, JudgeSpec, make_judge
    from ..evaluation.rejudge import rejudge
    from ..evaluation.session import check_store_policy, current_process, finish, open_store, wait_for_everyone

    options.require_positive(args, "n_strips", "k", "max_new_tokens", "segment_tokens", "per_size",
                             "strips_per_batch", "no_repeat_ngram_size")
    layout = options.model_layout(args)
    out = Path(args.out or f"runs/eval-{args.protocol}")
    options.check_output_dir(out)
    settings = settings_from_args(args, layout)
    judge_spec = JudgeSpec.parse(args.judge)
    judge = make_judge(judge_spec, cache_dir=out)  # LLM judges keep OUT/verdicts.jsonl and OUT/judge-batches.jsonl
    judge.check_ready()  # a missing key, package or endpoint fails before any generation
    ranking = options.load_ranking(args.ranking)
    settings.heads.resolve_k(ranking.shape.total)
    process = current_process()
    strips = None
    if args.protocol != "coco":
        spec = options.comics_spec(args, layout)
        from ..data import resolve_comics

        strips = resolve_comics(spec, layout.strip, limit=args.n_strips, seed=args.seed)
        if hasattr(judge, "check_strip"):  # e.g. ground truth needs captions: checked on the first strip now
            first = strips[0]
            judge.check_strip(first.captions, first.meta.get("attributes"))
        overlap = [] if args.allow_overlap else ranking.overlap_ids(strips.ids, spec.base)
        if overlap:  # by name now; by pixels as each strip is read
            from ..evaluation.runner import overlap_error

            raise overlap_error(overlap)
    elif not args.rejudge:
        if not (args.coco_instances and args.coco_images):
            raise GazeheadsError("coco needs --coco-instances and --coco-images.",
                                 "Give instances_val2017.json and the val2017 image folder.")
        options.readable_file(args.coco_instances, "--coco-instances")
        if not Path(args.coco_images).is_dir():
            raise GazeheadsError(f"--coco-images {args.coco_images} is not a folder.", "Give the image folder.")
        from ..evaluation.coco import load_instances

        load_instances(args.coco_instances)  # a malformed or empty file fails now, not after the model loads
    if args.rejudge:
        rejudge(out, judge, strips or [], coco=(args.coco_instances, args.coco_images))
    else:
        # an LLM judge sees the whole run at the end, in one judge_many (one vendor batch where it pays)
        generation_judge = DeferredJudge(judge) if judge_spec.calls_model else judge
        if process.is_main:  # the other processes' shards appear as soon as they start: check once, first
            check_store_policy(out, resume=args.resume, restart=args.restart)
        wait_for_everyone()
        if process.device and args.device is None and args.device_map is None:
            args.device = process.device
        options.check_device(args)
        gm = options.load_model(args, layout)
        ranking.check_compatible(gm)
        store = open_store(out, process, resume=args.resume, restart=args.restart)
        shard = (process.index, process.count)
        if args.protocol == "coco":
            from ..evaluation.coco import evaluate_coco, load_instances, sample_objects

            objects, categories = load_instances(args.coco_instances)
            chosen = sample_objects(objects, args.per_size, seed=args.seed)
            evaluate_coco(gm, ranking, chosen, categories, args.coco_images, settings, generation_judge, store,
                          shard=shard)
        else:
            from ..evaluation.runner import evaluate_strips

            evaluate_strips(gm, ranking, strips, settings, generation_judge, store, shard=shard,
                            allow_overlap=args.allow_overlap)
        if generation_judge is not judge:
            wait_for_everyone()
            if process.is_main:
                rejudge(out, judge, strips or [], coco=(args.coco_instances, args.coco_images))
    finish(out, process, title=f"gazeheads eval {args.protocol}",
           settings={**settings.to_dict(), "judge": str(judge_spec), "ranking": args.ranking, "model": args.model},
           strips=strips, image_root=args.coco_images)
    if process.is_main:
        options.print_written([out / "generations.jsonl", out / "summary.json", out / "report.html"])
    return 0
