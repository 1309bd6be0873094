"""LLaVA-OneVision (`LlavaOnevisionForConditionalGeneration`): LLaVA-NeXT's anyres layout
(base image, tiles, unpadding, a newline token after every row) plus one more step: when
the unpadded tile grid holds more than about `max` base grids ("anyres_max_9"), the model
shrinks it by bilinear interpolation; the smaller grid still spans the same pixels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .llava_next import LlavaNextAdapter


class LlavaOnevisionAdapter(LlavaNextAdapter):
    family = "llava-onevision"
    model_classes = ("LlavaOnevisionForConditionalGeneration", "LlavaOnevisionModel")

    def pooled(self, model: nn.Module, rows: int, cols: int) -> tuple[int, int]:
        g = self.feature_side(model)
        max_num_patches = int(model.config.vision_aspect_ratio.strip("anyres_max_"))
        ratio = math.sqrt(rows * cols / (max_num_patches * g**2))
        if ratio > 1.1:  # as the model's pack_image_features
            return int(rows // ratio), int(cols // ratio)
        return rows, cols
