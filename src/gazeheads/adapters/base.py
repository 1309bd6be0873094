"""What gazeheads needs to know about one model family."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn
from transformers import BatchFeature, PretrainedConfig

from ..errors import RegionError
from ..regions import ImageGeometry


@dataclass(frozen=True)
class HeadShape:
    """The language backbone's attention shape; rankings are only valid for one shape."""

    n_layers: int
    n_heads: int
    n_kv_heads: int

    @property
    def total(self) -> int:
        return self.n_layers * self.n_heads


class Adapter:
    """Family-specific geometry and structure; everything else in gazeheads is shared.

    Subclasses set `model_classes` (transformers class names) and implement
    `attention_modules` and `image_geometries`. `processor` is the model's processor; the
    geometry of families that resize, crop or tile reads its image settings.
    """

    family: str = "generic"
    model_classes: tuple[str, ...] = ()

    def __init__(self, processor=None) -> None:
        self.processor = processor

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return type(model).__name__ in cls.model_classes

    @contextmanager
    def shared_images(self, model: nn.Module, groups: list[int] | None) -> Iterator[None]:
        """While active, rows that share an image (`groups[row]` = first row with that image)
        may run the vision tower once. The default runs it for every row."""
        yield

    def base_model(self, model: nn.Module) -> nn.Module:
        """The model without its LM head (forwards that need no logits run this)."""
        return model.model if hasattr(model, "lm_head") else model

    def text_config(self, model: nn.Module) -> PretrainedConfig:
        config = model.config
        return getattr(config, "text_config", None) or config

    def head_shape(self, model: nn.Module) -> HeadShape:
        text = self.text_config(model)
        heads = text.num_attention_heads
        return HeadShape(text.num_hidden_layers, heads, getattr(text, "num_key_value_heads", None) or heads)

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        raise NotImplementedError

    def image_geometries(
        self, model: nn.Module, inputs: BatchFeature, image_sizes: list[tuple[int, int]], panel_boxes: list
    ) -> list[ImageGeometry]:
        raise NotImplementedError

    def process(self, processor, texts: list[str], images: list) -> BatchFeature:
        """Run the processor on prompts with one image each (families that nest images per prompt override)."""
        return processor(text=texts, images=images, return_tensors="pt", padding=True)

    def image_setting(self, name: str, default=None):
        """An image option as the processor applies it when called without options.

        The processor's own defaults (the `_defaults` of its kwargs class, then
        `processor.images_kwargs`) win over the image processor's attributes, as in
        transformers' kwargs merging.
        """
        processor = self.processor
        if processor is None:
            return default
        kwargs_class = getattr(processor, "valid_processor_kwargs", None)
        for overrides in (getattr(kwargs_class, "_defaults", {}).get("images_kwargs", {}),
                          getattr(processor, "images_kwargs", None) or {}):
            if name in overrides:
                return overrides[name]
        return getattr(getattr(processor, "image_processor", processor), name, default)

    def position_ids(self, model: nn.Module, inputs: BatchFeature) -> torch.Tensor | None:
        """Explicit position ids for `inputs` (needed to share a prefix); None if plain arange works."""
        return None

    def set_attention(self, model: nn.Module, name: str) -> None:
        """Route the language backbone's attention to `name`; the vision tower keeps its own."""
        model.set_attn_implementation({"text_config": name})

    def attention_implementation(self, model: nn.Module) -> str:
        return self.text_config(model)._attn_implementation


def image_token_positions(input_ids: torch.Tensor, image_token_id: int, expected: int, row: int) -> torch.Tensor:
    """Positions of the image tokens in one prompt, checked against the expected count."""
    positions = (input_ids == image_token_id).nonzero().flatten()
    if positions.numel() == 0:
        raise RegionError(
            f"Prompt {row} has no image tokens.",
            "Put the image in the prompt (a chat message part {'type': 'image'}), e.g. via GazeModel.encode.",
        )
    if positions.numel() != expected:
        raise RegionError(
            f"Prompt {row} has {positions.numel()} image tokens but its image should give {expected}.",
            "Use one image per prompt.",
        )
    return positions
