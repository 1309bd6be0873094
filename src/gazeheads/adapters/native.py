"""What the transformers-native VLM families share: one language model inside `model.model`,
image tokens marked by one token id, and a per-family rule that turns each prompt's image
tokens into views (tiles, global image, thumbnail) over the image.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from transformers import BatchFeature

from ..errors import ModelError
from ..regions import ImageGeometry, View
from .base import Adapter
from .layout import token_positions
from .sharing import distinct_items, patched


class NativeAdapter(Adapter):
    """Base of the adapters for transformers' own `...ForConditionalGeneration` classes.

    Subclasses implement :meth:`views`, the family's pixel-to-token geometry.
    """

    def language_model(self, model: nn.Module) -> nn.Module:
        base = self.base_model(model)
        for name in ("language_model", "text_model"):
            if hasattr(base, name):
                return getattr(base, name)
        raise ModelError(f"{type(model).__name__} has no language model where {self.family} models keep it.",
                         "Use the transformers class the adapter names, or the generic adapter.")

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        return [layer.self_attn for layer in self.language_model(model).layers]

    def vision_tower(self, model: nn.Module) -> nn.Module | None:
        base = self.base_model(model)
        for name in ("vision_tower", "vision_model"):
            if hasattr(base, name):
                return getattr(base, name)
        return None

    @contextmanager
    def shared_images(self, model: nn.Module, groups: list[int] | None) -> Iterator[None]:
        """The vision tower computes each distinct image (or tile) once per call."""
        tower = self.vision_tower(model)
        if tower is None or not groups or len(set(groups)) == len(groups):
            yield
            return
        with patched(tower, "forward", distinct_items(tower.forward)):
            yield

    def image_token_id(self, model: nn.Module) -> int:
        config = model.config
        token = getattr(config, "image_token_id", None)
        if token is None:
            token = getattr(config, "image_token_index", None)
        if token is None:
            raise ModelError(f"{type(model).__name__}'s config names no image token.", "Set config.image_token_id.")
        return int(token)

    def views(self, model: nn.Module, inputs: BatchFeature, row: int, positions: torch.Tensor,
              image_size: tuple[int, int]) -> list[View]:
        """The views of prompt `row`'s image, given the positions of all its image-token ids."""
        raise NotImplementedError

    def image_geometries(self, model, inputs: BatchFeature, image_sizes, panel_boxes) -> list[ImageGeometry]:
        token = self.image_token_id(model)
        geometries = []
        for row in range(inputs["input_ids"].shape[0]):
            positions = token_positions(inputs["input_ids"][row], token, row)
            size = tuple(int(v) for v in image_sizes[row])
            views = self.views(model, inputs, row, positions.cpu(), size)
            geometries.append(ImageGeometry.from_views(views, size, panel_boxes[row], extra={"family": self.family}))
        return geometries
