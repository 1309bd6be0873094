"""What the cursor points at, as image tokens: spotlight circles, dragged boxes, panels.

Everything is in pixels of the image as shown (the stitched strip or the uploaded image).
Boxes and panels own the cells `ImageGeometry.cell_mask` gives them; a circle owns the cells
whose centre lies inside it and on the image (never the processor's padding), plus, like a
box, a cell of each coarse view (thumbnail, base view) that shows it. A circle or box that
contains no centre owns the one on-image cell nearest its centre, so a small spotlight still
steers somewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import RegionError
from ..regions import Box, ImageGeometry, Panel, Region

PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
           "#f032e6", "#9a6324", "#469990", "#808000", "#000075", "#a9a9a9")


@dataclass(frozen=True)
class Circle:
    """A circular spotlight: centre (x, y) and radius r in image pixels."""

    x: float
    y: float
    r: float

    def __post_init__(self) -> None:
        if not self.r > 0:
            raise RegionError(f"{self} has no area.", "Give a radius above 0.")


def _centres(geometry: ImageGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = geometry.cell_centres()
    if xs.numel() != geometry.positions.numel():  # a geometry whose centres cover only its first grid
        raise RegionError("This image's token layout has no per-token cell centres.", "Target a panel instead.")
    return xs, ys


def _check_inside(geometry: ImageGeometry, x: float, y: float, what: str) -> None:
    width, height = geometry.image_size
    if not (0 <= x <= width and 0 <= y <= height):
        raise RegionError(f"The {what} centre ({x:g}, {y:g}) is outside the {width}x{height} px image.",
                          "Point inside the image.")


def _or_nearest(geometry: ImageGeometry, mask: torch.Tensor, x: float, y: float) -> torch.Tensor:
    if bool(mask.any()):
        return mask
    xs, ys = _centres(geometry)
    distance = ((xs - x) ** 2 + (ys - y) ** 2).masked_fill(~geometry.in_image(), float("inf"))
    mask = torch.zeros_like(mask)
    mask[int(distance.argmin())] = True
    return mask


def cells_of(geometry: ImageGeometry, target: Circle | Box) -> torch.Tensor:
    """Boolean mask over the image tokens (`geometry.positions` order) that `target` owns."""
    xs, ys = _centres(geometry)
    if isinstance(target, Circle):
        _check_inside(geometry, target.x, target.y, "spotlight")
        inside = ((xs - target.x) ** 2 + (ys - target.y) ** 2 <= target.r**2) & geometry.in_image()
        rect = (target.x - target.r, target.y - target.r, target.x + target.r, target.y + target.r)
        return _or_nearest(geometry, geometry.fill_views(inside, rect), target.x, target.y)
    if isinstance(target, Box):
        cx, cy = (target.x0 + target.x1) / 2, (target.y0 + target.y1) / 2
        width, height = geometry.image_size
        if target.x1 <= 0 or target.y1 <= 0 or target.x0 >= width or target.y0 >= height:
            raise RegionError(f"{target} lies outside the {width}x{height} px image.", "Drag the box over the image.")
        return _or_nearest(geometry, geometry.cell_mask(target), min(max(cx, 0), width), min(max(cy, 0), height))
    raise RegionError(f"Not a spotlight or box: {target!r}", "Use Circle(x, y, r) or Box(x0, y0, x1, y1).")


def steering_target(geometry: ImageGeometry, target: Circle | Box | Panel) -> torch.Tensor | Panel:
    """What `Steering` takes: a cell mask for circles and boxes, the panel itself for panels."""
    if isinstance(target, Panel):
        geometry.positions_of(target)  # a clear RegionError now rather than in the generation thread
        return target
    return cells_of(geometry, target)


def tint_regions(geometry: ImageGeometry) -> list[tuple[str, Region]]:
    """Named regions that colour the tokens: a strip's panels, else a 3 x 3 grid of the image."""
    if geometry.panel_boxes is not None:
        return [(f"panel {k}", Panel(k)) for k in range(1, len(geometry.panel_boxes) + 1)]
    width, height = geometry.image_size
    names = (("top left", "top", "top right"), ("left", "centre", "right"), ("bottom left", "bottom", "bottom right"))
    regions = []
    for i in range(3):
        for j in range(3):
            box = Box(width * j / 3, height * i / 3, width * (j + 1) / 3, height * (i + 1) / 3)
            regions.append((names[i][j], box))
    return regions


def region_membership(geometry: ImageGeometry, regions: list[tuple[str, Region]]) -> tuple[list, torch.Tensor]:
    """The regions that own at least one token, and their (regions, image tokens) 0/1 membership
    (`ImageGeometry.cell_mask`, the rule steering and tracking use)."""
    _centres(geometry)  # a clear error for layouts without per-token centres
    kept, rows = [], []
    for name, region in regions:
        mask = geometry.cell_mask(region)
        if bool(mask.any()):
            kept.append((name, region))
            rows.append(mask)
    membership = torch.stack(rows).float() if rows else torch.zeros(0, geometry.positions.numel())
    return kept, membership


def cell_rects(geometry: ImageGeometry) -> list[list[float]]:
    """Pixel rectangle [x0, y0, x1, y1] of every image token, in `positions` order (for heat maps)."""
    if hasattr(geometry, "cell_boxes"):
        boxes = geometry.cell_boxes()
    else:
        width, height = geometry.image_size
        w, h = width / geometry.cols, height / geometry.rows
        xs, ys = geometry.cell_centres()
        boxes = torch.stack([xs - w / 2, ys - h / 2, xs + w / 2, ys + h / 2], dim=1)
    return [[round(float(v), 2) for v in row] for row in boxes]
