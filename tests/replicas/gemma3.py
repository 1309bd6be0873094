"""Gemma 3 replica: google/gemma-3-4b-it."""

from __future__ import annotations

import torch
from torch import nn

from .core import Cut, Fact, Replica, word_level_tokenizer

GEMMA3_SPECIAL = {
    "<pad>": 0, "<eos>": 1, "<bos>": 2, "<start_of_turn>": 105, "<end_of_turn>": 106,
    "<start_of_image>": 255999, "<end_of_image>": 256000, "<image_soft_token>": 262144,
}
PUBLISHED_LAYER_TYPES = ["sliding_attention" if (i + 1) % 6 else "full_attention" for i in range(34)]

GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content'][0]['text'] + '\\n\\n' %}"
    "{% set turns = messages[1:] %}{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}"
    "{% for m in turns %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + (prefix if loop.first else '') }}"
    "{% if m['content'] is string %}{{ m['content'] | trim }}{% else %}{% for part in m['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<start_of_image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] | trim }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)


def _processor():
    import transformers as tf

    named = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tokenizer = word_level_tokenizer(GEMMA3_SPECIAL, bos="<bos>", eos="<eos>", pad="<pad>", named=named,
                                     chat_template=GEMMA3_TEMPLATE)
    image = tf.Gemma3ImageProcessor(size={"height": 896, "width": 896}, resample=2, image_mean=[0.5] * 3,
                                    image_std=[0.5] * 3)
    return tf.Gemma3Processor(image_processor=image, tokenizer=tokenizer, image_seq_length=256,
                              chat_template=GEMMA3_TEMPLATE)


def _give_images_a_signal(model: nn.Module) -> None:
    """Gemma 3's init zeroes the image projection (every image token would embed alike); seed it instead."""
    projection = model.model.multi_modal_projector.mm_input_projection_weight
    with torch.no_grad():
        projection.copy_((torch.randn(projection.shape) * 0.02).to(projection.dtype))


GEMMA3 = Replica(
    name="gemma3",
    checkpoint="google/gemma-3-4b-it",
    model_class="Gemma3ForConditionalGeneration",
    config_class="Gemma3Config",
    config={
        "boi_token_index": 255999, "eoi_token_index": 256000, "eos_token_id": [1, 106],
        "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
        "text_config": {"hidden_size": 2560, "intermediate_size": 10240, "model_type": "gemma3_text",
                        "num_hidden_layers": 34, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                        "sliding_window": 1024},
        "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                          "model_type": "siglip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 27,
                          "patch_size": 14, "vision_use_head": False},
    },
    sources={
        "config": "https://huggingface.co/google/gemma-3-4b-it/blob/main/config.json (checked against the copy "
                  "https://huggingface.co/mlx-community/gemma-3-4b-it-bf16/blob/main/config.json); it names hidden "
                  "2560, MLP 10240, 34 layers, linear RoPE factor 8, sliding window 1024, and leaves the rest to "
                  "Gemma3TextConfig's defaults (8 heads, 4 KV heads, head_dim 256, vocab 262,208, theta 1e6 global "
                  "/ 1e4 local, query_pre_attn_scalar 256, 5 sliding : 1 global) - the same values the expanded "
                  "config of https://huggingface.co/unsloth/gemma-3-4b-pt/blob/main/config.json spells out",
        "preprocessor": "https://huggingface.co/google/gemma-3-4b-it/blob/main/preprocessor_config.json "
                        "(Gemma3ImageProcessor 896x896, resample 2, mean/std 0.5, pan-and-scan off by default)",
        "processor": "https://huggingface.co/google/gemma-3-4b-it/blob/main/processor_config.json "
                     "(image_seq_length 256)",
        "tokens": "https://huggingface.co/google/gemma-3-4b-it/blob/main/tokenizer_config.json (<pad> 0, <eos> 1, "
                  "<bos> 2, <start_of_turn> 105, <end_of_turn> 106; <start_of_image> 255999, <end_of_image> 256000, "
                  "<image_soft_token> 262144 also in config.json)",
        "chat_template": "https://huggingface.co/google/gemma-3-4b-it/blob/main/chat_template.json (bos, the "
                         "system text folded into the first user turn, images as <start_of_image>; checked against "
                         "transformers' tests/models/gemma3/test_processing_gemma3.py)",
    },
    facts=(
        Fact("config.text_config.num_hidden_layers", 34, "config"),
        Fact("config.text_config.num_attention_heads", 8, "config", "Gemma3TextConfig default"),
        Fact("config.text_config.num_key_value_heads", 4, "config", "Gemma3TextConfig default"),
        Fact("config.text_config.head_dim", 256, "config", "Gemma3TextConfig default"),
        Fact("config.text_config.hidden_size", 2560, "config"),
        Fact("config.text_config.intermediate_size", 10240, "config"),
        Fact("config.text_config.vocab_size", 262208, "config", "Gemma3TextConfig default"),
        Fact("config.text_config.query_pre_attn_scalar", 256, "config", "Gemma3TextConfig default"),
        Fact("config.text_config.sliding_window", 1024, "config"),
        Fact("config.text_config.layer_types", PUBLISHED_LAYER_TYPES, "config", "sliding_window_pattern 6"),
        Fact("config.text_config.rope_parameters.full_attention.rope_type", "linear", "config"),
        Fact("config.text_config.rope_parameters.full_attention.factor", 8.0, "config"),
        Fact("config.text_config.rope_parameters.full_attention.rope_theta", 1000000.0, "config", "default"),
        Fact("config.text_config.rope_parameters.sliding_attention.rope_theta", 10000.0, "config", "default"),
        Fact("config.mm_tokens_per_image", 256, "config"),
        Fact("config.boi_token_id", 255999, "config", "boi_token_index in config.json"),
        Fact("config.eoi_token_id", 256000, "config", "eoi_token_index in config.json"),
        Fact("config.image_token_id", 262144, "config", "image_token_index in config.json"),
        Fact("config.tie_word_embeddings", True, "config", "Gemma3Config default"),
        Fact("config.vision_config.hidden_size", 1152, "config"),
        Fact("config.vision_config.num_hidden_layers", 27, "config"),
        Fact("config.vision_config.num_attention_heads", 16, "config"),
        Fact("config.vision_config.intermediate_size", 4304, "config"),
        Fact("config.vision_config.image_size", 896, "config"),
        Fact("config.vision_config.patch_size", 14, "config"),
        Fact("image_processor.size", {"height": 896, "width": 896}, "preprocessor"),
        Fact("image_processor.resample", 2, "preprocessor"),
        Fact("image_processor.image_mean", [0.5, 0.5, 0.5], "preprocessor"),
        Fact("processor.image_seq_length", 256, "processor"),
        Fact("attention.head_dim", 256, "config"),
        Fact("attention.scaling", 256 ** -0.5, "config", "query_pre_attn_scalar ** -0.5"),
        *(Fact(f"token:{t}", i, "tokens") for t, i in GEMMA3_SPECIAL.items()),
    ),
    cuts=(
        Cut("config.text_config.num_hidden_layers", 34, 2, "depth"),
        Cut("config.text_config.layer_types", PUBLISHED_LAYER_TYPES, ["sliding_attention", "full_attention"],
            "one sliding-window (local RoPE) layer and one global (linear-scaled RoPE) layer, as in the pattern"),
        Cut("config.text_config.intermediate_size", 10240, 256, "MLP width"),
        Cut("config.vision_config.num_hidden_layers", 27, 1, "depth"),
        Cut("config.vision_config.intermediate_size", 4304, 64, "vision MLP width"),
    ),
    make_processor=_processor,
    prompt="<bos><start_of_turn>user\n<start_of_image>{question}<end_of_turn>\n<start_of_turn>model\n",
    system_prompt=None,
    system_turn="<bos><start_of_turn>user\n{system}\n\n<start_of_image>{question}<end_of_turn>\n<start_of_turn>model\n",
    strip_tokens=256,
    strip_note="the image is stretched to 896x896 px, 64x64 SigLIP patches average-pooled 4x4 to 16x16 = 256 "
               "tokens (mm_tokens_per_image); pan-and-scan is off in the published processor",
    post_init=_give_images_a_signal,
    kept=("8 heads x 4 KV heads x head_dim 256, hidden 2560, query_pre_attn_scalar 256",
          "sliding window 1024 with local RoPE 1e4; global layers linear RoPE x8, theta 1e6",
          "vocab 262,208 (tied, as published); image ids 255999/256000/262144",
          "SigLIP/14 at 896 px pooled to 256 tokens", "resize to 896x896, no pan-and-scan by default",
          "Gemma turns with the system text folded into the first user turn"),
)

REPLICAS = (GEMMA3,)
