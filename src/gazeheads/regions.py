"""Targets in image space, and how they become image-token positions.

A region is given in the pixel coordinates of the image the user passed (for a strip:
the stitched strip). :class:`ImageGeometry` knows where one image's tokens sit in the
prompt and which pixels each token covers, and turns a region into token positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import torch

from .errors import RegionError

PixelBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class Panel:
    """Panel `index` of a strip, counted from 1 at the left (as in 'the 1st panel')."""

    index: int

    def __post_init__(self) -> None:
        if self.index < 1:
            raise RegionError(f"Panel({self.index}) is not a panel.", "Panels are counted from 1 at the left.")


@dataclass(frozen=True)
class Box:
    """A pixel box (x0, y0, x1, y1) in the coordinates of the image as given."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        if not (self.x1 > self.x0 and self.y1 > self.y0):
            raise RegionError(f"{self} has no area.", "Give x0 < x1 and y0 < y1.")


Region = Union[Panel, Box]


@dataclass(frozen=True)
class Schedule:
    """Targets that change during generation: [(step, region), ...].

    Step s is the s-th generated token (0 = the first one, produced by the prompt's last
    position). A target holds from its step until the next entry's step.
    """

    entries: tuple[tuple[int, Region], ...]

    def __init__(self, entries: Sequence[tuple[int, Region]]) -> None:
        ordered = tuple(sorted(((int(s), r) for s, r in entries), key=lambda e: e[0]))
        if not ordered:
            raise RegionError("An empty schedule.", "Give at least one (step, region) pair.")
        if ordered[0][0] != 0:
            raise RegionError(
                f"The schedule starts at step {ordered[0][0]}, so the first tokens have no target.",
                "Start the schedule at step 0.",
            )
        steps = [s for s, _ in ordered]
        if len(set(steps)) != len(steps):
            raise RegionError("The schedule names one step twice.", "Give each step once.")
        object.__setattr__(self, "entries", ordered)

    @classmethod
    def every(cls, n_tokens: int, regions: Sequence[Region]) -> "Schedule":
        """Switch to the next region every `n_tokens` generated tokens."""
        return cls([(i * n_tokens, region) for i, region in enumerate(regions)])


Target = Union[Region, Schedule]


@dataclass
class ImageGeometry:
    """Where one image's tokens are in a prompt, and which pixels each covers.

    Tokens form a `rows` x `cols` grid over the whole image (row-major), at `positions`
    in the prompt. `panel_boxes` (optional) is the strip layout in image pixels.
    """

    positions: torch.Tensor
    rows: int
    cols: int
    image_size: tuple[int, int]
    panel_boxes: list[tuple[int, int, int, int]] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return self.rows * self.cols

    def cell_centres(self) -> tuple[torch.Tensor, torch.Tensor]:
        """x and y pixel centres of every token cell, row-major, in image coordinates."""
        width, height = self.image_size
        xs = (torch.arange(self.cols, dtype=torch.float64) + 0.5) * width / self.cols
        ys = (torch.arange(self.rows, dtype=torch.float64) + 0.5) * height / self.rows
        return xs.repeat(self.rows), ys.repeat_interleave(self.cols)

    def panel_span(self, panel: Panel) -> tuple[float, float]:
        """Horizontal pixel span owned by `panel`: its box, extended to the middle of each gap."""
        if self.panel_boxes is None:
            raise RegionError(
                f"{panel} needs the strip's panel layout, and this image has none.",
                "Pass a Strip (gazeheads.data) instead of a bare image, or target a Box.",
            )
        n = len(self.panel_boxes)
        if panel.index > n:
            raise RegionError(f"{panel} asked of a {n}-panel strip.", f"Choose a panel from 1 to {n}.")
        k = panel.index - 1
        x0 = 0.0 if k == 0 else (self.panel_boxes[k - 1][2] + self.panel_boxes[k][0]) / 2
        x1 = float(self.image_size[0]) if k == n - 1 else (self.panel_boxes[k][2] + self.panel_boxes[k + 1][0]) / 2
        return x0, x1

    def cell_mask(self, region: Region) -> torch.Tensor:
        """Boolean (rows*cols,) mask of the cells the region owns (cell centre inside)."""
        xs, ys = self.cell_centres()
        if isinstance(region, Panel):
            x0, x1 = self.panel_span(region)
            return (xs >= x0) & (xs < x1)
        if isinstance(region, Box):
            return (xs >= region.x0) & (xs < region.x1) & (ys >= region.y0) & (ys < region.y1)
        raise RegionError(f"Not a region: {region!r}", "Use Panel(k) or Box(x0, y0, x1, y1).")

    def positions_of(self, region: Region) -> torch.Tensor:
        """Prompt positions of the image tokens the region owns; an error if there are none."""
        mask = self.cell_mask(region)
        if not bool(mask.any()):
            width, height = self.image_size
            raise RegionError(
                f"{region} covers no image token: the image ({width}x{height} px) is read as a "
                f"{self.rows}x{self.cols} token grid and no token centre lies inside the region.",
                "Enlarge the region so it contains at least one token centre.",
            )
        return self.positions[mask.to(self.positions.device)]

    def default_regions(self) -> list[Region]:
        """The panels of a strip, or the whole image as one box."""
        if self.panel_boxes is not None:
            return [Panel(k) for k in range(1, len(self.panel_boxes) + 1)]
        width, height = self.image_size
        return [Box(0, 0, width, height)]
