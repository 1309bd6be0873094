"""Progress bars that suit both a terminal and a log file.

On a terminal a bar redraws as often as tqdm likes; when stderr is a file or a pipe (CI, nohup,
a batch job) every redraw is a new line in the log, so the bar then redraws at most once every
`LOG_INTERVAL_S` seconds (and once at the end).
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

LOG_INTERVAL_S = 30.0


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """A tqdm bar on stderr, throttled when stderr is not a terminal; kwargs go to tqdm."""
    stream = kwargs.get("file") or sys.stderr
    if not getattr(stream, "isatty", lambda: False)():
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs.setdefault("maxinterval", max(LOG_INTERVAL_S, kwargs["mininterval"]))
    return tqdm(iterable, **kwargs)
