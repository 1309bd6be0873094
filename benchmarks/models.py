"""Benchmark models and inputs, built in code: random Qwen3-VL weights with real shapes.

The language backbone has the layer and head shapes of Qwen3-VL-2B-Instruct's text config
(hidden 2048, 16 query heads, 8 KV heads, head_dim 128, MLP 6144, 28 layers; fewer layers
with `layers=`). The vision tower is small (2 blocks of width 256) but has the real
geometry: patch 16, temporal patch 2, spatial merge 2, so one language-model image token
covers 32 x 32 pixels. The input is a 6-panel strip 256 px high and about 2,900 px wide:
8 token rows x 91 token columns = 728 image tokens.

The vocabulary is the word-level vocabulary of gazeheads' tiny model (91 words, enough for
every prompt used here), not Qwen's 151,936 tokens; see BENCHMARKS.md for what that changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers import (
    Qwen2VLImageProcessor,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

import gazeheads as gh
from gazeheads.layout import StripLayout
from gazeheads.data import Strip, stitch
from gazeheads.tiny.build import build_tokenizer
from gazeheads.tiny.vocab import CHAT_TEMPLATE

PATCH, TEMPORAL_PATCH, MERGE = 16, 2, 2
PIXELS_PER_TOKEN = PATCH * MERGE
MAX_IMAGE_TOKENS = 1024

# Qwen3-VL-2B-Instruct's text config (the shapes that matter for attention cost).
QWEN3_VL_2B_TEXT = dict(
    hidden_size=2048,
    intermediate_size=6144,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    rms_norm_eps=1e-6,
    max_position_embeddings=32768,
    rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20],
                     "mrope_interleaved": True},
)
SMALL_VISION = dict(depth=2, hidden_size=256, intermediate_size=1024, num_heads=4, num_position_embeddings=2304,
                    deepstack_visual_indexes=[0, 1])
# Qwen3-VL-2B-Instruct's vision tower (a third of the model's compute on a 728-token strip).
QWEN3_VL_2B_VISION = dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16)

# Six panels 256 px high whose widths sum to 2,880 px (+ 5 gaps of 6 px): 91 x 8 tokens.
STRIP_WIDTHS = (448, 512, 480, 448, 544, 448)
STRIP_HEIGHT = 256


@dataclass(frozen=True)
class ModelSpec:
    """What to build: text shapes (Qwen3-VL-2B by default) with `layers` decoder layers."""

    layers: int = 4
    hidden: int = QWEN3_VL_2B_TEXT["hidden_size"]
    intermediate: int = QWEN3_VL_2B_TEXT["intermediate_size"]
    heads: int = QWEN3_VL_2B_TEXT["num_attention_heads"]
    kv_heads: int = QWEN3_VL_2B_TEXT["num_key_value_heads"]
    head_dim: int = QWEN3_VL_2B_TEXT["head_dim"]
    mrope_section: tuple[int, int, int] = (24, 20, 20)
    rope_theta: float = 5_000_000.0
    vision_hidden: int = SMALL_VISION["hidden_size"]
    vision_depth: int = SMALL_VISION["depth"]
    vision_heads: int = SMALL_VISION["num_heads"]
    vision_intermediate: int = SMALL_VISION["intermediate_size"]
    vocab_size: int | None = None  # None: the tokenizer's vocabulary (rounded up to 16)

    @classmethod
    def with_vision(cls, kind: str, depth: int | None = None, **fields) -> "ModelSpec":
        """`kind` 'small' (2 x 256) or '2b' (Qwen3-VL-2B's 24 x 1024 blocks; `depth` to use fewer)."""
        if kind == "2b":
            v = QWEN3_VL_2B_VISION
            fields.update(vision_hidden=v["hidden_size"], vision_heads=v["num_heads"],
                          vision_intermediate=v["intermediate_size"], vision_depth=v["depth"])
        elif kind != "small":
            raise ValueError(f"unknown vision tower {kind!r}: use 'small' or '2b'")
        if depth:
            fields["vision_depth"] = depth
        return cls(**fields)

    @classmethod
    def tiny(cls, layers: int = 2) -> "ModelSpec":
        """A few-MB model with the same structure (grouped-query attention, deepstack) for tests."""
        return cls(layers=layers, hidden=64, intermediate=96, heads=4, kv_heads=2, head_dim=16, mrope_section=(2, 3, 3),
                   rope_theta=100.0, vision_hidden=32, vision_depth=2, vision_heads=2, vision_intermediate=64)


def build_processor() -> Qwen3VLProcessor:
    """Qwen3-VL processor with the real image geometry and gazeheads' tiny word-level tokenizer."""
    kwargs = dict(patch_size=PATCH, temporal_patch_size=TEMPORAL_PATCH, merge_size=MERGE,
                  image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
                  size={"shortest_edge": 4 * PIXELS_PER_TOKEN**2, "longest_edge": MAX_IMAGE_TOKENS * PIXELS_PER_TOKEN**2})
    return Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(**kwargs), tokenizer=build_tokenizer(),
                            video_processor=Qwen3VLVideoProcessor(**kwargs), chat_template=CHAT_TEMPLATE)


def build_config(spec: ModelSpec, tokenizer) -> Qwen3VLConfig:
    vocab = tokenizer.get_vocab()
    vocab_size = spec.vocab_size or -(-len(tokenizer) // 16) * 16
    text = dict(
        QWEN3_VL_2B_TEXT,
        vocab_size=vocab_size,
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        head_dim=spec.head_dim,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta,
                         "mrope_section": list(spec.mrope_section), "mrope_interleaved": True},
        pad_token_id=vocab["<|endoftext|>"],
        bos_token_id=None,
        eos_token_id=vocab["<|im_end|>"],
        tie_word_embeddings=True,
    )
    vision = dict(SMALL_VISION, depth=spec.vision_depth, hidden_size=spec.vision_hidden, num_heads=spec.vision_heads,
                  intermediate_size=spec.vision_intermediate, patch_size=PATCH, temporal_patch_size=TEMPORAL_PATCH,
                  spatial_merge_size=MERGE, out_hidden_size=spec.hidden,
                  deepstack_visual_indexes=list(range(min(spec.vision_depth, spec.layers, 2))))
    return Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=vocab["<|image_pad|>"],
                         video_token_id=vocab["<|video_pad|>"], vision_start_token_id=vocab["<|vision_start|>"],
                         vision_end_token_id=vocab["<|vision_end|>"], tie_word_embeddings=True)


def build_model(spec: ModelSpec, *, device: str = "cpu", dtype: torch.dtype = torch.float32,
                seed: int = 0) -> gh.GazeModel:
    """A randomly initialised Qwen3-VL (SDPA everywhere, gazeheads' function on the backbone)."""
    processor = build_processor()
    config = build_config(spec, processor.tokenizer)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3VLForConditionalGeneration._from_config(config, attn_implementation="sdpa", dtype=dtype)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    return gh.GazeModel(model.eval(), processor, name=f"random-qwen3-vl-{spec.layers}L-{spec.hidden}h")


def draw_strip(widths=STRIP_WIDTHS, height: int = STRIP_HEIGHT, seed: int = 0, gap: int = 6) -> Strip:
    """A strip of random-noise panels (a random model has nothing to see in real comics anyway)."""
    rng = np.random.default_rng(seed)
    panels = [Image.fromarray(rng.integers(0, 255, (height, w, 3), dtype=np.uint8)) for w in widths]
    return stitch(panels, StripLayout(height=height, gap=gap, n_panels=len(widths)), comic_id=f"noise-{seed}")


def spread_heads(shape, k: int, seed: int = 0) -> gh.HeadSet:
    """K heads spread over all layers (round-robin over layers, seeded head choice).

    Every layer then takes the steered path, the most expensive case for gazeheads.
    """
    rng = np.random.default_rng(seed)
    per_layer = [list(rng.permutation(shape.n_heads)) for _ in range(shape.n_layers)]
    order = rng.permutation(shape.n_layers)
    pairs = [(int(order[i % shape.n_layers]), int(per_layer[order[i % shape.n_layers]][i // shape.n_layers]))
             for i in range(k)]
    return gh.HeadSet.of(sorted(pairs), shape, f"spread-{k}")
