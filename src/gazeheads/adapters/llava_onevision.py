"""LLaVA-OneVision (`LlavaOnevisionForConditionalGeneration`): LLaVA-NeXT's anyres layout
(base image, tiles, unpadding, a newline token after every row) plus one more step: when
the unpadded tile grid holds more than about `max` base grids ("anyres_max_9"), the model
shrinks it by bilinear interpolation.

Without that shrinking the geometry is exact, as in LLaVA-NeXT: SigLIP at 384 px with 14-px
patches reads 27 patches = 378 px of the base image and of every tile, so the tiles are one
view each, and the last 6 px of each are read by no patch (`ImageGeometry.unseen` lists
those that no other view covers). After the shrinking a token blends several
features, which no longer map to pixels one by one: the smaller grid is then an approximation,
one uniform grid from the first kept feature's pixels to the last one's (the gaps between
tiles spread over its cells).
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
        """The grid after anyres_max shrinking; a shrunk grid is mapped to pixels approximately (module doc)."""
        g = self.feature_side(model)
        max_num_patches = int(model.config.vision_aspect_ratio.strip("anyres_max_"))
        ratio = math.sqrt(rows * cols / (max_num_patches * g**2))
        if ratio > 1.1:  # as the model's pack_image_features
            return int(rows // ratio), int(cols // ratio)
        return rows, cols
