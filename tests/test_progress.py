"""Progress bars: throttled in logs, live on a terminal."""

from __future__ import annotations

import io

from gazeheads.progress import LOG_INTERVAL_S, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _draws(stream: io.StringIO, steps: int) -> int:
    bar = progress_bar(total=steps, file=stream, desc="work")
    for i in range(steps):
        bar.set_postfix_str(f"item {i}", refresh=False)  # as the library calls it
        bar.update(1)
    bar.close()
    return stream.getvalue().count("\r")


def test_a_log_file_gets_a_few_lines_and_a_terminal_a_live_bar():
    log, terminal = io.StringIO(), _Terminal()
    assert progress_bar(total=1, file=log).mininterval == LOG_INTERVAL_S
    assert progress_bar(total=1, file=terminal).mininterval < LOG_INTERVAL_S
    log = io.StringIO()
    assert _draws(log, 500) == 2  # the first draw and the last, not one line an item
    assert "500/500" in log.getvalue()  # the final state is still written
    terminal = _Terminal()
    assert _draws(terminal, 500) >= 2
