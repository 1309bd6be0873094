"""The generic adapter: for models outside transformers' own VLM classes (remote-code
families such as Ovis or Bunny), described by the user instead of read from the model.

You name the image token and the grid rule, i.e. how the prompt's image tokens cover the
image; everything else in gazeheads then works unchanged:

    from gazeheads.adapters import GenericAdapter, Grid

    # 24 x 24 tokens, row-major over the whole (stretched) image:
    adapter = GenericAdapter(image_token_id=32000, grids=[Grid(24, 24)])
    # a 2 x 2 tiling (each tile 16 x 16 tokens) followed by a 16 x 16 thumbnail:
    tiles = [Grid(16, 16, box=(c / 2, r / 2, (c + 1) / 2, (r + 1) / 2)) for r in range(2) for c in range(2)]
    adapter = GenericAdapter(image_token_id=151667, grids=tiles + [Grid(16, 16, name="thumbnail")])
    # or a rule computed per image: grids=lambda image_size, n_tokens: [...]
    gm = gazeheads.GazeModel(model, processor, adapter=adapter)

Requirements: the language model's attention must go through transformers' attention
interface (`ALL_ATTENTION_FUNCTIONS`), as every transformers decoder does; give
`language_model` (the attribute path of that decoder) when it is not found on its own.
The grid rule is your claim: check it with a vision tower that mixes no patches (see the
tests of gazeheads' own adapters) before trusting a steering result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch
from torch import nn
from transformers import BatchFeature, PretrainedConfig

from ..errors import ModelError, RegionError
from ..regions import ImageGeometry, View
from .base import Adapter
from .layout import grid_view, token_positions

_VISION_WORDS = ("vision", "visual", "vit", "image", "clip", "siglip")


@dataclass(frozen=True)
class Grid:
    """One view of an image: `rows` x `cols` tokens, row-major, over part of the image.

    `box` is (x0, y0, x1, y1) as fractions of the image's width and height (default: all of
    it). `newline`: each row ends with one more image-token id that shows no pixels.
    `skip`: image-token ids before the grid that show no pixels (e.g. a CLS token).
    """

    rows: int
    cols: int
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    newline: bool = False
    skip: int = 0
    name: str = ""

    @property
    def n_tokens(self) -> int:
        return self.skip + self.rows * (self.cols + int(self.newline))


GridRule = Union[Sequence[Grid], Callable[[tuple[int, int], int], Sequence[Grid]]]


def _resolve(model: nn.Module, path: str) -> nn.Module:
    target = model
    for part in path.split("."):
        if not hasattr(target, part):
            raise ModelError(f"{type(model).__name__} has no attribute path {path!r} (stopped at {part!r}).",
                             "Give the dotted path of the language model, e.g. 'model.language_model' or 'llm'.")
        target = getattr(target, part)
    return target


class GenericAdapter(Adapter):
    """An adapter described by its arguments (see the module doc).

    image_token_id: the token id that marks image tokens in the prompt.
    grids: the views in prompt order, or a function (image (width, height), number of image
        tokens in the prompt) -> views.
    language_model: dotted path of the decoder (default: found by its layers).
    attention: attribute of a decoder layer holding its attention module (default self_attn).
    process: optional function (processor, texts, images) -> inputs, when the processor
        needs another call than `processor(text=..., images=..., return_tensors="pt", padding=True)`.
    position_ids: optional function (model, inputs) -> explicit position ids (e.g. multimodal RoPE).
    """

    family = "generic"

    def __init__(
        self,
        image_token_id: int,
        grids: GridRule,
        *,
        language_model: str | None = None,
        attention: str = "self_attn",
        process: Callable | None = None,
        position_ids: Callable | None = None,
        processor=None,
    ) -> None:
        super().__init__(processor)
        self.token_id = int(image_token_id)
        self.grids = grids
        self.language_model_path = language_model
        self.attention = attention
        self._process = process
        self._position_ids = position_ids

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        return False  # never picked automatically: pass it to GazeModel(..., adapter=...)

    # structure ------------------------------------------------------------------------------

    def language_model(self, model: nn.Module) -> nn.Module:
        """The decoder: the module at `language_model`, else the one holding the decoder layers."""
        if self.language_model_path:
            return _resolve(model, self.language_model_path)
        path = self._find_layers(model)[0]
        return model.get_submodule(path.rpartition(".")[0]) if "." in path else model

    def text_config(self, model: nn.Module) -> PretrainedConfig:
        if self.language_model_path:
            config = getattr(_resolve(model, self.language_model_path), "config", None)
            if isinstance(config, PretrainedConfig):
                return config
        return super().text_config(model)

    def _find_layers(self, model: nn.Module) -> tuple[str, nn.ModuleList]:
        n_layers = self.text_config(model).num_hidden_layers
        found = [
            (name, module) for name, module in model.named_modules()
            if isinstance(module, nn.ModuleList) and len(module) == n_layers and len(module) > 0
            and all(hasattr(layer, self.attention) for layer in module)
            and not any(word in name.lower() for word in _VISION_WORDS)
        ]
        if len(found) != 1:
            names = ", ".join(name for name, _ in found) or "none"
            raise ModelError(f"Cannot tell the language model's layers apart (candidates: {names}).",
                             "Pass language_model='path.to.decoder' to GenericAdapter.")
        return found[0]

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        if not self.language_model_path:
            return self._find_layers(model)[1]
        lm = self.language_model(model)
        for path in ("layers", "model.layers", "decoder.layers"):
            try:
                return _resolve(lm, path)
            except ModelError:
                continue
        raise ModelError(f"No decoder layers under {self.language_model_path!r}.",
                         "Point language_model at the decoder (the module holding `.layers`).")

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        return [getattr(layer, self.attention) for layer in self.decoder_layers(model)]

    def set_attention(self, model: nn.Module, name: str) -> None:
        if self.language_model_path:  # e.g. a transformers decoder inside a remote-code model
            self.language_model(model).set_attn_implementation(name)
        else:
            model.set_attn_implementation({"text_config": name})

    def process(self, processor, texts: list[str], images: list) -> BatchFeature:
        if self._process is not None:
            return self._process(processor, texts, images)
        return super().process(processor, texts, images)

    def position_ids(self, model: nn.Module, inputs: BatchFeature) -> torch.Tensor | None:
        return None if self._position_ids is None else self._position_ids(model, inputs)

    # geometry -------------------------------------------------------------------------------

    def grids_for(self, image_size: tuple[int, int], n_tokens: int) -> list[Grid]:
        grids = self.grids(image_size, n_tokens) if callable(self.grids) else self.grids
        return list(grids)

    def image_geometries(self, model, inputs: BatchFeature, image_sizes, panel_boxes) -> list[ImageGeometry]:
        geometries = []
        for row in range(inputs["input_ids"].shape[0]):
            positions = token_positions(inputs["input_ids"][row], self.token_id, row).cpu()
            width, height = (int(v) for v in image_sizes[row])
            grids = self.grids_for((width, height), positions.numel())
            expected = sum(g.n_tokens for g in grids)
            if not grids or expected != positions.numel():
                raise RegionError(
                    f"Prompt {row} has {positions.numel()} image tokens, but the grid rule describes {expected} "
                    f"({', '.join(f'{g.rows}x{g.cols}' for g in grids) or 'no grids'}).",
                    "Fix the GenericAdapter grids (count newline and skipped tokens), or use one image per prompt.",
                )
            views: list[View] = []
            start = 0
            for k, grid in enumerate(grids):
                run = positions[start + grid.skip: start + grid.n_tokens]
                if grid.newline:
                    run = run.reshape(grid.rows, grid.cols + 1)[:, : grid.cols].reshape(-1)
                fx0, fy0, fx1, fy1 = grid.box
                box = (fx0 * width, fy0 * height, fx1 * width, fy1 * height)
                views.append(grid_view(grid.name or f"grid {k + 1}", run, grid.rows, grid.cols, box))
                start += grid.n_tokens
            geometries.append(ImageGeometry.from_views(views, (width, height), panel_boxes[row],
                                                       extra={"family": self.family}))
        return geometries
