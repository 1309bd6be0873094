"""`monitor(...)`: watch a generation for redirected attention, step by step and as a whole.

    with gh.monitor(gm, ranking, encoded, calibration=cal) as mon:
        ids = gm.generate_ids(encoded, max_new_tokens=40)
    result = mon.result(ids)          # scores, p-values and decisions per step and per generation
    result.flagged("cliff")           # (batch,) True where the generation looks redirected

The monitor adds one capture request to the model's attention plan (the same path `track`
uses) and reads nothing else of it: it works the same whether or not a steer() block is active,
and it never sees which heads are steered, towards what, or how hard.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .. import hook
from ..errors import GazeheadsError
from ..model import Encoded, GazeModel
from ..ranking import Ranking
from .calibration import Calibration, GenerationFeatures
from .detectors import ALL_FEATURES, DETECTORS, generation_scores, step_scores, valid_steps
from .features import FEATURES, SHADOW_FEATURES
from .recorder import StepRecorder
from .shadow import replay, shadow_distances
from .view import MonitorView

DEFAULT_FPR = 0.01


@dataclass(frozen=True)
class Alert:
    """A step flagged while the model generates: which row, which detector, its score and p-value."""

    step: int
    row: int
    detector: str
    score: float
    p_value: float


@dataclass
class MonitorResult:
    """Everything the monitor concluded about one batch of generations.

    `features` (batch, steps, len(ALL_FEATURES)); `lengths` (batch,) steps each row really generated;
    per detector, `step_scores` (batch, steps) (NaN past a row's end) and `generation_scores` (batch,);
    with a calibration also p-values and decisions at false-positive rate `fpr`, and the thresholds:
    one per step, and per row for the generation (it depends on how many steps the row generated).
    """

    features: np.ndarray
    lengths: np.ndarray
    step_scores: dict[str, np.ndarray]
    generation_scores: dict[str, np.ndarray]
    step_p: dict[str, np.ndarray] = field(default_factory=dict)
    generation_p: dict[str, np.ndarray] = field(default_factory=dict)
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    fpr: float = DEFAULT_FPR

    @property
    def detectors(self) -> tuple[str, ...]:
        return tuple(self.step_scores)

    @property
    def calibrated(self) -> bool:
        return bool(self.generation_p)

    def flagged(self, detector: str, level: str = "generation") -> np.ndarray:
        """Decisions at the calibrated false-positive rate: (batch,) per generation or (batch, steps) per step."""
        if not self.calibrated:
            raise GazeheadsError("The monitor had no calibration, so it makes no decisions.",
                                 "Pass calibration=Calibration.load('RUN/monitor_calibration.json').")
        table = self.generation_p if level == "generation" else self.step_p
        if detector not in table:
            raise GazeheadsError(f"No calibrated {detector!r} detector in this result.",
                                 f"Use one of {', '.join(table)}.")
        return np.nan_to_num(table[detector], nan=1.0) <= self.fpr + 1e-12

    def generations(self, clusters: Sequence[str]) -> list[GenerationFeatures]:
        """Each row's features over its valid steps, named by `clusters` (e.g. the image each row asked about):
        unsteered traffic collected this way calibrates a monitor with :meth:`Calibration.fit`."""
        if len(clusters) != len(self.lengths):
            raise GazeheadsError(f"{len(clusters)} names for {len(self.lengths)} generations.", "Give one per row.")
        return [GenerationFeatures(self.features[row, :n], str(name))
                for row, (n, name) in enumerate(zip(self.lengths, clusters))]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, rows trimmed to their valid steps."""
        def rows(a: np.ndarray) -> list:
            return [[_num(v) for v in row[:n]] for row, n in zip(a, self.lengths)]

        out: dict[str, Any] = {"features": list(ALL_FEATURES), "lengths": self.lengths.tolist(), "fpr": self.fpr,
                               "feature_values": [[[_num(v) for v in step] for step in row[:n]]
                                                  for row, n in zip(self.features, self.lengths)],
                               "detectors": {}}
        for name in self.detectors:
            entry = {"step_scores": rows(self.step_scores[name]),
                     "generation_scores": [_num(v) for v in self.generation_scores[name]]}
            if name in self.generation_p:
                entry.update(step_p=rows(self.step_p[name]),
                             generation_p=[_num(v) for v in self.generation_p[name]],
                             flagged=self.flagged(name).tolist(),
                             thresholds={"step": _num(self.thresholds[name]["step"]),
                                         "generation": [_num(t) for t in self.thresholds[name]["generation"]]})
            out["detectors"][name] = entry
        return out


def _num(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


class Monitor:
    """The state of one monitor block: the recorder, and how to turn what it saw into a result."""

    def __init__(self, gm: GazeModel, view: MonitorView, encoded: Encoded, *, calibration: Calibration | None,
                 shadow: GazeModel | None, fpr: float, on_alert: Callable[[Alert], None] | None) -> None:
        self.gm = gm
        self.view = view
        self.encoded = encoded
        self.calibration = calibration
        self.shadow = shadow
        self.fpr = fpr
        self.on_alert = on_alert
        online = on_alert is not None and calibration is not None
        self.recorder = StepRecorder(view, encoded, keep_rows=shadow is not None,
                                     on_step=self._check_step if online else None)

    def _online_detectors(self) -> list[str]:
        return [d for d in self.calibration.detectors if not DETECTORS[d].needs_shadow]

    def _check_step(self, step: int, features: np.ndarray) -> None:
        """Raise alerts for a step as soon as it is complete (detectors that need no shadow)."""
        padded = np.concatenate([features, np.full((features.shape[0], len(SHADOW_FEATURES)), np.nan)], axis=1)
        for detector in self._online_detectors():
            scores = step_scores(detector, padded, self.calibration.probe)
            p = self.calibration.p_values(detector, scores, "step")
            for row in np.flatnonzero(np.nan_to_num(p, nan=1.0) <= self.fpr + 1e-12):
                self.on_alert(Alert(step, int(row), detector, float(scores[row]), float(p[row])))

    def features(self) -> np.ndarray:
        """(batch, steps, len(FEATURES)): the live features of the steps recorded so far."""
        return self.recorder.feature_array()

    def lengths(self, new_ids: torch.Tensor | None, n_steps: int) -> np.ndarray:
        """Steps each row generated: up to and including its first end token (all steps without ids)."""
        batch = self.encoded.batch_size
        if new_ids is None:
            return np.full(batch, n_steps)
        ends = _end_tokens(self.gm)
        lengths = []
        for row in new_ids.tolist()[:batch]:
            stop = next((i + 1 for i, token in enumerate(row) if token in ends), len(row))
            lengths.append(min(stop, n_steps))
        return np.asarray(lengths)

    def result(self, new_ids: torch.Tensor | None = None) -> MonitorResult:
        """Scores of what was recorded. `new_ids` (the generated ids) trims each row at its end token and is
        needed for the shadow replay; without a shadow, every detector but "shadow" is scored."""
        live = self.features()
        batch, n_steps = live.shape[:2]
        if new_ids is not None and new_ids.shape[0] != batch:
            raise GazeheadsError(f"{new_ids.shape[0]} generated rows for a monitored batch of {batch}.",
                                 "Pass the ids gm.generate_ids returned inside this monitor block.")
        shadow = np.full((batch, n_steps, len(SHADOW_FEATURES)), np.nan)
        if self.shadow is not None:
            if new_ids is None:
                raise GazeheadsError("The shadow detector replays the generated tokens, and none were given.",
                                     "Call result(ids) with the ids gm.generate_ids returned.")
            rows = replay(self.shadow, self.view, self.encoded, new_ids[:, :n_steps])
            distances = shadow_distances(self.recorder, rows, self.view)
            shadow[:, :distances.shape[1]] = distances
        features = np.concatenate([live, shadow], axis=-1)
        lengths = self.lengths(new_ids, n_steps)
        valid = valid_steps(lengths, n_steps)
        calibration = self.calibration
        detectors = ["entropy", "cliff"] + (["shadow"] if self.shadow is not None else [])
        if calibration is not None and calibration.probe is not None:
            detectors.append("probe")
        probe = calibration.probe if calibration is not None else None
        result = MonitorResult(features, lengths, {}, {}, fpr=self.fpr)
        for name in detectors:
            scores = np.where(valid, step_scores(name, features, probe), np.nan)
            result.step_scores[name] = scores
            result.generation_scores[name] = generation_scores(scores, lengths)
            if calibration is not None and name in calibration.nulls:
                result.step_p[name] = calibration.p_values(name, scores, "step")
                result.generation_p[name] = calibration.p_values(name, result.generation_scores[name], "generation",
                                                                 lengths)
                result.thresholds[name] = {
                    "step": calibration.threshold(name, self.fpr, "step"),
                    "generation": [calibration.threshold(name, self.fpr, "generation", int(n)) for n in lengths]}
        return result


def _end_tokens(gm: GazeModel) -> set[int]:
    """Token ids that end a generation: the tokenizer's end and pad tokens and the model's configured ends."""
    ends = {gm.tokenizer.eos_token_id, gm.tokenizer.pad_token_id}
    configured = getattr(getattr(gm.model, "generation_config", None), "eos_token_id", None)
    ends |= set(configured) if isinstance(configured, (list, tuple)) else {configured}
    return {e for e in ends if e is not None}


def resolve_view(gm: GazeModel, ranking: Ranking | MonitorView | None, calibration: Calibration | None,
                 k: int | None) -> MonitorView:
    """The heads to watch: the calibration's (checked against `ranking` when both are given), else the
    top-`k` gaze heads of `ranking` and every head."""
    if calibration is not None:
        view = MonitorView.from_dict(calibration.view, gm.shape)
        if ranking is not None:
            asked = ranking if isinstance(ranking, MonitorView) else MonitorView.from_ranking(ranking, k or len(view.gaze))
            calibration.check(asked.to_dict(), gm.fingerprint())
        else:
            calibration.check(view.to_dict(), gm.fingerprint())
        return view
    if isinstance(ranking, MonitorView):
        return ranking
    if not isinstance(ranking, Ranking):
        raise GazeheadsError(f"The monitor needs a ranking of the model's gaze heads, got {type(ranking).__name__}.",
                             "Pass gh.discover(...)'s ranking (or Ranking.load(path)), a MonitorView, or a "
                             "calibration.")
    ranking.check_compatible(gm)
    return MonitorView.from_ranking(ranking, k)


@contextlib.contextmanager
def monitor(gm: GazeModel, ranking: Ranking | MonitorView | None, encoded: Encoded, *,
            calibration: Calibration | None = None, shadow: GazeModel | None = None, fpr: float = DEFAULT_FPR,
            on_alert: Callable[[Alert], None] | None = None, k: int | None = None) -> Iterator[Monitor]:
    """Watch the generation of `encoded` inside the block; call ``.result(ids)`` on the yielded Monitor after.

    `ranking` is the monitor's own ranking (its top-`k` gaze heads are watched, with every head in
    the wide view) or a :class:`MonitorView`; it may be None when `calibration` (from
    `gazeheads eval monitor`) is given, whose view is then used. `shadow` (see
    :func:`~gazeheads.monitor.shadow_model`) enables the shadow detector. `on_alert` is called
    with an :class:`Alert` for every step flagged at `fpr` while generation runs (needs a calibration).
    """
    if not isinstance(encoded, Encoded):
        raise GazeheadsError(f"Not an encoded prompt: {type(encoded).__name__}.", "Pass the result of gm.encode(...).")
    if calibration is not None and not isinstance(calibration, Calibration):
        raise GazeheadsError(f"Not a monitor calibration: {type(calibration).__name__}.",
                             "Pass gazeheads.monitor.Calibration.load(path).")
    if isinstance(fpr, bool) or not isinstance(fpr, (int, float)) or not 0 < fpr < 1:
        raise GazeheadsError(f"fpr must be strictly between 0 and 1, got {fpr!r}.", "Use e.g. 0.01.")
    if on_alert is not None and calibration is None:
        raise GazeheadsError("Alerts need a calibration (a threshold to cross).",
                             "Pass calibration=... together with on_alert=....")
    view = resolve_view(gm, ranking, calibration, k)
    watcher = Monitor(gm, view, encoded, calibration=calibration, shadow=shadow, fpr=float(fpr), on_alert=on_alert)
    request = hook.CaptureRequest(watcher.recorder.layers, watcher.recorder)
    with hook.requesting(gm.attention_modules(), capture=request):
        yield watcher


__all__ = ["Alert", "Monitor", "MonitorResult", "monitor", "DEFAULT_FPR", "FEATURES"]
