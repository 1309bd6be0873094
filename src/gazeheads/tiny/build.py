"""The tiny model's configuration and processor, built in code (nothing is downloaded).

Geometry: patch 16 px, temporal patch 2, spatial merge 2, so each language-model image token
covers 32 x 32 pixels. A six-panel synthetic strip (6 x 64 px wide, 64 px high) is a 2 x 12
grid of image tokens, each panel owning two token columns; a 192 px scene is 6 x 6 tokens.
The pixel limits keep such images at their size (no resampling).

Text side: 8 query heads x head_dim 16 with 4 KV heads (grouped-query attention, as in the
real Qwen3-VL), and a small rope theta (100): with head_dim 16 the default theta (5e5) leaves
the rotary angles too small to tell image columns, hence panels, apart.
"""

from __future__ import annotations

from transformers import (
    PreTrainedTokenizerFast,
    Qwen2VLImageProcessor,
    Qwen3VLConfig,
    Qwen3VLProcessor,
    Qwen3VLVideoProcessor,
)

from . import vocab as tiny_vocab

PATCH_SIZE = 16
TEMPORAL_PATCH_SIZE = 2
MERGE_SIZE = 2
PIXELS_PER_TOKEN = PATCH_SIZE * MERGE_SIZE  # 32
MIN_PIXELS = 4 * PIXELS_PER_TOKEN**2  # 2 x 2 tokens
MAX_PIXELS = 128 * PIXELS_PER_TOKEN**2  # 128 tokens
IMAGE_MEAN = [0.5, 0.5, 0.5]
IMAGE_STD = [0.5, 0.5, 0.5]

# Sizes: everything the training script may vary, with the shipped values.
DEFAULT_SIZES = {
    "text_hidden": 128,
    "text_layers": 6,
    "text_heads": 8,
    "text_kv_heads": 4,
    "head_dim": 16,
    "text_intermediate": 384,
    "rope_theta": 100.0,
    "mrope_section": [2, 3, 3],
    "vision_hidden": 128,
    "vision_depth": 3,
    "vision_heads": 4,
    "vision_intermediate": 384,
    "deepstack": [1],
}


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The word-level tokenizer wrapped for transformers, with its chat template."""
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tiny_vocab.build_tokenizer(),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=tiny_vocab.UNK,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=1024,
    )
    tok.chat_template = tiny_vocab.CHAT_TEMPLATE
    return tok


def _vision_kwargs() -> dict:
    return {
        "patch_size": PATCH_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "merge_size": MERGE_SIZE,
        "image_mean": IMAGE_MEAN,
        "image_std": IMAGE_STD,
        "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
    }


def build_processor() -> Qwen3VLProcessor:
    """A Qwen3VLProcessor: Qwen-VL image/video processors with the tiny geometry + the tokenizer.

    The model was never trained on video; the video processor is there because the Qwen3-VL
    processor class requires one.
    """
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**_vision_kwargs()),
        tokenizer=build_tokenizer(),
        video_processor=Qwen3VLVideoProcessor(**_vision_kwargs()),
        chat_template=tiny_vocab.CHAT_TEMPLATE,
    )


def build_config(sizes: dict | None = None) -> Qwen3VLConfig:
    """The tiny Qwen3VLConfig; `sizes` overrides entries of DEFAULT_SIZES."""
    s = {**DEFAULT_SIZES, **(sizes or {})}
    vocab = tiny_vocab.vocabulary()
    vocab_size = -(-len(vocab) // 16) * 16  # rows past the vocabulary are never produced
    text_config = {
        "vocab_size": vocab_size,
        "hidden_size": s["text_hidden"],
        "intermediate_size": s["text_intermediate"],
        "num_hidden_layers": s["text_layers"],
        "num_attention_heads": s["text_heads"],
        "num_key_value_heads": s["text_kv_heads"],
        "head_dim": s["head_dim"],
        "max_position_embeddings": 1024,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": float(s["rope_theta"]),
            "mrope_section": list(s["mrope_section"]),
            "mrope_interleaved": True,
        },
        "pad_token_id": vocab["<|endoftext|>"],
        "bos_token_id": None,
        "eos_token_id": vocab["<|im_end|>"],
        "tie_word_embeddings": False,
    }
    vision_config = {
        "depth": s["vision_depth"],
        "hidden_size": s["vision_hidden"],
        "intermediate_size": s["vision_intermediate"],
        "num_heads": s["vision_heads"],
        "patch_size": PATCH_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "spatial_merge_size": MERGE_SIZE,
        "out_hidden_size": s["text_hidden"],
        "num_position_embeddings": 576,  # a 24 x 24 learned grid, resampled to each image
        "deepstack_visual_indexes": list(s["deepstack"]),
    }
    return Qwen3VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
        tie_word_embeddings=False,
    )
