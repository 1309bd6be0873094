"""Writing files so that a crash never leaves half of one: a temporary file, then a rename.

Every artifact gazeheads writes (rankings, summaries, reports, plots, settings) goes
through :func:`atomic_write`, so a reader sees either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .errors import GazeheadsError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        fd = os.open(tmp_path, os.O_RDONLY)  # on disk before it takes the name: a crash leaves old or new
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp_path)` and move the result to `path`; returns `path`."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def check_output_dir(out: Path, files: Iterable[str] = (), *, overwrite: bool = False) -> Path:
    """`out` must be a folder we can write, and must not hold `files` unless `overwrite` (checked before work)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GazeheadsError(f"--out {out} is an existing file, not a folder.", "Give a folder path for --out.")
    probe = out
    while not probe.exists():
        probe = probe.parent
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise GazeheadsError(f"Cannot write to {out}: {probe} is not writable ({exc.strerror}).",
                             "Choose a writable --out folder.") from None
    existing = [name for name in files if (out / name).exists()]
    if existing and not overwrite:
        raise GazeheadsError(f"{out} already holds {', '.join(existing)} from an earlier run.",
                             "Pass --overwrite to replace them, or choose another --out.")
    return out


def check_run_name(root: Path, name: str) -> Path:
    """The run folder ROOT/NAME; NAME must be a plain folder name that stays inside ROOT."""
    if not name or name in (".", "..") or any(sep in name for sep in ("/", "\\")) or name.startswith("~"):
        raise GazeheadsError(f"--name {name!r} is not a plain folder name.",
                             "Use letters, digits, '-', '_' or '.', with no path separators.")
    run_dir = (Path(root) / name)
    if not run_dir.resolve().is_relative_to(Path(root).resolve()):
        raise GazeheadsError(f"--name {name!r} would write outside {root}.", "Use a plain folder name.")
    return run_dir


def readable_file(path: str | None, what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise GazeheadsError(f"{what} {path} is a folder.", f"Give the {what} file itself.")
    if not p.is_file():
        raise GazeheadsError(f"{what} {path} does not exist.", "Check the path.")
    return p
