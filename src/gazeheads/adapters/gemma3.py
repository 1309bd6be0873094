"""Gemma 3 (`Gemma3ForConditionalGeneration`): the image stretched to 896 px, its 64 x 64
SigLIP patches average-pooled to 16 x 16 = 256 tokens, row-major.

With pan-and-scan on (processor option `do_pan_and_scan`), an image whose aspect ratio is
far from square is also cut into 2-4 crops side by side (or stacked); each crop is stretched
to 896 px and read as 256 more tokens after the whole image's. Gemma 3 marks image tokens
with `token_type_ids`, and its prompts nest images per prompt.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn
from transformers import BatchFeature

from ..errors import ModelError
from ..regions import PixelBox, View
from .layout import check_count, grid_view, split
from .native import NativeAdapter


class Gemma3Adapter(NativeAdapter):
    family = "gemma3"
    model_classes = ("Gemma3ForConditionalGeneration", "Gemma3Model")

    def process(self, processor, texts: list[str], images: list) -> BatchFeature:
        return processor(text=texts, images=[[image] for image in images], return_tensors="pt", padding=True)

    def crops(self, image_size: tuple[int, int]) -> list[PixelBox]:
        """The pan-and-scan crops of the image, as Gemma3ImageProcessor cuts them (none when off or not needed)."""
        if not self.image_setting("do_pan_and_scan", False):
            return []
        min_crop = self.image_setting("pan_and_scan_min_crop_size", 256)
        max_crops = self.image_setting("pan_and_scan_max_num_crops", 4)
        min_ratio = self.image_setting("pan_and_scan_min_ratio_to_activate", 1.2)
        width, height = image_size
        if width >= height:
            if width / height < min_ratio:
                return []
            n_w = min(int(math.floor(width / min_crop)), int(math.floor(width / height + 0.5)))
            n_w, n_h = min(max_crops, max(2, n_w)), 1
        else:
            if height / width < min_ratio:
                return []
            n_h = min(int(math.floor(height / min_crop)), int(math.floor(height / width + 0.5)))
            n_w, n_h = 1, min(max_crops, max(2, n_h))
        crop_w, crop_h = int(math.ceil(width / n_w)), int(math.ceil(height / n_h))
        if min(crop_w, crop_h) < min_crop:
            return []
        return [(x, y, min(x + crop_w, width), min(y + crop_h, height))
                for y, x in itertools.product(range(0, crop_h * n_h, crop_h), range(0, crop_w * n_w, crop_w))]

    def views(self, model: nn.Module, inputs: BatchFeature, row: int, positions: torch.Tensor,
              image_size: tuple[int, int]) -> list[View]:
        side = int(math.isqrt(model.config.mm_tokens_per_image))
        per_view = side * side
        width, height = image_size
        boxes = [(0, 0, width, height)] + self.crops(image_size)
        if positions.numel() != per_view * len(boxes) and self.processor is None:
            raise ModelError("The Gemma 3 adapter needs the processor to know the pan-and-scan crops.",
                             "Build GazeModel(model, processor).")
        check_count(positions, per_view * len(boxes), row,
                    f"the whole image and {len(boxes) - 1} pan-and-scan crops of {per_view} tokens")
        names = ["image"] + [f"crop {k}" for k in range(1, len(boxes))]
        chunks = split(positions, [per_view] * len(boxes))
        return [grid_view(name, chunk, side, side, box) for name, chunk, box in zip(names, chunks, boxes)]
