"""Tracking: where a head set looks, region by region, at every generated token.

    with track(gm, ranking.top(10), encoded) as tracker:
        gm.generate(encoded, max_new_tokens=40)
    trace = tracker.trace()      # trace.normalised[b, step, region]

Step s is the forward that produces the s-th new token (step 0 is the prompt's last
position). Values are means over the heads in the set.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from . import hook
from .errors import GazeheadsError
from .heads import HeadSet
from .model import Encoded, GazeModel
from .regions import Region


@dataclass
class Trace:
    """Attention of a head set per batch row, generation step and region.

    `raw`: share of all attention (over every key) on the region; `normalised`: share of the
    attention on image tokens; `image`: share of all attention on the image.
    """

    raw: np.ndarray  # (batch, steps, regions)
    normalised: np.ndarray  # (batch, steps, regions)
    image: np.ndarray  # (batch, steps)
    regions: list[list[Region]]
    value_weighted: bool

    def focus(self) -> np.ndarray:
        """Index of the most attended region per row and step, (batch, steps)."""
        return self.normalised.argmax(-1)

    def to_dict(self) -> dict:
        return {
            "raw": self.raw.tolist(),
            "normalised": self.normalised.tolist(),
            "image": self.image.tolist(),
            "regions": [[repr(r) for r in row] for row in self.regions],
            "value_weighted": self.value_weighted,
        }


class Tracker:
    """Capture callback that sums region masses of the tracked heads, one entry per step.

    With `keep_image_attention=True` it also keeps, per step, the attention on every image
    token (for heat maps): see :meth:`image_attention`.
    """

    def __init__(
        self,
        heads: HeadSet,
        encoded: Encoded,
        regions: Sequence[Region] | Sequence[Sequence[Region]] | None = None,
        *,
        value_weighted: bool = True,
        keep_image_attention: bool = False,
    ) -> None:
        self.heads = heads
        self.value_weighted = value_weighted
        self.keep_image_attention = keep_image_attention
        self.prompt_len = encoded.prompt_len
        batch = encoded.batch_size
        if regions is None:
            per_row = [g.default_regions() for g in encoded.geometries]
        elif regions and isinstance(regions[0], (list, tuple)):
            per_row = [list(r) for r in regions]
            if len(per_row) != batch:
                raise GazeheadsError(f"{len(per_row)} region lists for a batch of {batch} prompts.",
                                     "Give one list of regions per batch row, or one flat list for every row.")
        else:
            per_row = [list(regions)] * batch
        if len({len(r) for r in per_row}) != 1:
            raise GazeheadsError("The rows track different numbers of regions.",
                                 "Give every batch row the same number of regions.")
        self.regions = per_row
        n_regions = len(per_row[0])
        # (batch, regions, prompt_len) membership, and (batch, prompt_len) image membership.
        self.membership = torch.zeros(batch, n_regions, self.prompt_len)
        for row, geometry in enumerate(encoded.geometries):
            for r, region in enumerate(per_row[row]):
                self.membership[row, r, geometry.positions_of(region).cpu()] = 1.0
        self.image = encoded.image_mask().float()
        self._image_positions = [g.positions.cpu() for g in encoded.geometries]
        self._head_index = heads.head_indices()
        self._steps: dict[int, list[torch.Tensor]] = {}
        self._image_steps: dict[int, list[torch.Tensor]] = {}  # step -> per row (image tokens,) sums over heads

    def __call__(self, layer: int, probs: torch.Tensor, value: torch.Tensor) -> None:
        heads = self._head_index[layer].to(probs.device)
        weights = probs[:, heads]  # (batch, h, keys)
        if self.value_weighted:
            n_rep = probs.shape[1] // value.shape[1]
            norms = value.float().norm(dim=-1).repeat_interleave(n_rep, dim=1)[:, heads]
            weights = weights * norms
            weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-30)
        prompt = weights[..., : self.prompt_len]
        membership = self.membership.to(probs.device)
        region_mass = torch.einsum("bhk,brk->bhr", prompt, membership).sum(1)  # summed over heads
        image_mass = (prompt * self.image.to(probs.device)[:, None]).sum((1, 2))
        key_len = probs.shape[-1]
        entry = torch.cat([region_mass, image_mass[:, None], torch.full_like(image_mass[:, None], len(heads))], 1)
        step = key_len - self.prompt_len
        self._steps.setdefault(step, []).append(entry.cpu())
        if self.keep_image_attention:
            summed = prompt.sum(1).cpu()  # (batch, prompt keys), over the tracked heads of this layer
            rows = [summed[b, positions] for b, positions in enumerate(self._image_positions)]
            kept = self._image_steps.get(step)
            self._image_steps[step] = rows if kept is None else [a + r for a, r in zip(kept, rows)]

    def steps(self) -> list[int]:
        """The generation steps recorded so far, in order."""
        return sorted(s for s in self._steps if s >= 0)

    def image_attention(self, step: int) -> list[np.ndarray]:
        """Per batch row, the tracked heads' mean attention on each image token at `step`.

        Each array follows the order of `ImageGeometry.positions` (row-major cells for a
        single-grid image). Raw shares of all attention, like `Trace.raw`; needs
        `keep_image_attention=True`.
        """
        if not self.keep_image_attention:
            raise ValueError("This tracker keeps no per-token attention: create it with keep_image_attention=True.")
        if step not in self._image_steps:
            raise KeyError(f"Step {step} was not recorded; recorded steps: {self.steps()}.")
        n_heads = float(torch.stack(self._steps[step]).sum(0)[0, -1].clamp(min=1))
        return [(row / n_heads).numpy() for row in self._image_steps[step]]

    def trace(self) -> Trace:
        """Everything recorded so far as numpy arrays."""
        steps = sorted(s for s in self._steps if s >= 0)
        batch, n_regions = self.membership.shape[:2]
        raw = np.zeros((batch, len(steps), n_regions))
        image = np.zeros((batch, len(steps)))
        for i, step in enumerate(steps):
            total = torch.stack(self._steps[step]).sum(0)
            n_heads = total[:, -1:].clamp(min=1)
            raw[:, i] = (total[:, :n_regions] / n_heads).numpy()
            image[:, i] = (total[:, n_regions] / n_heads[:, 0]).numpy()
        normalised = raw / np.clip(image[..., None], 1e-30, None)
        return Trace(raw, normalised, image, self.regions, self.value_weighted)


@contextlib.contextmanager
def track(
    gm: GazeModel,
    heads: HeadSet,
    encoded: Encoded,
    regions: Sequence[Region] | Sequence[Sequence[Region]] | None = None,
    *,
    value_weighted: bool = True,
    keep_image_attention: bool = False,
) -> Iterator[Tracker]:
    """Record, per generated token, the attention of `heads` on each region (default: the panels).

    `value_weighted` (default, as the published trajectory script) weights each key's attention by
    the norm of its value vector (Kobayashi et al. 2020) and renormalises; False gives raw attention.
    `keep_image_attention=True` also keeps the attention on every image token (heat maps).
    """
    if not isinstance(heads, HeadSet):
        raise GazeheadsError(f"Not a head set: {heads!r}.", "Pass ranking.top(k), ranking.select(HeadSpec(...)) or a HeadSet.")
    heads.check_compatible(gm.shape)
    tracker = Tracker(heads, encoded, regions, value_weighted=value_weighted,
                      keep_image_attention=keep_image_attention)
    request = hook.CaptureRequest(frozenset(heads.layers()), tracker)
    with hook.requesting(gm.attention_modules(), capture=request):
        yield tracker
