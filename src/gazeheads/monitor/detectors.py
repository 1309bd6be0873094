"""The detectors: each turns the monitor's per-step features into a score (higher: more likely redirected).

A generation's score is its highest step score (steering may start mid-generation). Scores are
raw here; :mod:`.calibration` turns them into p-values and decisions at a chosen false-positive rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import GazeheadsError
from .features import FEATURES, SHADOW_FEATURES
from .probe import Probe

ALL_FEATURES = FEATURES + SHADOW_FEATURES
"""Columns of a feature array: the live features, then the shadow comparison (NaN without a shadow)."""

SHADOW_TOLERANCE = 1e-4
"""Shadow distances below this are numerical noise (another kernel, another batch), scored as 0."""


@dataclass(frozen=True)
class Detector:
    """What a detector measures, what it assumes of the deployment, and whether it is fitted."""

    name: str
    measures: str
    assumes: str
    fitted: bool = False
    needs_shadow: bool = False


DETECTORS: dict[str, Detector] = {d.name: d for d in (
    Detector("entropy", "baseline: how concentrated the gaze heads' image attention is (1 - normalised entropy, "
                        "mean over the monitor's gaze heads)",
             "only that the monitor's own gaze heads are the ones that matter; nothing is fitted"),
    Detector("cliff", "mechanism: the largest gap (nats) between consecutive sorted log-attention values of the "
                      "image tokens, over every watched head; a +B/-B logit bias on a region opens a gap of about "
                      "2B that natural attention does not have",
             "the bias is added to the logits of a region as a constant (any mode, any heads in the wide view); "
             "nothing is fitted"),
    Detector("shadow", "mechanism: the largest total-variation distance between a watched head's live attention "
                       "row and its row in the observer's own unsteered replay of the same tokens",
             "the observer runs a second, trusted copy of the weights (double the compute) that the attacker "
             "cannot reach", needs_shadow=True),
    Detector("probe", "learned: a logistic regression on the per-step features of the gaze heads and the wide "
                      "view, trained on steered and unsteered generations of strips disjoint from those scored",
             "steering at scoring time looks like the steering it was trained on", fitted=True),
)}


def step_scores(detector: str, features: np.ndarray, probe: Probe | None = None) -> np.ndarray:
    """Scores (...) of feature rows (..., len(ALL_FEATURES)) under `detector`; NaN where it cannot score."""
    if detector not in DETECTORS:
        raise GazeheadsError(f"Unknown detector {detector!r}.", f"Use one of {', '.join(DETECTORS)}.")
    features = np.asarray(features, dtype=np.float64)
    column = {name: features[..., i] for i, name in enumerate(ALL_FEATURES)}
    if detector == "entropy":
        return column["gaze_focus"]
    if detector == "cliff":
        return column["wide_cliff_max"]
    if detector == "shadow":
        distance = column["shadow_wide_tv"]
        return np.where(distance < SHADOW_TOLERANCE, 0.0, distance)
    if probe is None:
        raise GazeheadsError("The probe detector has no fitted probe.",
                             "Pass a calibration from `gazeheads eval monitor` (it holds the probe).")
    return probe.logit(features[..., [ALL_FEATURES.index(f) for f in probe.features]])


def valid_steps(lengths: np.ndarray, n_steps: int) -> np.ndarray:
    """(batch, n_steps) bool: the steps each row really generated (up to and including its end token)."""
    return np.arange(n_steps)[None, :] < np.asarray(lengths)[:, None]


def generation_scores(scores: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per row, the highest score over its valid steps (NaN when it has none or the detector cannot score)."""
    scores = np.where(valid_steps(lengths, scores.shape[1]), scores, -np.inf)
    best = scores.max(axis=1) if scores.shape[1] else np.full(scores.shape[0], -np.inf)
    return np.where(np.isfinite(best), best, np.nan)
