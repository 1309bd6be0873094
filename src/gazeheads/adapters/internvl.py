"""InternVL, transformers-native (`InternVLForConditionalGeneration`): dynamic 448-px tiles
plus a thumbnail.

The processor picks the tile arrangement (columns x rows) whose aspect ratio is closest to
the image's, stretches the image onto it and cuts the tiles; with more than one tile it adds
the whole image stretched to one tile (the thumbnail). Each tile's patches go through pixel
unshuffle (2 x 2 patches per token): 256 tokens a tile at 448 px, row-major. The prompt holds
`<img>`, the tokens of every tile in row-major tile order, the thumbnail's, then `</img>`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BatchFeature

from ..errors import ModelError
from ..regions import View
from .layout import check_count, grid_view, size_field, split, tile_boxes
from .native import NativeAdapter


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class InternVLAdapter(NativeAdapter):
    family = "internvl"
    model_classes = ("InternVLForConditionalGeneration", "InternVLModel")

    def tokens_per_side(self, model: nn.Module) -> tuple[int, int]:
        vision = model.config.vision_config
        (height, width), (ph, pw) = _pair(vision.image_size), _pair(vision.patch_size)
        ratio = model.config.downsample_ratio
        return int(height // ph * ratio), int(width // pw * ratio)

    def tiling(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(rows, cols) of tiles the processor cuts this image into; (1, 1) without tiling."""
        if not self.image_setting("crop_to_patches", False):
            return 1, 1
        from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas

        size = self.image_setting("size")
        width, height = image_size
        tile = (size_field(size, "height"), size_field(size, "width"))
        cols, rows = get_optimal_tiled_canvas((height, width), tile, self.image_setting("min_patches", 1),
                                              self.image_setting("max_patches", 12))
        return rows, cols

    def views(self, model: nn.Module, inputs: BatchFeature, row: int, positions: torch.Tensor,
              image_size: tuple[int, int]) -> list[View]:
        if self.processor is None:
            raise ModelError("The InternVL adapter needs the processor to know how images are tiled.",
                             "Build GazeModel(model, processor).")
        g_rows, g_cols = self.tokens_per_side(model)
        per_view = g_rows * g_cols
        rows, cols = self.tiling(image_size)
        boxes = tile_boxes(image_size, rows, cols)
        names = [f"tile r{r + 1}c{c + 1}" for r in range(rows) for c in range(cols)]
        if len(boxes) > 1:  # the thumbnail: the whole image as one more tile
            boxes.append(tile_boxes(image_size, 1, 1)[0])
            names.append("thumbnail")
        check_count(positions, per_view * len(boxes), row,
                    f"{rows}x{cols} tiles" + (" and a thumbnail" if len(boxes) > 1 else "") + f" of {per_view} tokens")
        chunks = split(positions, [per_view] * len(boxes))
        return [grid_view(name, chunk, g_rows, g_cols, box) for name, chunk, box in zip(names, chunks, boxes)]
