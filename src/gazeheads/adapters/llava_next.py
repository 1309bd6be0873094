"""LLaVA-NeXT (`LlavaNextForConditionalGeneration`): "anyres" = a base image plus tiles.

The processor stretches the image to the base size (one g x g grid over the whole image),
and separately resizes it, keeping its aspect ratio, into the best of the grid pinpoints,
pads it there (centred) and cuts it into tiles. The model joins the tiles' features into one
grid, removes the rows or columns that show only padding (unpadding), and ends each row
with a newline token. Newline tokens carry no pixels and belong to no region.

The vision tower cuts each base image or tile into whole `patch`-px patches: an image of
`image_size` px gives g = image_size // patch patches a side, which cover its first g * patch
px; when image_size is not a multiple of patch (SigLIP at 384 px with 14-px patches: 27
patches, 378 px) the last pixels of every base image and tile are never read. So feature column
c of the joined tile grid covers canvas pixels [t * tile + (c mod g) * patch, + patch) of tile
t = c // g, with a gap at the end of every tile, which one uniform grid cannot express: the
tiles are then one view each (:func:`tile_views`), and `ImageGeometry.unseen` reports the gaps
that no other view covers. Where the patches fill the images exactly (CLIP at 336 px with 14-px
patches) the joined tile grid is one uniform view, as exact.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import BatchFeature

from ..errors import ModelError
from ..regions import View
from .layout import (Canvas, check_count, covered_extent, drop_row_ends, grid_view, resized_shape,
                     size_field, tile_views)
from .native import NativeAdapter


class LlavaNextAdapter(NativeAdapter):
    family = "llava-next"
    model_classes = ("LlavaNextForConditionalGeneration", "LlavaNextModel")

    # steps of the processor ---------------------------------------------------------------

    def base_canvas(self, image_size: tuple[int, int]) -> Canvas:
        """The base image: stretched to the processor's size, then its per-image resize and crop."""
        size = self.image_setting("size")
        height = size_field(size, "height") or size_field(size, "shortest_edge")
        width = size_field(size, "width") or size_field(size, "shortest_edge")
        return self._finish(Canvas.of(image_size).resize(width, height))

    def _finish(self, canvas: Canvas) -> Canvas:
        if self.image_setting("do_resize", True):
            height, width = resized_shape(self.image_setting("size"), canvas.height, canvas.width)
            canvas = canvas.resize(width, height)
        crop = self.image_setting("crop_size")
        if self.image_setting("do_center_crop", False) and crop is not None and size_field(crop, "height"):
            canvas = canvas.center_crop(size_field(crop, "height"), size_field(crop, "width"))
        return canvas

    def tile_canvas(self, image_size: tuple[int, int]) -> tuple[Canvas, int]:
        """The padded canvas the tiles are cut from, and the tile side in its pixels."""
        from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
        from transformers.image_utils import ChannelDimension

        width, height = image_size
        pinpoints = self.image_setting("image_grid_pinpoints")
        best_h, best_w = select_best_resolution((height, width), pinpoints)
        shape_only = np.broadcast_to(np.zeros((1, 1, 1), dtype=np.uint8), (3, height, width))
        new_h, new_w = get_patch_output_size(shape_only, (best_h, best_w), ChannelDimension.FIRST)
        pad_x, pad_y = (best_w - new_w) // 2, (best_h - new_h) // 2
        canvas = Canvas.of(image_size).resize(new_w, new_h).pad(pad_x, pad_y, best_w, best_h)
        crop = self.image_setting("crop_size")
        size = self.image_setting("size")
        tile = size_field(crop, "height") or size_field(size, "height") or size_field(size, "shortest_edge")
        return canvas, int(tile)

    # steps of the model -------------------------------------------------------------------

    def feature_side(self, model: nn.Module) -> int:
        vision = model.config.vision_config
        return vision.image_size // vision.patch_size

    def patch_side(self, model: nn.Module) -> int:
        """Pixels a side of one patch: each g x g feature grid covers g * patch px of its image."""
        return int(model.config.vision_config.patch_size)

    def unpadded(self, model: nn.Module, grid_rows: int, grid_cols: int, image_size) -> tuple[int, int, int, int]:
        """(row0, row1, col0, col1): the part of the tiles' feature grid the model keeps."""
        from transformers.models.llava_next.modeling_llava_next import unpad_image

        index = torch.arange(grid_rows * grid_cols).reshape(1, grid_rows, grid_cols)
        kept = unpad_image(index, [image_size[1], image_size[0]])
        first, last = int(kept[0, 0, 0]), int(kept[0, -1, -1])
        return first // grid_cols, last // grid_cols + 1, first % grid_cols, last % grid_cols + 1

    def pooled(self, model: nn.Module, rows: int, cols: int) -> tuple[int, int]:
        """The grid after any downsampling of the unpadded features (none in LLaVA-NeXT)."""
        return rows, cols

    def views(self, model: nn.Module, inputs: BatchFeature, row: int, positions: torch.Tensor,
              image_size: tuple[int, int]) -> list[View]:
        if self.processor is None:
            raise ModelError(f"The {self.family} adapter needs the processor to know how images are tiled.",
                             "Build GazeModel(model, processor).")
        g = self.feature_side(model)
        base = self.base_canvas(image_size)
        canvas, tile = self.tile_canvas(image_size)
        vision_size = model.config.vision_config.image_size
        if (base.width, base.height) != (vision_size, vision_size) or tile != vision_size:
            raise ModelError(
                f"The processor makes {base.width}x{base.height} base images and {tile}-px tiles, but the vision "
                f"tower reads {vision_size}-px images.", "Use the processor that belongs to the model.")
        grid_rows, grid_cols = canvas.height // tile * g, canvas.width // tile * g
        r0, r1, c0, c1 = self.unpadded(model, grid_rows, grid_cols, image_size)
        rows, cols = self.pooled(model, r1 - r0, c1 - c0)
        check_count(positions, g * g + rows * (cols + 1), row,
                    f"a {g}x{g} base grid and a {rows}x{cols} tile grid with newlines")
        patch = self.patch_side(model)
        seen = g * patch  # px of each base image and tile that its patches read, from its top left corner
        base_view = grid_view("base", positions[: g * g], g, g, base.box(0, 0, seen, seen))
        grid = drop_row_ends(positions[g * g:], rows, cols)
        kept = (r0, r1, c0, c1)
        if seen == tile or (rows, cols) != (r1 - r0, c1 - c0):
            # One uniform grid over the pixels the kept features cover: exact when the tiles' patches meet
            # without gaps; after pooling (LLaVA-OneVision's anyres_max) an approximation, see there.
            box = canvas.box(*covered_extent(tile, g, patch, kept))
            return [base_view, grid_view("tiles", grid, rows, cols, box)]
        return [base_view, *tile_views(grid, canvas, tile, g, patch, kept)]
