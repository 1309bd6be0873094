"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: dynamic resolution, merged patch grid, row-major tokens."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from transformers import BatchFeature

from ..regions import ImageGeometry
from .base import Adapter, image_token_positions
from .sharing import patched


class QwenVLAdapter(Adapter):
    """`image_grid_thw = (t, h, w)` patches become `(h/m) x (w/m)` tokens after the spatial merge m."""

    family = "qwen-vl"
    model_classes = (
        "Qwen3VLForConditionalGeneration",
        "Qwen3VLModel",
        "Qwen2_5_VLForConditionalGeneration",
        "Qwen2_5_VLModel",
        "Qwen2VLForConditionalGeneration",
        "Qwen2VLModel",
    )

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        return [layer.self_attn for layer in self.base_model(model).language_model.layers]

    def merge_size(self, model: nn.Module) -> int:
        return model.config.vision_config.spatial_merge_size

    def image_geometries(self, model, inputs: BatchFeature, image_sizes, panel_boxes) -> list[ImageGeometry]:
        merge = self.merge_size(model)
        grids = inputs["image_grid_thw"].tolist()
        if len(grids) != inputs["input_ids"].shape[0]:
            raise ValueError(f"{len(grids)} images for {inputs['input_ids'].shape[0]} prompts; use one image per prompt.")
        geometries = []
        for row, (t, h, w) in enumerate(grids):
            rows, cols = h // merge, w // merge
            positions = image_token_positions(inputs["input_ids"][row], model.config.image_token_id, t * rows * cols, row)
            geometries.append(
                ImageGeometry(positions[: rows * cols], rows, cols, tuple(image_sizes[row]), panel_boxes[row],
                              extra={"grid_thw": (t, h, w), "merge": merge})
            )
        return geometries

    def position_ids(self, model, inputs: BatchFeature) -> torch.Tensor:
        kwargs = {k: inputs[k] for k in ("image_grid_thw", "attention_mask", "mm_token_type_ids") if k in inputs}
        position_ids, _ = self.base_model(model).get_rope_index(inputs["input_ids"], **kwargs)
        return position_ids

    @contextmanager
    def shared_images(self, model: nn.Module, groups: list[int] | None) -> Iterator[None]:
        """Run the vision tower on each distinct image once and give every row its features.

        Qwen-VL packs all images' patches into one `pixel_values` and encodes each image
        separately (attention within an image only), so a row's features do not depend on the
        other images: computing them once per distinct image and repeating them is exact.
        """
        inner = self.base_model(model)
        if not groups or len(set(groups)) == len(groups) or not hasattr(inner, "get_image_features"):
            yield
            return
        original = inner.get_image_features
        distinct = sorted(set(groups))
        index = {row: i for i, row in enumerate(distinct)}

        def per_distinct_image(pixel_values, image_grid_thw=None, *args, **kwargs):
            if image_grid_thw is None or image_grid_thw.shape[0] != len(groups):
                return original(pixel_values, image_grid_thw, *args, **kwargs)
            chunks = torch.split(pixel_values, image_grid_thw.prod(-1).tolist())
            out = original(torch.cat([chunks[row] for row in distinct]), image_grid_thw[distinct], *args, **kwargs)
            if not isinstance(getattr(out, "pooler_output", None), (tuple, list)):  # an output layout we do not know
                return original(pixel_values, image_grid_thw, *args, **kwargs)
            out.pooler_output = tuple(out.pooler_output[index[g]] for g in groups)
            if getattr(out, "deepstack_features", None) is not None:
                out.deepstack_features = [tuple(level[index[g]] for g in groups) for level in out.deepstack_features]
            return out

        with patched(inner, "get_image_features", per_distinct_image):
            yield
