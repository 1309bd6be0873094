"""Monitoring: detect, from observable attention only, that a model's gaze is being redirected.

    import gazeheads as gh
    from gazeheads.monitor import Calibration, monitor

    with monitor(gm, ranking, encoded, calibration=Calibration.load("runs/monitor/monitor_calibration.json")) as mon:
        ids = gm.generate_ids(encoded, max_new_tokens=40)
    result = mon.result(ids)
    result.flagged("cliff")          # per generation, at the calibrated false-positive rate

The monitor watches heads it chooses (its own gaze heads, and a wide view of every head) through
the library's capture path, and the model's inputs and outputs; it never reads a steering plan.
`gazeheads monitor` runs it from the command line and `gazeheads eval monitor` measures it.
This module can be called like the function: ``gazeheads.monitor(gm, ranking, encoded)``.
"""

from __future__ import annotations

import sys
import types

from .calibration import Calibration, GenerationFeatures, NullScores
from .detectors import ALL_FEATURES, DETECTORS, Detector
from .features import FEATURES, SHADOW_FEATURES
from .session import DEFAULT_FPR, Alert, Monitor, MonitorResult, monitor
from .shadow import shadow_model
from .view import MonitorView

__all__ = ["ALL_FEATURES", "Alert", "Calibration", "DEFAULT_FPR", "DETECTORS", "Detector", "FEATURES",
           "GenerationFeatures", "Monitor", "MonitorResult", "MonitorView", "NullScores", "SHADOW_FEATURES", "monitor",
           "shadow_model"]


class _CallableModule(types.ModuleType):
    """`gazeheads.monitor` is both this package and the context manager, like `gh.track` is a function:
    calling the module calls :func:`monitor` (whichever of the two `gh.monitor` resolves to)."""

    def __call__(self, *args, **kwargs):
        return monitor(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
