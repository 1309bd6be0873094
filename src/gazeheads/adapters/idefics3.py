"""Idefics3 and SmolVLM (`Idefics3ForConditionalGeneration`, `SmolVLMForConditionalGeneration`):
tiles plus a global image.

The processor resizes the image (longest edge to `size`), stretches it to whole multiples of
the tile size and cuts it into rows x cols tiles; the whole image stretched to one tile is
the global image. The connector's pixel shuffle merges s x s patches into one token, row-major.
In the prompt each tile's tokens follow `<fake_token_around_image><row_R_col_C>`, rows end
with a newline, and the global image's tokens follow `<global-img>`: these marker tokens
carry no pixels. Without splitting there is only the global image.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BatchFeature

from ..errors import ModelError
from ..regions import View
from .layout import check_count, grid_view, split, tile_boxes
from .native import NativeAdapter


class Idefics3Adapter(NativeAdapter):
    family = "idefics3"
    model_classes = ("Idefics3ForConditionalGeneration", "Idefics3Model",
                     "SmolVLMForConditionalGeneration", "SmolVLMModel")

    def process(self, processor, texts: list[str], images: list) -> BatchFeature:
        # SmolVLMProcessor reads a flat list as several images of one prompt: nest them per prompt
        return processor(text=texts, images=[[image] for image in images], return_tensors="pt", padding=True)

    def tokens_per_side(self, model: nn.Module) -> int:
        vision = model.config.vision_config
        return vision.image_size // vision.patch_size // model.config.scale_factor

    def tiling(self, input_ids: torch.Tensor, image_size: tuple[int, int]) -> tuple[int, int]:
        """(rows, cols) of tiles, read from the prompt's `<row_R_col_C>` markers when the tokenizer has them,
        else from the image processor's rule; (0, 0) when the image is not split."""
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is not None:
            markers = {tokenizer.convert_tokens_to_ids(f"<row_{r}_col_{c}>"): (r, c)
                       for r in range(1, 7) for c in range(1, 7)}
            unknown = tokenizer.unk_token_id
            if not any(token in (None, unknown) for token in markers):
                found = [markers[t] for t in input_ids.tolist() if t in markers]
                if found:
                    return max(r for r, _ in found), max(c for _, c in found)
        if self.processor is None:
            raise ModelError("The Idefics3 adapter needs the processor to know how images are split.",
                             "Build GazeModel(model, processor).")
        if not self.image_setting("do_image_splitting", True):
            return 0, 0
        kwargs = {name: self.image_setting(name) for name in ("do_image_splitting", "max_image_size", "size")}
        width, height = image_size
        _, rows, cols = self.processor.image_processor.get_number_of_image_patches(height, width, kwargs)
        return rows, cols

    def views(self, model: nn.Module, inputs: BatchFeature, row: int, positions: torch.Tensor,
              image_size: tuple[int, int]) -> list[View]:
        g = self.tokens_per_side(model)
        per_view = g * g
        rows, cols = self.tiling(inputs["input_ids"][row], image_size)
        boxes = tile_boxes(image_size, rows, cols) if rows and cols else []
        names = [f"tile r{r + 1}c{c + 1}" for r in range(rows) for c in range(cols)]
        boxes.append(tile_boxes(image_size, 1, 1)[0])
        names.append("global")
        layout = f"{rows}x{cols} tiles and a global image" if rows else "one global image"
        check_count(positions, per_view * len(boxes), row, f"{layout} of {per_view} tokens")
        chunks = split(positions, [per_view] * len(boxes))
        return [grid_view(name, chunk, g, g, box) for name, chunk, box in zip(names, chunks, boxes)]
