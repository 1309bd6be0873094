"""`gazeheads demo`: the interactive steering demo in the browser (loopback only by default)."""

from __future__ import annotations

import argparse
import sys

from ..errors import GazeheadsError
from . import options


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="serve the interactive steering demo in the browser (loopback only by default)",
        description="Serve a local web page: pick a comic strip or upload an image, aim a spotlight or drag a box, "
                    "and generate; the top-K gaze heads are steered to the target, live, while tokens stream. "
                    "Without --ranking, a ranking written by `gazeheads run` for the same model is reused when one "
                    "is found, else gaze heads are discovered on a few synthetic strips at start-up.")
    options.add_model_options(p)
    p.add_argument("--ranking", default=None, help="ranking JSON from `gazeheads discover` or `gazeheads run`")
    p.add_argument("--comics", default=None,
                   help="also offer these strips (any --comics form, e.g. a folder DIR/<comic>/p1.png..pN.png)")
    options.add_layout_options(p.add_argument_group("strips"))
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("-k", "--k", type=int, default=None, help="default number of gaze heads (default 8.7%% of heads)")
    p.add_argument("--queue", type=int, default=2, help="generations that may wait behind the running one (default 2)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="most tokens one generation may ask for (default 64)")
    p.add_argument("--token-delay-ms", type=int, default=None,
                   help="default pause after each token so people can steer along (default: 150 on the bundled "
                        "model, else 0)")
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="largest upload in MiB (default 8)")
    p.add_argument("--runs", default="runs", help="folder searched for a ranking of the same model (default runs)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..demo import is_loopback, startup_ranking
    from ..demo.library import Limits
    from ..demo.server import create_app

    options.require_positive(args, "k", "max_new_tokens", "queue")
    if args.port < 0 or args.port > 65535:
        raise GazeheadsError(f"--port {args.port} is not a port.", "Use 1..65535, or 0 for a free one.")
    if not 0 < args.max_upload_mb <= 256:
        raise GazeheadsError(f"--max-upload-mb {args.max_upload_mb}.", "Use a size between 0 and 256 MiB.")
    layout = options.model_layout(args)
    ranking = options.load_ranking(args.ranking)
    comics = None
    if args.comics:
        from ..data import resolve_comics

        comics = resolve_comics(options.comics_spec(args, layout), layout.strip)
    if not is_loopback(args.host):
        print(f"warning: listening on {args.host} makes the model reachable from other machines; the demo has "
              "no authentication. Use 127.0.0.1 unless you mean it.", file=sys.stderr)
    options.check_device(args)
    gm = options.load_model(args, layout)
    if ranking is None:
        from ..demo import find_ranking

        ranking = find_ranking(gm, args.runs)
        if ranking is not None:
            print(f"reusing the ranking in {ranking.source or args.runs} (same model)", file=sys.stderr)
    if ranking is None:
        if not layout.synthetic:
            raise GazeheadsError("--ranking is needed for a model not trained on gazeheads' synthetic strips.",
                                 "Run `gazeheads discover --model ... --comics ...` and pass --ranking "
                                 "runs/<name>/ranking.json.")
        print("discovering gaze heads on synthetic strips ...", file=sys.stderr)
        ranking = startup_ranking(gm)
    ranking.check_compatible(gm)
    delay = args.token_delay_ms if args.token_delay_ms is not None else (150 if layout.synthetic else 0)
    allowed = None if is_loopback(args.host) else ["*"]
    app = create_app(gm, ranking, comics=comics, queue_size=args.queue, max_new_tokens=args.max_new_tokens,
                     token_delay_ms=delay, k=args.k, limits=Limits(max_upload_bytes=int(args.max_upload_mb * 2**20)),
                     allowed_hosts=allowed)
    if args.port:
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"gazeheads demo on http://{host}:{args.port}/  (Ctrl+C stops it)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
