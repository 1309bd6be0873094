"""The interactive steering demo: steer the gaze heads with the cursor, live, in a browser.

A local web app (FastAPI on uvicorn, one hand-written page): pick a strip or upload an image,
aim a spotlight or drag a box (pin it with a click, or aim from the keyboard), and watch the
answer stream while the target moves. See :func:`gazeheads.demo.server.create_app` for the
API, `gazeheads demo` to serve it, and docs/demo.md for the page, access tokens and the audit log.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..model import GazeModel
    from ..ranking import Ranking

DISCOVERY_SEEDS = tuple(range(300_000, 300_008))  # never training strips, not the demo's strips


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (the only hosts served without a token)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def find_ranking_file(gm: "GazeModel", runs: str | Path = "runs") -> Path | None:
    """The newest `runs/*/ranking.json` (e.g. written by `gazeheads run`) made on this very model
    (same weights fingerprint and head shape), or None."""
    from ..errors import GazeheadsError
    from ..ranking import Ranking

    root = Path(runs)
    if not root.is_dir():
        return None
    candidates = sorted(root.glob("*/ranking.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    fingerprint = gm.fingerprint()
    for path in candidates:
        try:
            ranking = Ranking.load(path)
        except GazeheadsError:
            continue
        if ranking.fingerprint == fingerprint and ranking.shape == gm.shape:
            return path
    return None


def find_ranking(gm: "GazeModel", runs: str | Path = "runs") -> "Ranking | None":
    """The ranking of :func:`find_ranking_file`, loaded, or None (the demo then discovers one at start-up)."""
    from ..ranking import Ranking

    path = find_ranking_file(gm, runs)
    return Ranking.load(path) if path is not None else None


def startup_ranking(gm: "GazeModel", n_strips: int = len(DISCOVERY_SEEDS)) -> "Ranking":
    """Discover gaze heads on a few synthetic strips in the model's layout (seconds on the bundled model)."""
    from ..discovery import discover
    from ..synth import make_strip

    strips = [make_strip(seed, comic_id=f"synth_{seed:06d}", layout=gm.layout.strip)
              for seed in DISCOVERY_SEEDS[:n_strips]]
    return discover(gm, strips, source="synth", progress=False)
