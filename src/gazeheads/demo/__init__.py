"""`gazeheads demo`: steer the gaze heads with the cursor, live, in a browser.

A local web app (FastAPI on uvicorn, one hand-written page): pick a strip or upload an
image, hover a spotlight or drag a box, and watch the answer stream while the target
follows the cursor. See :func:`gazeheads.demo.server.create_app` for the API.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

DISCOVERY_SEEDS = tuple(range(300_000, 300_008))  # never training strips, not the demo's strips


def add_demo_parser(subparsers, add_model_options) -> argparse.ArgumentParser:
    """Register `gazeheads demo` on the CLI's subparsers (`add_model_options` adds --model etc.)."""
    p = subparsers.add_parser(
        "demo", help="serve the interactive steering demo in the browser (loopback only by default)",
        description="Serve a local web page: pick a comic strip or upload an image, hover a spotlight (scroll to "
                    "resize) or drag a box, and generate; the top-K gaze heads are steered to what the cursor "
                    "covers, live, while tokens stream. Without --ranking on the bundled model, gaze heads are "
                    "discovered on a few synthetic strips at start-up.")
    add_model_options(p)
    p.add_argument("--ranking", default=None,
                   help="ranking JSON from `gazeheads discover` (default for the bundled model, or a model folder "
                        "from `gazeheads train-tiny`: discover on synthetic strips at start-up)")
    p.add_argument("--comics", default=None, help="also offer the comic folders under DIR (DIR/<comic>/p1.png..pN.png)")
    p.add_argument("--n-panels", type=int, default=6, help="panels per comic strip (default 6)")
    p.add_argument("--strip-height", type=int, default=None,
                   help="stitched strip height in px (default: the bundled model's 64, else 256)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("-k", "--k", type=int, default=None, help="default number of gaze heads (default 10%% of heads)")
    p.add_argument("--queue", type=int, default=2, help="generations that may wait behind the running one (default 2)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="most tokens one generation may ask for (default 64)")
    p.add_argument("--token-delay-ms", type=int, default=None,
                   help="default pause after each token so people can steer along (default: 150 on the "
                        "bundled model, else 0)")
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="largest upload in MiB (default 8)")
    p.set_defaults(func=cmd_demo)
    return p


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _trained_on_synthetic_strips(model: str) -> bool:
    """A local folder made by `gazeheads train-tiny` (it records its strip layout in gazeheads.json)."""
    from pathlib import Path

    return (Path(model) / "gazeheads.json").is_file()


def startup_ranking(gm, n_strips: int = len(DISCOVERY_SEEDS)):
    """Discover gaze heads on a few synthetic strips (seconds on the bundled model)."""
    from ..discovery import discover
    from ..synth import make_strip

    strips = [make_strip(seed, comic_id=f"synth-{seed}") for seed in DISCOVERY_SEEDS[:n_strips]]
    return discover(gm, strips, source="synthetic strips (demo start-up)", progress=False)


def cmd_demo(args) -> int:
    import uvicorn

    from ..cli import _load_model, _load_ranking
    from ..errors import GazeheadsError
    from .library import Limits
    from .server import create_app

    if not _is_loopback(args.host):
        print(f"warning: listening on {args.host} makes the model reachable from other machines; the demo has "
              "no authentication. Use 127.0.0.1 unless you mean it.", file=sys.stderr)
    gm = _load_model(args)
    ranking = _load_ranking(args, gm)
    if ranking is None:
        if args.model is not None and not _trained_on_synthetic_strips(args.model):
            raise GazeheadsError("--ranking is needed for a model other than the bundled one.",
                                 "Run `gazeheads discover --model ... --comics ...` and pass --ranking runs/<name>/"
                                 "ranking.json.")
        print("discovering gaze heads on synthetic strips ...", file=sys.stderr)
        ranking = startup_ranking(gm)
    delay = args.token_delay_ms if args.token_delay_ms is not None else (150 if args.model is None else 0)
    allowed = None if _is_loopback(args.host) else ["*"]
    app = create_app(gm, ranking, comics_dir=args.comics, n_panels=args.n_panels, strip_height=args.strip_height,
                     queue_size=args.queue, max_new_tokens=args.max_new_tokens, token_delay_ms=delay, k=args.k,
                     limits=Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024)), allowed_hosts=allowed)
    if args.port:
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"gazeheads demo on http://{host}:{args.port}/  (Ctrl+C stops it)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0
