"""Calibration: turn raw detector scores into p-values and decisions at a chosen false-positive rate.

Each detector keeps the scores it gave to unsteered generations of a fitting split (per step,
and per generation as a running maximum). A new score s gets the conformal p-value
``(1 + #{null >= s}) / (n + 1)`` against the null scores and is flagged when that is at most the
chosen rate; on exchangeable unsteered inputs the false-positive rate is then at most that rate.
A generation is compared with the unsteered generations that ran at least as many steps, over
the same number of steps (see :class:`NullScores`). The probe is cross-fitted on two halves of the
fitting strips, so no unsteered generation is scored by a probe trained on it. A calibration is a JSON file a deployment keeps.
"""

from __future__ import annotations

import json
import math
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DataError, GazeheadsError, GazeheadsWarning
from ..files import write_text
from .detectors import ALL_FEATURES, DETECTORS, step_scores
from .features import FEATURES
from .probe import Probe, average_probes, fit_probe

FORMAT = "gazeheads.monitor-calibration/1"
LEVELS = ("step", "generation")


@dataclass
class GenerationFeatures:
    """One generation's per-step features (steps, len(ALL_FEATURES)), valid steps only.

    `cluster` names the strip or image it came from (the fitting split is halved by cluster);
    `steered` (steps,) marks the steps a steering bias was active on (for training the probe;
    None for generations without steering).
    """

    features: np.ndarray
    cluster: str
    steered: np.ndarray | None = None


def probe_halves(clusters: Sequence[str]) -> tuple[set[str], set[str]]:
    """The fitting clusters (strips, scenes) halved by a hash of their names (the probe's cross-fitting)."""
    ordered = sorted(set(clusters), key=lambda c: (zlib.crc32(c.encode()), c))
    half = len(ordered) // 2
    return set(ordered[:half]), set(ordered[half:])


def _conformal_p(null: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(1 + #{null >= s}) / (n + 1) for each score s against a sorted null; NaN stays NaN."""
    scores = np.asarray(scores, dtype=np.float64)
    at_least = len(null) - np.searchsorted(null, np.nan_to_num(scores, nan=0.0), side="left")
    return np.where(np.isnan(scores), np.nan, (1.0 + at_least) / (len(null) + 1.0))


def _conformal_threshold(null: np.ndarray, fpr: float) -> float:
    """The score that must be exceeded for a p-value <= fpr; inf when the null is too small for that rate."""
    allowed = math.floor(fpr * (len(null) + 1) + 1e-9) - 1  # null scores that may reach it
    if allowed < 0 or len(null) == 0:
        return math.inf
    return -math.inf if allowed >= len(null) else float(null[len(null) - 1 - allowed])


@dataclass
class NullScores:
    """What one detector scored on unsteered generations: every step (sorted), and per generation its
    running maximum (the score it would have had after 1, 2, ... steps).

    A generation of n steps is compared with the unsteered generations observed for at least n
    steps, each scored over its first n steps: a long narration has more chances to reach a high
    step score than a four-token answer, and is judged against generations that had as many.
    """

    steps: np.ndarray
    running: list[np.ndarray]

    def __post_init__(self) -> None:
        self.steps = np.sort(np.asarray(self.steps, dtype=np.float64))
        self.running = [np.maximum.accumulate(np.asarray(r, dtype=np.float64)) for r in self.running if len(r)]
        self._by_length: dict[int, np.ndarray] = {}

    @classmethod
    def of(cls, step_scores_per_generation: Sequence[np.ndarray]) -> "NullScores | None":
        """From each unsteered generation's step scores (NaN steps dropped); None when nothing is finite."""
        kept = [s[np.isfinite(s)] for s in step_scores_per_generation]
        kept = [s for s in kept if len(s)]
        return cls(np.concatenate(kept), kept) if kept else None

    @property
    def longest(self) -> int:
        return max(len(r) for r in self.running)

    def generation_null(self, length: int) -> np.ndarray:
        """Sorted scores of the generations observed for at least `length` steps, over their first `length`
        steps (when none is that long: the longest ones, over all their steps)."""
        n = max(1, min(int(length), self.longest))
        if n not in self._by_length:
            self._by_length[n] = np.sort([r[n - 1] for r in self.running if len(r) >= n])
        return self._by_length[n]

    def to_dict(self) -> dict[str, list]:
        return {"steps": self.steps.tolist(), "running": [r.tolist() for r in self.running]}


def _null_scores(detector: str, generations: Sequence[GenerationFeatures], probe: Probe | None) -> NullScores | None:
    return NullScores.of([step_scores(detector, g.features, probe) for g in generations])


@dataclass
class Calibration:
    """Per detector, what it scored on the unsteered generations of a fitting split (:class:`NullScores`)."""

    view: dict[str, Any]
    fingerprint: str
    nulls: dict[str, NullScores]
    probe: Probe | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def detectors(self) -> tuple[str, ...]:
        return tuple(d for d in DETECTORS if d in self.nulls)

    def _null(self, detector: str, level: str, length: int | None) -> np.ndarray:
        if level not in LEVELS:
            raise GazeheadsError(f"Unknown level {level!r}.", "Use 'step' or 'generation'.")
        if detector not in self.nulls:
            raise GazeheadsError(f"The calibration has no {detector!r} detector.",
                                 f"Use one of {', '.join(self.detectors)}.")
        if level == "step":
            return self.nulls[detector].steps
        if length is None:
            raise GazeheadsError("A generation's p-value depends on how many steps it generated.",
                                 "Pass the generation lengths (steps) with the generation scores.")
        return self.nulls[detector].generation_null(length)

    def p_values(self, detector: str, scores: np.ndarray, level: str = "generation",
                 lengths: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Conformal p-values of step scores, or of generation scores given each generation's `lengths`."""
        scores = np.asarray(scores, dtype=np.float64)
        if level == "step":
            return _conformal_p(self._null(detector, "step", None), scores)
        if lengths is None:
            self._null(detector, level, None)  # the clear error
        lengths = np.broadcast_to(np.asarray(lengths), scores.shape)
        out = np.empty_like(scores)
        for n in np.unique(lengths):
            at = lengths == n
            out[at] = _conformal_p(self._null(detector, level, int(n)), scores[at])
        return out

    def threshold(self, detector: str, fpr: float, level: str = "generation", length: int | None = None) -> float:
        """The score a step (or a generation of `length` steps) must exceed to be flagged at `fpr`; inf when
        the calibration holds too few unsteered examples to flag anything at that rate."""
        _check_rate(fpr)
        return _conformal_threshold(self._null(detector, level, length), fpr)

    def flags(self, detector: str, scores: np.ndarray, fpr: float, level: str = "generation",
              lengths: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """True where a score is flagged at false-positive rate `fpr` (p-value <= fpr)."""
        _check_rate(fpr)
        p = self.p_values(detector, scores, level, lengths)
        return np.nan_to_num(p, nan=1.0) <= fpr + 1e-12

    def null_size(self, detector: str, length: int) -> int:
        """How many unsteered generations a generation of `length` steps is compared with."""
        return len(self._null(detector, "generation", length))

    # fitting ---------------------------------------------------------------------------

    @classmethod
    def fit(cls, negatives: Sequence[GenerationFeatures], positives: Sequence[GenerationFeatures], *,
            view: Mapping[str, Any], fingerprint: str, info: Mapping[str, Any] | None = None) -> "Calibration":
        """Calibrate every detector on `negatives` and train the probe on `positives` and `negatives`.

        The unfitted detectors are calibrated on every negative (the shadow detector only when the
        features hold shadow distances). The probe is cross-fitted: the fitting strips and scenes
        are halved, a probe is trained on each half and scores the other half's negatives, and
        those out-of-half scores calibrate the deployed probe, the average of the two (one
        linear probe). No negative is scored by a probe trained on it.
        """
        if not negatives:
            raise GazeheadsError("No unsteered generations to calibrate on.",
                                 "Give the fitting split generations without steering.")
        nulls: dict[str, NullScores] = {}
        for detector in ("entropy", "cliff", "shadow"):
            null = _null_scores(detector, negatives, None)
            if null is not None:
                nulls[detector] = null
        halves = probe_halves([g.cluster for g in [*negatives, *positives]])
        live = [ALL_FEATURES.index(f) for f in FEATURES]
        probes, out_of_half = [], []
        for train, held in (halves, halves[::-1]):
            neg_rows = [g.features[:, live] for g in negatives if g.cluster in train]
            pos_rows = [g.features[g.steered][:, live] for g in positives
                        if g.cluster in train and g.steered is not None and g.steered.any()]
            held_negatives = [g for g in negatives if g.cluster in held]
            if neg_rows and pos_rows and held_negatives:
                half_probe = fit_probe(np.concatenate(neg_rows), np.concatenate(pos_rows), FEATURES)
                probes.append(half_probe)
                out_of_half += [step_scores("probe", g.features, half_probe) for g in held_negatives]
        probe = average_probes(probes) if probes else None
        null = NullScores.of(out_of_half) if probes else None
        if null is not None:
            nulls["probe"] = null
        details = {"negatives": len(negatives), "positives": len(positives), "probe_halves": len(probes),
                   **(info or {})}
        return cls(dict(view), fingerprint, nulls, probe, details)

    # files -----------------------------------------------------------------------------

    def check(self, view: Mapping[str, Any], fingerprint: str) -> None:
        """A clear error when the calibration was made for other heads; a warning for other weights."""
        if dict(view) != self.view:
            raise GazeheadsError("The calibration was made for another monitor view (other gaze heads or model shape).",
                                 "Monitor with the heads it was calibrated on (pass only the calibration), or "
                                 "recalibrate with `gazeheads eval monitor`.")
        if self.fingerprint and fingerprint != self.fingerprint:
            warnings.warn(GazeheadsWarning(
                f"the monitor was calibrated on weights {self.fingerprint} and the model's are {fingerprint}; "
                "its false-positive rate may differ"), stacklevel=3)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "view": self.view, "fingerprint": self.fingerprint,
                "nulls": {d: null.to_dict() for d, null in self.nulls.items()},
                "probe": self.probe.to_dict() if self.probe is not None else None, "info": self.info}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Calibration":
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise DataError("Not a gazeheads monitor calibration.",
                            "Give the monitor_calibration.json written by `gazeheads eval monitor`.")
        nulls = {d: NullScores(np.asarray(null["steps"], dtype=np.float64),
                               [np.asarray(r, dtype=np.float64) for r in null["running"]])
                 for d, null in data["nulls"].items()}
        probe = Probe.from_dict(data["probe"]) if data.get("probe") else None
        return cls(dict(data["view"]), str(data.get("fingerprint", "")), nulls, probe, dict(data.get("info", {})))

    def save(self, path: str | Path) -> Path:
        return write_text(path, json.dumps(self.to_dict()) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"No calibration at {path}.", "Run `gazeheads eval monitor` first, or fix the path.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"Cannot read the calibration {path} ({type(exc).__name__}: {exc}).",
                            "Give the monitor_calibration.json written by `gazeheads eval monitor`.") from None
        return cls.from_dict(data)


def _check_rate(fpr: float) -> None:
    if isinstance(fpr, bool) or not isinstance(fpr, (int, float)) or not 0 < fpr < 1:
        raise GazeheadsError(f"A false-positive rate must be strictly between 0 and 1, got {fpr!r}.",
                             "Use e.g. 0.01.")
