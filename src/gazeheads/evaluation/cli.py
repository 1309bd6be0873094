"""`gazeheads eval <protocol>`: the paper's protocols from the command line."""

from __future__ import annotations

from pathlib import Path

from ..errors import GazeheadsError
from .protocols import PROTOCOLS, TOPK_DEFAULT


def add_eval_parser(sub, add_model_options) -> None:
    p = sub.add_parser(
        "eval", help="evaluate steering with the paper's protocols (vqa, narration, dynamic, topk, coco)",
        description="Generate steered answers for every strip and target under each head-set condition "
                    "(top-K gaze, K random non-gaze, all heads) plus the unsteered baseline, judge them, and "
                    "write generations.jsonl, summary.json, plots and report.html. Runs resume where they "
                    "stopped; under `accelerate launch` the strips are sharded across processes.")
    p.add_argument("protocol", choices=sorted(PROTOCOLS) + ["topk"], help="which protocol to run")
    add_model_options(p)
    p.add_argument("--ranking", required=True, help="ranking JSON from `gazeheads discover` on the same model")
    p.add_argument("--comics", default=None,
                   help="strips: folder, hf:baulab/openai-comic-strips, comics:<root>, or synth[:SEED] for "
                        "synthetic strips (default for the bundled model: synth)")
    from ..cli import add_strip_options

    add_strip_options(p)
    p.add_argument("--coco-instances", default=None, help="coco: COCO instances JSON (e.g. instances_val2017.json)")
    p.add_argument("--coco-images", default=None, help="coco: folder with the images named in the JSON")
    p.add_argument("--per-size", type=int, default=50, help="coco: objects per size class (default 50)")
    p.add_argument("--judge", default="truth",
                   help="truth (exact captions/attributes), captions:<sentence-transformers model or path>, "
                        "anthropic:<model>, openai:<model>@<base url> (default truth)")
    p.add_argument("--judge-cache", default=None, help="verdict cache file for LLM judges (default OUT/verdicts.jsonl)")
    p.add_argument("--conditions", default="gaze,random,all",
                   help="comma-separated conditions among gaze, random, all (default all three)")
    p.add_argument("-k", "--k", type=int, default=None, help="heads per condition (default about 9%% of heads)")
    p.add_argument("--ks", default=",".join(map(str, TOPK_DEFAULT)),
                   help="topk: comma-separated K values (capped at the number of heads)")
    p.add_argument("--topk-protocol", default="narration", choices=("narration", "vqa"),
                   help="topk: the protocol measured at each K (default narration)")
    p.add_argument("--question", default=None, help="override the protocol's question")
    p.add_argument("--max-new-tokens", type=int, default=None, help="override the protocol's generation length")
    p.add_argument("--segment-tokens", type=int, default=None,
                   help="dynamic: tokens per target segment (default 50)")
    from ..cli import add_bias_options

    add_bias_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed for random heads, derangements and sampling")
    p.add_argument("--control-percentile", type=float, default=5.0,
                   help="random control heads come from heads at or below this score percentile (default 5)")
    p.add_argument("--one-at-a-time", action="store_true",
                   help="generate targets one by one instead of one batch per strip (slower; for checking)")
    p.add_argument("--strips-per-batch", type=int, default=1,
                   help="strips whose targets share one generation batch (default 1: the N targets of a strip)")
    p.add_argument("--out", default=None, help="run folder (default runs/eval-<protocol>)")
    p.add_argument("--resume", action="store_true", help="keep OUT's generations and skip what is done")
    p.add_argument("--rejudge", action="store_true",
                   help="do not generate: re-judge OUT/generations.jsonl with --judge and rewrite the summary")
    p.set_defaults(func=cmd_eval)


def settings_from_args(args):
    from .runner import EvalSettings

    return EvalSettings(
        protocol=args.protocol,
        conditions=tuple(c.strip() for c in args.conditions.split(",") if c.strip()),
        k=args.k,
        topk=tuple(int(k) for k in args.ks.split(",")),
        topk_protocol=args.topk_protocol,
        question=args.question,
        max_new_tokens=args.max_new_tokens,
        segment_tokens=args.segment_tokens,
        mode=args.mode,
        strength=args.strength,
        phase=args.phase,
        seed=args.seed,
        control_percentile=args.control_percentile,
        batch_targets=not args.one_at_a_time,
        strips_per_batch=args.strips_per_batch,
    )


def resolve_strips(spec: str | None, *, bundled: bool, n: int, n_panels: int, height: int | None, seed: int = 0):
    """Strips from a spec; `synth[:SEED]` draws held-out synthetic strips (the bundled model's data).

    `seed` samples the pages of a `comics:` corpus.
    """
    from ..data import resolve_comics

    if spec is None:
        if not bundled:
            raise GazeheadsError("No strips given.", "Pass --comics FOLDER or hf:baulab/openai-comic-strips.")
        spec = "synth"
    if spec.startswith("synth"):
        from ..synth import make_strip

        seed = int(spec.split(":", 1)[1]) if ":" in spec else 100_000
        return [make_strip(seed + i, n_panels, comic_id=f"synth_{seed + i:06d}") for i in range(n)]
    return resolve_comics(spec, n_panels=n_panels, limit=n, seed=seed, height=height or 256)


def strip_height(args) -> int | None:
    """--strip-height, else the height the model's layout file asks for (the bundled model: 64 px)."""
    from ..mainjob import model_layout

    return args.strip_height or model_layout(args.model).get("strip_height")


def cmd_eval(args) -> int:
    from ..cli import _load_model
    from ..ranking import Ranking
    from .judges import make_judge
    from .session import current_process, finish, open_store

    out = Path(args.out or f"runs/eval-{args.protocol}")
    settings = settings_from_args(args)
    judge_kw = {"cache": args.judge_cache or out / "verdicts.jsonl"} if args.judge.split(":")[0] in (
        "anthropic", "openai") else {}
    judge = make_judge(args.judge, **judge_kw)
    judge.check_ready()  # a missing key or endpoint fails before any generation
    process = current_process()
    if args.rejudge:
        from .rejudge import rejudge

        strips = [] if args.protocol == "coco" else resolve_strips(
            args.comics, bundled=args.model is None, n=args.n_strips, n_panels=args.n_panels,
            height=strip_height(args), seed=args.seed)
        rejudge(out, judge, strips, coco=(args.coco_instances, args.coco_images))
    else:
        if process.device and args.device is None and args.device_map is None:
            args.device = process.device
        gm = _load_model(args)
        ranking = Ranking.load(args.ranking)
        ranking.check_compatible(gm)
        store = open_store(out, process, args.resume)
        shard = (process.index, process.count)
        if args.protocol == "coco":
            from .coco import evaluate_coco, load_instances, sample_objects

            if not (args.coco_instances and args.coco_images):
                raise GazeheadsError("coco needs --coco-instances and --coco-images.",
                                     "Give instances_val2017.json and the val2017 image folder.")
            objects, categories = load_instances(args.coco_instances)
            chosen = sample_objects(objects, args.per_size, seed=args.seed)
            evaluate_coco(gm, ranking, chosen, categories, args.coco_images, settings, judge, store, shard=shard)
        else:
            from .runner import evaluate_strips

            strips = resolve_strips(args.comics, bundled=args.model is None, n=args.n_strips,
                                    n_panels=args.n_panels, height=strip_height(args), seed=args.seed)
            evaluate_strips(gm, ranking, strips, settings, judge, store, shard=shard)
    finish(out, process, title=f"gazeheads eval {args.protocol}",
           settings={**settings.to_dict(), "judge": args.judge, "ranking": args.ranking, "model": args.model})
    if process.is_main:
        print(f"wrote {out / 'generations.jsonl'}, {out / 'summary.json'} and {out / 'report.html'}")
    return 0
