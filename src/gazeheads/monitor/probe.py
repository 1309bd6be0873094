"""A small linear probe: class-balanced, L2-regularised logistic regression in numpy.

Fitted on per-step monitor features of generations with and without steering; its score is
the logit. Newton's method on a handful of standardised features converges in a few steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import GazeheadsError


@dataclass(frozen=True)
class Probe:
    """``logit = ((x - mean) / scale) @ weights + intercept`` over the named features."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    intercept: float

    def logit(self, x: np.ndarray) -> np.ndarray:
        """Scores of feature rows `x` (..., len(features)); NaN rows give NaN."""
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.weights + self.intercept

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "weights": self.weights.tolist(), "intercept": self.intercept}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Probe":
        return cls(tuple(data["features"]), np.asarray(data["mean"], dtype=np.float64),
                   np.asarray(data["scale"], dtype=np.float64), np.asarray(data["weights"], dtype=np.float64),
                   float(data["intercept"]))


def fit_probe(negatives: np.ndarray, positives: np.ndarray, features: Sequence[str], *, l2: float = 1e-2,
              iterations: int = 50) -> Probe:
    """Fit on rows of `negatives` (n, f) labelled 0 and `positives` (m, f) labelled 1, each class weighted
    to half the total, features standardised by their mean and spread over both classes."""
    negatives, positives = np.asarray(negatives, np.float64), np.asarray(positives, np.float64)
    if len(negatives) == 0 or len(positives) == 0:
        raise GazeheadsError(f"The probe needs examples of both classes ({len(negatives)} without steering, "
                             f"{len(positives)} steered).", "Fit it on generations with and without steering.")
    x = np.concatenate([negatives, positives])
    y = np.concatenate([np.zeros(len(negatives)), np.ones(len(positives))])
    if not np.isfinite(x).all():
        raise GazeheadsError("The probe's features hold NaN or infinite values.", "Drop those steps first.")
    mean, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    weight = np.where(y == 1, 0.5 / len(positives), 0.5 / len(negatives))
    penalty = l2 * np.eye(z.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    theta = np.zeros(z.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ theta, -50, 50)))
        gradient = z.T @ (weight * (p - y)) + penalty @ theta
        hessian = (z * (weight * p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return Probe(tuple(features), mean, scale, theta[:-1], float(theta[-1]))


def average_probes(probes: Sequence[Probe]) -> Probe:
    """One linear probe whose logit is the mean of the probes' logits (for cross-fitted halves)."""
    if not probes or len({p.features for p in probes}) != 1:
        raise GazeheadsError("Nothing to average, or probes over different features.", "Average probes of one fit.")
    slopes = [p.weights / p.scale for p in probes]  # logit = x @ (w / s) + (b - (m / s) @ w)
    offsets = [p.intercept - float((p.mean / p.scale) @ p.weights) for p in probes]
    n = len(probes[0].features)
    return Probe(probes[0].features, np.zeros(n), np.ones(n), np.mean(slopes, axis=0), float(np.mean(offsets)))
