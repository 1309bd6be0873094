"""The monitor's capture callback: one feature vector per batch row and generation step.

It receives, through the library's ordinary capture path, the attention row of the query that
produces each new token (step 0 is the prompt's last position), layer by layer, and keeps only
what the detectors need: the statistics of :mod:`.features` (and, for the shadow comparison,
the watched heads' rows).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..errors import GazeheadsError
from ..model import Encoded
from .features import FEATURES, head_stats
from .view import MonitorView

StepCallback = Callable[[int, np.ndarray], None]
"""Called as ``fn(step, features)`` with features (batch, len(FEATURES)) once a step is complete."""


class StepRecorder:
    """Capture callback (``fn(layer, probs, value)``) that turns captured rows into per-step features.

    A step is complete when the last watched layer has reported; `on_step` (optional) then sees
    its features at once, while generation continues. With `keep_rows` the watched heads' rows
    are kept too (the shadow comparison needs them; memory grows with steps x heads x keys).
    """

    def __init__(self, view: MonitorView, encoded: Encoded, *, keep_rows: bool = False,
                 on_step: StepCallback | None = None) -> None:
        self.prompt_len = encoded.prompt_len
        self.image_mask = encoded.image_mask()
        if not bool(self.image_mask.any(-1).all()):
            raise GazeheadsError("A prompt of the batch holds no image tokens, so there is no image attention to "
                                 "monitor.", "Monitor prompts made with gm.encode(image, question).")
        self.keep_rows = keep_rows
        self.on_step = on_step
        self._columns = view.columns()
        self._last_layer = max(self._columns)
        self._gaze, self._wide = view.masks()
        self._partial: dict[int, list[torch.Tensor]] = {}  # step -> the watched rows of the layers so far
        self.features: dict[int, np.ndarray] = {}
        self.rows: dict[int, torch.Tensor] = {}

    @property
    def layers(self) -> frozenset[int]:
        return frozenset(self._columns)

    def __call__(self, layer: int, probs: torch.Tensor, value: torch.Tensor) -> None:
        step = probs.shape[-1] - self.prompt_len
        if step in self.features:
            raise GazeheadsError(f"The monitor saw generation step {step} twice.",
                                 "Watch one generation per monitor block (enter a new block for the next one).")
        self._partial.setdefault(step, []).append(probs[:, self._columns[layer].to(probs.device)])
        if layer == self._last_layer:
            self._finish(step)

    def _finish(self, step: int) -> None:
        rows = torch.cat(self._partial.pop(step), dim=1)  # (batch, watched heads, keys), all layers at once
        stats = head_stats(rows, self.image_mask)
        per_head = torch.stack([stats.focus, stats.image_share, stats.cliff], -1).double().cpu()
        groups = []
        for mask in (self._gaze, self._wide):
            focus, share, cliff = per_head[:, mask].unbind(-1)
            groups += [focus.mean(1), share.mean(1), cliff.amax(1), cliff.mean(1)]
        features = torch.stack(groups, -1).numpy()
        self.features[step] = features
        if self.keep_rows:
            self.rows[step] = rows.float().cpu()
        if self.on_step is not None:
            self.on_step(step, features)

    def steps(self) -> list[int]:
        """The complete steps so far, in order."""
        return sorted(self.features)

    def feature_array(self) -> np.ndarray:
        """(batch, steps, len(FEATURES)) for the complete steps."""
        steps = self.steps()
        if not steps:
            return np.zeros((self.image_mask.shape[0], 0, len(FEATURES)))
        return np.stack([self.features[s] for s in steps], axis=1)
