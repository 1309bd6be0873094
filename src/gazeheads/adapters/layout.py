"""Pixel bookkeeping the adapters share: follow an image through a processor's resize, pad,
crop and tiling steps (:class:`Canvas`), and cut a prompt's run of image tokens into views.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ModelError, RegionError
from ..regions import PixelBox, View


@dataclass(frozen=True)
class Canvas:
    """A processed image of `width` x `height` px whose pixel (u, v) shows the point
    (u * sx + ox, v * sy + oy) of the image as given. Steps return new canvases."""

    width: int
    height: int
    sx: float = 1.0
    ox: float = 0.0
    sy: float = 1.0
    oy: float = 0.0

    @classmethod
    def of(cls, image_size: tuple[int, int]) -> "Canvas":
        """The image as given, (width, height)."""
        width, height = image_size
        return cls(int(width), int(height))

    def resize(self, width: int, height: int) -> "Canvas":
        """Stretch the whole canvas to `width` x `height` (aspect ratio as the processor chose)."""
        return Canvas(int(width), int(height), self.sx * self.width / width, self.ox,
                      self.sy * self.height / height, self.oy)

    def pad(self, left: int, top: int, width: int, height: int) -> "Canvas":
        """Place the canvas at (left, top) of a `width` x `height` one (the rest is padding)."""
        return Canvas(int(width), int(height), self.sx, self.ox - left * self.sx, self.sy, self.oy - top * self.sy)

    def crop(self, left: int, top: int, width: int, height: int) -> "Canvas":
        """Keep the `width` x `height` window at (left, top)."""
        return Canvas(int(width), int(height), self.sx, self.ox + left * self.sx, self.sy, self.oy + top * self.sy)

    def center_crop(self, height: int, width: int) -> "Canvas":
        """Center crop as transformers' image processors do it (padding first when the crop is larger)."""
        canvas = self
        if width > canvas.width or height > canvas.height:
            left = (width - canvas.width) // 2 if width > canvas.width else 0
            top = (height - canvas.height) // 2 if height > canvas.height else 0
            canvas = canvas.pad(left, top, max(width, canvas.width), max(height, canvas.height))
        top = int((canvas.height - height) / 2.0)
        left = int((canvas.width - width) / 2.0)
        return canvas.crop(left, top, width, height)

    def box(self, x0: float = 0.0, y0: float = 0.0, x1: float | None = None, y1: float | None = None) -> PixelBox:
        """The rectangle (x0, y0, x1, y1) of this canvas (default: all of it) in pixels of the image as given."""
        x1 = self.width if x1 is None else x1
        y1 = self.height if y1 is None else y1
        return (x0 * self.sx + self.ox, y0 * self.sy + self.oy, x1 * self.sx + self.ox, y1 * self.sy + self.oy)


def size_field(size, key: str):
    """`size[key]` for a dict or a transformers SizeDict; None when absent."""
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def resized_shape(size, height: int, width: int) -> tuple[int, int]:
    """(height, width) an image processor resizes a `height` x `width` image to, for its `size` option."""
    from transformers.image_transforms import get_resize_output_image_size, get_size_with_aspect_ratio
    from transformers.image_utils import ChannelDimension

    shortest, longest = size_field(size, "shortest_edge"), size_field(size, "longest_edge")
    if shortest and longest:
        return tuple(get_size_with_aspect_ratio((height, width), shortest, longest))
    if shortest:
        shape_only = np.broadcast_to(np.zeros((1, 1, 1), dtype=np.uint8), (3, height, width))
        return tuple(get_resize_output_image_size(shape_only, size=shortest, default_to_square=False,
                                                  input_data_format=ChannelDimension.FIRST))
    if size_field(size, "height") and size_field(size, "width"):
        return size_field(size, "height"), size_field(size, "width")
    raise ModelError(f"Unsupported image processor size {size!r}.", "Use height/width or shortest_edge sizes.")


def grid_view(name: str, positions: torch.Tensor, rows: int, cols: int, box: PixelBox) -> View:
    return View(name, positions, rows, cols, tuple(float(v) for v in box))


def tile_boxes(image_size: tuple[int, int], rows: int, cols: int) -> list[PixelBox]:
    """Row-major boxes of a `rows` x `cols` tiling of the whole image (tiles of a stretched image)."""
    width, height = image_size
    return [(c * width / cols, r * height / rows, (c + 1) * width / cols, (r + 1) * height / rows)
            for r in range(rows) for c in range(cols)]


def token_positions(input_ids: torch.Tensor, token_id: int, row: int) -> torch.Tensor:
    """Positions of `token_id` in one prompt; a RegionError when there are none."""
    positions = (input_ids == token_id).nonzero().flatten()
    if positions.numel() == 0:
        raise RegionError(
            f"Prompt {row} has no image tokens.",
            "Put the image in the prompt (a chat message part {'type': 'image'}), e.g. via GazeModel.encode.",
        )
    return positions


def check_count(positions: torch.Tensor, expected: int, row: int, layout: str) -> None:
    if positions.numel() != expected:
        raise RegionError(
            f"Prompt {row} has {positions.numel()} image tokens, but its image read as {layout} gives {expected}.",
            "Use one image per prompt, encoded with the model's own processor settings (GazeModel.encode).",
        )


def split(positions: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """Consecutive chunks of `positions` of the given sizes (which must add up to its length)."""
    return list(torch.split(positions, sizes))


def drop_row_ends(positions: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Positions of a rows x (cols + 1) run whose last token in every row is a newline, without the newlines."""
    return positions.reshape(rows, cols + 1)[:, :cols].reshape(-1)


# anyres tile grids (LLaVA-NeXT, LLaVA-OneVision) ---------------------------------------------------------------

def feature_edge(index: int, tile: int, g: int, patch: int) -> int:
    """Canvas pixel where feature row or column `index` of a joined tile grid starts: tiles of `tile` px side by
    side, each read as `g` patches of `patch` px from its own top left corner (g * patch <= tile)."""
    return index // g * tile + index % g * patch


def covered_extent(tile: int, g: int, patch: int, kept: tuple[int, int, int, int]) -> PixelBox:
    """Canvas rectangle (x0, y0, x1, y1) from the first kept feature's pixels to the last one's, for the kept
    rows [r0, r1) and columns [c0, c1) of a joined tile grid (gaps between tiles included)."""
    r0, r1, c0, c1 = kept
    return (feature_edge(c0, tile, g, patch), feature_edge(r0, tile, g, patch),
            feature_edge(c1 - 1, tile, g, patch) + patch, feature_edge(r1 - 1, tile, g, patch) + patch)


def tile_views(grid: torch.Tensor, canvas: Canvas, tile: int, g: int, patch: int,
               kept: tuple[int, int, int, int]) -> list[View]:
    """One view per tile of a joined tile grid, row-major by tile.

    `grid` holds the prompt positions of the kept rows [r0, r1) and columns [c0, c1) of the grid, row-major
    (newlines dropped). Each tile's g x g features cover the first g * patch px of its `tile`-px square of
    `canvas`; the kept part may start and end inside a tile, so a view holds that tile's kept features and
    spans exactly their pixels.
    """
    r0, r1, c0, c1 = kept
    cells = grid.reshape(r1 - r0, c1 - c0)
    views = []
    for ti in range(r0 // g, (r1 - 1) // g + 1):
        a, b = max(r0, ti * g), min(r1, (ti + 1) * g)
        for tj in range(c0 // g, (c1 - 1) // g + 1):
            c, d = max(c0, tj * g), min(c1, (tj + 1) * g)
            box = canvas.box(feature_edge(c, tile, g, patch), feature_edge(a, tile, g, patch),
                             feature_edge(d - 1, tile, g, patch) + patch, feature_edge(b - 1, tile, g, patch) + patch)
            positions = cells[a - r0:b - r0, c - c0:d - c0].reshape(-1)
            views.append(grid_view(f"tile r{ti + 1}c{tj + 1}", positions, b - a, d - c, box))
    return views
