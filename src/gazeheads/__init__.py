"""gazeheads: discover, steer and track the gaze heads of vision-language models.

    import gazeheads as gh
    gm = gh.load()                                            # the bundled tiny Qwen3-VL
    strips = gh.data.resolve_comics("synth[0:20]", gm.layout.strip)
    ranking = gh.discover(gm, strips)
    enc = gm.encode(strips[0], gm.layout.narration_question)
    with gh.steer(gm, ranking.top(4), gh.Panel(3), enc):
        print(gm.generate(enc, max_new_tokens=4))
    with gh.track(gm, ranking.top(4), enc) as tracker:
        gm.generate(enc, max_new_tokens=4)
    print(tracker.trace().focus())
    with gh.monitor(gm, ranking, enc) as watch:               # was the gaze redirected? (docs/monitoring.md)
        ids = gm.generate_ids(enc, max_new_tokens=4)

Names are loaded on first use, so `import gazeheads` (and `gazeheads --help`) does not import
torch until a model-facing name is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any


_EXPORTS = {
    # models and inputs
    "load": "model", "GazeModel": "model", "Encoded": "model",
    "ModelLayout": "layout", "StripLayout": "layout",
    "Panel": "regions", "Box": "regions", "Schedule": "regions",
    # interventions as values
    "SteerSpec": "specs", "HeadSpec": "specs", "default_k": "specs",
    # discover, steer, track
    "discover": "discovery", "Ranking": "ranking", "HeadSet": "heads",
    "steer": "steering", "Steerer": "steering",
    "track": "tracking", "Tracker": "tracking", "Trace": "tracking",
    # presence, audit
    "presence_test": "presence", "ranking_presence": "presence",
    "AuditLog": "audit", "set_audit_sink": "audit",
    # errors
    "GazeheadsError": "errors", "DataError": "errors", "ModelError": "errors", "RegionError": "errors",
    "HeadSelectionError": "errors", "GazeheadsWarning": "errors",
}
_SUBMODULES = ("data", "prompts", "plots", "evaluation", "reference", "synth", "adapters", "monitor")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def _package_version() -> str:
    """The installed distribution's version (pyproject.toml is the one place it is written)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gazeheads")
    except PackageNotFoundError:  # a source tree on sys.path without an install
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value = _package_version()
    elif name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'gazeheads' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from . import adapters, data, evaluation, monitor, plots, prompts, reference, synth  # noqa: F401
    from .audit import AuditLog, set_audit_sink  # noqa: F401
    from .discovery import discover  # noqa: F401
    from .errors import (DataError, GazeheadsError, GazeheadsWarning, HeadSelectionError,  # noqa: F401
                         ModelError, RegionError)
    from .heads import HeadSet  # noqa: F401
    from .layout import ModelLayout, StripLayout  # noqa: F401
    from .model import Encoded, GazeModel, load  # noqa: F401
    from .presence import presence_test, ranking_presence  # noqa: F401
    from .ranking import Ranking  # noqa: F401
    from .regions import Box, Panel, Schedule  # noqa: F401
    from .specs import HeadSpec, SteerSpec, default_k  # noqa: F401
    from .steering import Steerer, steer  # noqa: F401
    from .tracking import Trace, Tracker, track  # noqa: F401
