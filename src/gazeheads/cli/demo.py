"""`gazeheads demo`: the interactive steering demo in the browser (loopback only by default).

Any address but loopback needs an access token (generated and printed when --token is not
given); steering actions are appended to an audit log (runs/demo-audit.jsonl by default).
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import GazeheadsError
from . import options

DEFAULT_AUDIT_LOG = os.path.join("runs", "demo-audit.jsonl")
TOKEN_ENV = "GAZEHEADS_DEMO_TOKEN"


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="serve the interactive steering demo in the browser (loopback only by default)",
        description="Serve a local web page: pick a comic strip or upload an image, aim a spotlight or drag a box, "
                    "and generate; the top-K gaze heads are steered to the target, live, while tokens stream. "
                    "Without --ranking, a ranking written by `gazeheads run` for the same model is reused when one "
                    "is found under --runs, else gaze heads are discovered on a few synthetic strips at start-up. "
                    "Serving beyond this machine (--host other than loopback) needs an access token, which every "
                    "request must carry; one is generated and printed when --token is not given. Every steering "
                    "action is appended to an audit log.")
    options.add_model_options(p)
    p.add_argument("--ranking", default=None, help="ranking JSON from `gazeheads discover` or `gazeheads run`")
    p.add_argument("--comics", default=None,
                   help="also offer these strips (any --comics form, e.g. a folder DIR/<comic>/p1.png..pN.png)")
    options.add_layout_options(p.add_argument_group("strips"))
    access = p.add_argument_group("access and audit")
    access.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only, no token needed); any "
                             "other address needs an access token")
    access.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    access.add_argument("--token", default=None,
                        help=f"access token every request must carry (16+ URL-safe characters; default: ${TOKEN_ENV}, "
                             "else one is generated and printed when --host is not loopback; on loopback, a given "
                             "token is required too)")
    access.add_argument("--audit-log", default=DEFAULT_AUDIT_LOG,
                        help=f"append one JSON line per steering action here (default {DEFAULT_AUDIT_LOG}; "
                             "never truncated)")
    access.add_argument("--no-audit", action="store_true", help="write no audit log")
    p.add_argument("-k", "--k", type=int, default=None, help="default number of gaze heads (default 8.7%% of heads)")
    p.add_argument("--queue", type=int, default=2, help="generations that may wait behind the running one (default 2)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="most tokens one generation may ask for (default 64)")
    p.add_argument("--token-delay-ms", type=int, default=None,
                   help="default pause after each token so people can steer along (default: 150 on the bundled "
                        "model, else 0)")
    p.add_argument("--max-upload-mb", type=float, default=8.0, help="largest upload in MiB (default 8)")
    p.add_argument("--runs", default="runs", help="folder searched for a ranking of the same model (default runs)")
    p.set_defaults(run=run)


def access_token(host: str, given: str | None, environ=os.environ) -> tuple[str | None, bool]:
    """The token to require and whether it was generated: --token, else $GAZEHEADS_DEMO_TOKEN, else a new one
    for a non-loopback host, else none (loopback stays open)."""
    from ..demo import is_loopback
    from ..demo.access import check_bind, check_token, new_token

    token = given if given is not None else (environ.get(TOKEN_ENV) or None)
    generated = False
    if token is None and not is_loopback(host):
        token, generated = new_token(), True
    if token is not None:
        check_token(token)
    check_bind(host, token)
    return token, generated


def check_audit_log(path: str) -> None:
    """Open the audit log for appending once (creating it and its folder), before the model loads."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise GazeheadsError(f"The audit log {path} cannot be appended to: {exc}.",
                             "Give a writable --audit-log PATH (or --no-audit to keep none).") from None


def page_url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..demo import find_ranking_file, is_loopback, startup_ranking
    from ..demo.library import Limits
    from ..demo.server import create_app

    options.require_positive(args, "k", "max_new_tokens", "queue")
    if args.port < 0 or args.port > 65535:
        raise GazeheadsError(f"--port {args.port} is not a port.", "Use 1..65535, or 0 for a free one.")
    if not 0 < args.max_upload_mb <= 256:
        raise GazeheadsError(f"--max-upload-mb {args.max_upload_mb}.", "Use a size between 0 and 256 MiB.")
    token, generated = access_token(args.host, args.token)
    audit_log = None if args.no_audit else args.audit_log
    if audit_log is not None:
        check_audit_log(audit_log)
    layout = options.model_layout(args)
    ranking = options.load_ranking(args.ranking)
    ranking_file = args.ranking
    comics = None
    if args.comics:
        from ..data import resolve_comics

        comics = resolve_comics(options.comics_spec(args, layout), layout.strip)
    options.check_device(args)
    gm = options.load_model(args, layout)
    if ranking is None:
        from ..ranking import Ranking

        found = find_ranking_file(gm, args.runs)
        if found is not None:
            ranking, ranking_file = Ranking.load(found), str(found)
            print(f"reusing the ranking in {found} (same model)", file=sys.stderr)
    if ranking is None:
        if not layout.synthetic:
            raise GazeheadsError("--ranking is needed for a model not trained on gazeheads' synthetic strips.",
                                 "Run `gazeheads discover --model ... --comics ...` and pass --ranking "
                                 "runs/<name>/ranking.json.")
        print(f"no ranking of this model under {args.runs}/: discovering gaze heads on synthetic strips ...",
              file=sys.stderr)
        ranking = startup_ranking(gm)
    ranking.check_compatible(gm)
    delay = args.token_delay_ms if args.token_delay_ms is not None else (150 if layout.synthetic else 0)
    allowed = None if is_loopback(args.host) else ["*"]
    app = create_app(gm, ranking, comics=comics, queue_size=args.queue, max_new_tokens=args.max_new_tokens,
                     token_delay_ms=delay, k=args.k, limits=Limits(max_upload_bytes=int(args.max_upload_mb * 2**20)),
                     allowed_hosts=allowed, token=token, audit_log=audit_log, ranking_file=ranking_file)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    sock = config.bind_socket()  # bound before printing, so the link names the real port (also for --port 0)
    port = sock.getsockname()[1]
    print(f"audit log: {os.path.abspath(audit_log)} (appended)" if audit_log else "audit log: off (--no-audit)",
          file=sys.stderr)
    if token is not None:
        where = " (put this machine's address in place of the wildcard)" if args.host in ("0.0.0.0", "::") else ""
        print(f"access token {'generated' if generated else 'required'}: every request must carry it{where}",
              file=sys.stderr)
    print(f"gazeheads demo on {page_url(args.host, port, token)}  (Ctrl+C stops it)", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
