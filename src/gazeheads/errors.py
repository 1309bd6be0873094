"""Errors that say what went wrong and how to fix it."""

from __future__ import annotations


class GazeheadsError(Exception):
    """Base error: `problem` says what is wrong, `fix` says what to do about it.

    The CLI prints these two lines instead of a traceback.
    """

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem}\nFix: {fix}")


class DataError(GazeheadsError):
    """Bad input data: missing or extra panels, unreadable images, malformed annotations."""


class RegionError(GazeheadsError):
    """A region that maps to no image tokens, or a prompt without image tokens."""


class ModelError(GazeheadsError):
    """Unsupported architecture, or an artifact made for a model of another shape."""


class HeadSelectionError(GazeheadsError):
    """Impossible head selection, e.g. K larger than the number of heads."""


class GazeheadsWarning(UserWarning):
    """Something worth knowing that does not stop the work; the CLI prints it as one plain line."""
