"""Targets in image space, and how they become image-token positions.

A region is given in the pixel coordinates of the image the user passed (for a strip:
the stitched strip). :class:`ImageGeometry` knows where one image's tokens sit in the
prompt and which pixels each token covers, and turns a region into token positions.
"""

from __future__ import annotations

import math
import warnings
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
        if isinstance(self.index, bool) or not isinstance(self.index, int):
            raise RegionError(f"Panel({self.index!r}): the panel number must be a whole number.",
                              "Write e.g. Panel(3) (panels are counted from 1 at the left).")
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
        for name in ("x0", "y0", "x1", "y1"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RegionError(f"Box {name}={value!r} is not a finite number of pixels.",
                                  "Write e.g. Box(10, 20, 110, 80) in pixels of the image as given.")
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
        try:
            pairs = [(step, region) for step, region in entries]
        except (TypeError, ValueError):
            raise RegionError(f"A schedule must be a list of (step, region) pairs, got {entries!r}.",
                              "Write e.g. Schedule([(0, Panel(3)), (20, Panel(1))]).") from None
        for step, region in pairs:
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise RegionError(f"Schedule step {step!r} is not a generation step.",
                                  "Steps are whole numbers from 0 (the first generated token).")
            if not isinstance(region, (Panel, Box)):
                raise RegionError(f"Schedule target {region!r} is not a region.", "Use Panel(k) or Box(x0, y0, x1, y1).")
        ordered = tuple(sorted(pairs, key=lambda e: e[0]))
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
        if isinstance(n_tokens, bool) or not isinstance(n_tokens, int) or n_tokens < 1:
            raise RegionError(f"A schedule that switches every {n_tokens!r} tokens.", "Switch every 1 or more tokens.")
        return cls([(i * n_tokens, region) for i, region in enumerate(regions)])


Target = Union[Region, Schedule]


class UnseenPixelsWarning(UserWarning):
    """Part of an image, or of a region, is never seen by the model (the processor crops it away)."""


@dataclass(eq=False)
class View:
    """One grid of image tokens: `rows` x `cols` cells, row-major, at prompt `positions`.

    The grid spans `box` (x0, y0, x1, y1) in pixels of the image as given, split into equal
    cells. A tile covers part of the image, a global view or thumbnail all of it; a box may
    reach past the image where the processor padded it, and cells centred there (padding)
    belong to no region.
    """

    name: str
    positions: torch.Tensor
    rows: int
    cols: int
    box: PixelBox

    def __post_init__(self) -> None:
        if self.positions.numel() != self.rows * self.cols:
            raise ValueError(
                f"View {self.name!r}: {self.positions.numel()} positions for a {self.rows}x{self.cols} grid."
            )

    def cell_centres(self) -> tuple[torch.Tensor, torch.Tensor]:
        """x and y pixel centres of every cell, row-major, in image coordinates."""
        x0, y0, x1, y1 = (float(v) for v in self.box)
        xs = x0 + (torch.arange(self.cols, dtype=torch.float64) + 0.5) * (x1 - x0) / self.cols
        ys = y0 + (torch.arange(self.rows, dtype=torch.float64) + 0.5) * (y1 - y0) / self.rows
        return xs.repeat(self.rows), ys.repeat_interleave(self.cols)

    def cell_boxes(self) -> torch.Tensor:
        """(rows*cols, 4) float64 pixel rectangles (x0, y0, x1, y1) of the cells, row-major."""
        x0, y0, x1, y1 = (float(v) for v in self.box)
        w, h = (x1 - x0) / self.cols, (y1 - y0) / self.rows
        cx = x0 + torch.arange(self.cols, dtype=torch.float64) * w
        cy = y0 + torch.arange(self.rows, dtype=torch.float64) * h
        left, top = cx.repeat(self.rows), cy.repeat_interleave(self.cols)
        return torch.stack([left, top, left + w, top + h], dim=1)

    def describe(self) -> str:
        x0, y0, x1, y1 = self.box
        return f"{self.name} {self.rows}x{self.cols} over ({x0:g}, {y0:g}, {x1:g}, {y1:g})"


def _overlap_area(boxes: torch.Tensor, rect: PixelBox) -> torch.Tensor:
    """Area of each (n, 4) box inside `rect`."""
    x0, y0, x1, y1 = rect
    w = (boxes[:, 2].clamp(max=x1) - boxes[:, 0].clamp(min=x0)).clamp(min=0)
    h = (boxes[:, 3].clamp(max=y1) - boxes[:, 1].clamp(min=y0)).clamp(min=0)
    return w * h


def _intersect(a: PixelBox, b: PixelBox) -> PixelBox | None:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _area(rect: PixelBox) -> float:
    return max(0.0, rect[2] - rect[0]) * max(0.0, rect[3] - rect[1])


@dataclass
class ImageGeometry:
    """Where one image's tokens are in a prompt, and which pixels each covers.

    The tokens form one or more :class:`View` grids (tiles, a global view, a thumbnail, or
    simply one grid over the whole image). `positions` holds the prompt positions of all
    image tokens of all views (separator and newline tokens excluded); `rows` x `cols` is
    the grid of the first view, and the only one for single-view families such as Qwen-VL,
    whose tokens form a `rows` x `cols` grid over the whole image (row-major).
    `panel_boxes` (optional) is the strip layout in image pixels.

    A panel owns its token columns in a view that spans the whole image with at least one column per
    panel (Qwen-VL's one grid, Gemma 3's and LLaVA-NeXT's base views): the columns proportional to its
    pixel width (the published rule, see :meth:`panel_column_bounds`). Elsewhere (tiles, padded or
    cropped views, coarse views with fewer columns than panels) and for boxes, a region owns the cells
    whose centre lies inside it. A view that shows at
    least half of the region but has no cell centre inside it (a region smaller than its
    cells) contributes the one cell that overlaps the region most, so a region maps to tokens
    in every view that shows it; such a cell may then also belong to a neighbouring region.
    Image pixels that no view covers (cropped away by the processor) are listed by :meth:`unseen`.
    """

    positions: torch.Tensor
    rows: int
    cols: int
    image_size: tuple[int, int]
    panel_boxes: list[tuple[int, int, int, int]] | None = None
    extra: dict = field(default_factory=dict)
    views: list[View] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.views:
            width, height = self.image_size
            self.views = [View("image", self.positions, self.rows, self.cols, (0.0, 0.0, float(width), float(height)))]

    @classmethod
    def from_views(
        cls,
        views: Sequence[View],
        image_size: tuple[int, int],
        panel_boxes: list[tuple[int, int, int, int]] | None = None,
        extra: dict | None = None,
    ) -> "ImageGeometry":
        """A geometry made of several views, in prompt order."""
        if not views:
            raise ValueError("An image geometry needs at least one view.")
        positions = torch.cat([v.positions for v in views])
        first = views[0]
        return cls(positions, first.rows, first.cols, tuple(image_size), panel_boxes, dict(extra or {}), list(views))

    @property
    def n_tokens(self) -> int:
        return sum(v.rows * v.cols for v in self.views)

    def cell_centres(self) -> tuple[torch.Tensor, torch.Tensor]:
        """x and y pixel centres of every token cell (all views, in `positions` order), in image coordinates."""
        centres = [v.cell_centres() for v in self.views]
        if len(centres) == 1:
            return centres[0]
        return torch.cat([c[0] for c in centres]), torch.cat([c[1] for c in centres])

    def cell_boxes(self) -> torch.Tensor:
        """(n_tokens, 4) pixel rectangles of every token cell, in `positions` order."""
        return torch.cat([v.cell_boxes() for v in self.views])

    def view_of_token(self) -> torch.Tensor:
        """(n_tokens,) index of the view each token belongs to."""
        return torch.cat([torch.full((v.rows * v.cols,), i) for i, v in enumerate(self.views)])

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

    def region_box(self, region: Region) -> PixelBox:
        """The pixel rectangle of a region: a panel's span over the full image height, or the box."""
        if isinstance(region, Panel):
            x0, x1 = self.panel_span(region)
            return (x0, 0.0, x1, float(self.image_size[1]))
        if isinstance(region, Box):
            return (float(region.x0), float(region.y0), float(region.x1), float(region.y1))
        raise RegionError(f"Not a region: {region!r}", "Use Panel(k) or Box(x0, y0, x1, y1).")

    def cell_mask(self, region: Region) -> torch.Tensor:
        """Boolean (n_tokens,) mask of the cells the region owns (see the class doc)."""
        x0, y0, x1, y1 = self.region_box(region)
        xs, ys = self.cell_centres()
        if isinstance(region, Panel):
            mask = (xs >= x0) & (xs < x1)
            start = 0
            for view in self.views:
                n = view.rows * view.cols
                if self._spans_image(view) and view.cols >= len(self.panel_boxes or ()):
                    # the published rule: the panel's own token columns
                    bounds = self.panel_column_bounds(view.cols)
                    column = torch.arange(n) % view.cols
                    mask[start:start + n] = (column >= bounds[region.index - 1]) & (column < bounds[region.index])
                start += n
        else:
            mask = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
        mask &= self.in_image()  # padding cells belong to no region
        return self.fill_views(mask, (x0, y0, x1, y1))

    def _spans_image(self, view: View) -> bool:
        width, height = self.image_size
        return all(abs(float(a) - b) < 1e-6 for a, b in zip(view.box, (0.0, 0.0, float(width), float(height))))

    def panel_column_bounds(self, cols: int) -> list[int]:
        """Token-column boundaries [0, e1, .., cols] of the panels in a grid of `cols` columns over the image.

        The published rule: panel k owns the columns proportional to its pixel width, the
        boundaries rounded (Python `round`) and forced strictly increasing. With the published
        stitching that is exactly width / 32 columns per panel on Qwen3-VL.
        """
        if self.panel_boxes is None:
            raise RegionError("Panels need the strip's panel layout, and this image has none.",
                              "Pass a Strip (gazeheads.data) instead of a bare image, or target a Box.")
        n = len(self.panel_boxes)
        width = float(self.image_size[0])
        bounds = [0]
        for k in range(1, n):
            edge = self.panel_span(Panel(k))[1]
            bounds.append(max(int(round(cols * edge / width)), bounds[-1] + 1))
        if bounds[-1] >= cols:
            raise RegionError(f"A {n}-panel strip read as {cols} token columns leaves the last panel no column.",
                              "Stitch the strip at a larger height (more token columns), or use fewer panels.")
        bounds.append(cols)
        return bounds

    def in_image(self) -> torch.Tensor:
        """Boolean (n_tokens,): cells whose centre lies on the image (not on the processor's padding)."""
        xs, ys = self.cell_centres()
        width, height = self.image_size
        return (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)

    def fill_views(self, mask: torch.Tensor, rect: PixelBox) -> torch.Tensor:
        """Give every view that shows most of `rect` but owns none of its cells the cell overlapping it most.

        A region smaller than a coarse view's cells (a thumbnail, a base view) otherwise owns
        no token there; `mask` is returned unchanged when empty or for single-view images.
        """
        if not bool(mask.any()) or len(self.views) < 2:
            return mask
        width, height = self.image_size
        target = _intersect(rect, (0.0, 0.0, float(width), float(height)))
        if target is None:
            return mask
        mask = mask.clone()
        start = 0
        for view in self.views:
            n = view.rows * view.cols
            shown = _intersect(target, tuple(float(v) for v in view.box))
            if not bool(mask[start:start + n].any()) and shown is not None and _area(shown) >= 0.5 * _area(target):
                xs, ys = view.cell_centres()
                in_image = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
                overlap = _overlap_area(view.cell_boxes(), target) * in_image
                if float(overlap.max()) > 0:
                    mask[start + int(overlap.argmax())] = True
            start += n
        return mask

    def seen_boxes(self) -> list[PixelBox]:
        """The part of the image each view covers (its box clipped to the image)."""
        width, height = self.image_size
        image = (0.0, 0.0, float(width), float(height))
        boxes = [_intersect(tuple(float(v) for v in view.box), image) for view in self.views]
        return [b for b in boxes if b is not None]

    def unseen(self) -> list[PixelBox]:
        """Rectangles of image pixels that no token covers (e.g. cropped away by the processor)."""
        width, height = self.image_size
        seen = self.seen_boxes()
        xs = sorted({0.0, float(width), *[b[0] for b in seen], *[b[2] for b in seen]})
        ys = sorted({0.0, float(height), *[b[1] for b in seen], *[b[3] for b in seen]})
        out: list[PixelBox] = []
        for ya, yb in zip(ys, ys[1:]):
            row: list[PixelBox] = []
            for xa, xb in zip(xs, xs[1:]):
                cx, cy = (xa + xb) / 2, (ya + yb) / 2
                if any(b[0] <= cx < b[2] and b[1] <= cy < b[3] for b in seen):
                    continue
                if row and row[-1][2] == xa:
                    row[-1] = (row[-1][0], ya, xb, yb)
                else:
                    row.append((xa, ya, xb, yb))
            out.extend(row)
        return out

    def unseen_fraction(self, region: Region | None = None) -> float:
        """Share of the region's pixels (default: the whole image's) that no token covers."""
        width, height = self.image_size
        rect = (0.0, 0.0, float(width), float(height)) if region is None else self.region_box(region)
        inside = _intersect(rect, (0.0, 0.0, float(width), float(height)))
        if inside is None:
            return 0.0
        lost = sum(_area(part) for box in self.unseen() if (part := _intersect(box, inside)) is not None)
        return lost / _area(inside)

    def describe(self) -> str:
        """One line for people: the views and the pixels the model never sees."""
        width, height = self.image_size
        text = f"{width}x{height} px image read as " + "; ".join(v.describe() for v in self.views)
        lost = self.unseen_fraction()
        if lost > 0:
            boxes = ", ".join(f"({x0:g}, {y0:g}, {x1:g}, {y1:g})" for x0, y0, x1, y1 in self.unseen())
            text += f"; {lost:.1%} of the pixels are never seen: {boxes}"
        return text

    def _grid_text(self) -> str:
        if len(self.views) == 1:
            return f"a {self.rows}x{self.cols} token grid"
        return f"{len(self.views)} token grids (" + "; ".join(v.describe() for v in self.views) + ")"

    def positions_of(self, region: Region) -> torch.Tensor:
        """Prompt positions of the image tokens the region owns; an error if there are none.

        A region partly in pixels the model never sees maps to the tokens of the rest and
        raises an :class:`UnseenPixelsWarning`.
        """
        mask = self.cell_mask(region)
        width, height = self.image_size
        lost = self.unseen_fraction(region) if len(self.views) > 1 or self.unseen() else 0.0
        if not bool(mask.any()):
            if lost > 0:
                raise RegionError(
                    f"{region} covers no image token: {lost:.0%} of it lies in pixels of the {width}x{height} px "
                    f"image that the model never reads: the processor crops away or the vision tower's patches do "
                    f"not reach them ({self.describe()}).",
                    "Choose a region inside the part the model sees, or configure the processor not to crop "
                    "(e.g. pad to a square, or turn off center cropping).",
                )
            raise RegionError(
                f"{region} covers no image token: the image ({width}x{height} px) is read as "
                f"{self._grid_text()} and no token centre lies inside the region.",
                "Enlarge the region so it contains at least one token centre.",
            )
        if lost > 0:
            warnings.warn(
                f"{lost:.0%} of {region} lies in pixels the model never sees (cropped away, or past the last "
                f"patch); it maps to the tokens of the rest. {self.describe()}",
                UnseenPixelsWarning,
                stacklevel=2,
            )
        return self.positions[mask.to(self.positions.device)]

    def default_regions(self) -> list[Region]:
        """The panels of a strip, or the whole image as one box."""
        if self.panel_boxes is not None:
            return [Panel(k) for k in range(1, len(self.panel_boxes) + 1)]
        width, height = self.image_size
        return [Box(0, 0, width, height)]
