"""LLaVA-1.5 (`LlavaForConditionalGeneration`): one fixed grid (24 x 24 at 336 px).

The processor may pad the image to a square (`do_pad`), resizes its shortest edge and
center-crops it; the adapter follows the image through those steps, so the token grid
covers exactly the pixels the model sees. Pixels cropped away are reported by the
geometry (`unseen`) and never mapped to tokens.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from transformers import BatchFeature

from ..errors import ModelError
from ..regions import UnseenPixelsWarning, View
from .layout import Canvas, check_count, grid_view, resized_shape, size_field
from .native import NativeAdapter


class LlavaAdapter(NativeAdapter):
    """One `rows` x `cols` grid (crop size / patch size), row-major, over the processed image."""

    family = "llava"
    model_classes = ("LlavaForConditionalGeneration", "LlavaModel")

    def canvas(self, image_size: tuple[int, int]) -> Canvas:
        """The processed image: pad to square (if the processor does), resize, center crop."""
        canvas = Canvas.of(image_size)
        if self.image_setting("do_pad", False):
            side = max(canvas.width, canvas.height)
            canvas = canvas.pad((side - canvas.width) // 2, (side - canvas.height) // 2, side, side)
        if self.image_setting("do_resize", True):
            height, width = resized_shape(self.image_setting("size"), canvas.height, canvas.width)
            canvas = canvas.resize(width, height)
        crop = self.image_setting("crop_size")
        if self.image_setting("do_center_crop", False) and crop is not None:
            canvas = canvas.center_crop(size_field(crop, "height"), size_field(crop, "width"))
        return canvas

    def views(self, model: nn.Module, inputs: BatchFeature, row: int, positions: torch.Tensor,
              image_size: tuple[int, int]) -> list[View]:
        if self.processor is None:
            raise ModelError("The LLaVA adapter needs the processor to know how images are resized and cropped.",
                             "Build GazeModel(model, processor).")
        pixels = inputs["pixel_values"]
        height, width = int(pixels.shape[-2]), int(pixels.shape[-1])
        canvas = self.canvas(image_size)
        if (canvas.height, canvas.width) != (height, width):
            raise ModelError(
                f"The processor's settings give a {canvas.width}x{canvas.height} image but pixel_values are "
                f"{width}x{height}.", "Encode with the processor's own settings (GazeModel.encode).")
        patch = model.config.vision_config.patch_size
        rows, cols = height // patch, width // patch
        extra = positions.numel() - rows * cols  # a kept CLS token ('full' strategy) comes first
        if extra not in (0, 1):
            check_count(positions, rows * cols, row, f"a {rows}x{cols} grid")
        view = grid_view("image", positions[extra:], rows, cols, canvas.box())
        _warn_if_cropped(view, image_size)
        return [view]


def _warn_if_cropped(view: View, image_size: tuple[int, int]) -> None:
    width, height = image_size
    x0, y0, x1, y1 = view.box
    if x0 > 0 or y0 > 0 or x1 < width or y1 < height:
        warnings.warn(
            f"The processor crops this {width}x{height} px image: the model sees only pixels "
            f"({max(x0, 0):g}, {max(y0, 0):g}) to ({min(x1, width):g}, {min(y1, height):g}); regions outside "
            "map to no token. To keep the whole image, pad it to a square as LLaVA-1.5 was trained "
            "(LlavaImageProcessor with do_pad=True).",
            UnseenPixelsWarning,
            stacklevel=4,
        )
