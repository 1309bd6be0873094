"""Qwen-VL replicas: Qwen3-VL-8B-Instruct, Qwen2.5-VL-7B-Instruct, Qwen2-VL-7B-Instruct."""

from __future__ import annotations

from .core import Cut, Fact, Replica, word_level_tokenizer

# The Qwen2 tokenizer's added tokens (tokenizer_config.json, added_tokens_decoder), shared by all three.
QWEN_SPECIAL = {
    "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
    "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655, "<|video_pad|>": 151656,
}
QWEN_TOKEN_SOURCE = (
    "https://huggingface.co/Qwen/Qwen2-VL-7B-Instruct/blob/main/tokenizer_config.json (added_tokens_decoder; "
    "the same ids in Qwen2.5-VL's and Qwen3-VL's tokenizer_config.json and in each config.json's *_token_id)"
)
DEFAULT_SYSTEM = "You are a helpful assistant."
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]

_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"


def _template(default_system: str | None) -> str:
    """ChatML as the Qwen-VL templates write it; `default_system` opens a conversation without a system turn."""
    opening = ""
    if default_system is not None:
        opening = ("{% if loop.first and m['role'] != 'system' %}{{ '<|im_start|>system\\n"
                   + default_system + "<|im_end|>\\n' }}{% endif %}")
    return (
        "{% for m in messages %}" + opening
        + "{{ '<|im_start|>' + m['role'] + '\\n' }}"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for part in m['content'] %}"
        "{% if part['type'] == 'image' %}{{ '" + _IMAGE + "' }}"
        "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
        "{{ '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


def _chatml_prompt(default_system: str | None) -> str:
    system = f"<|im_start|>system\n{default_system}<|im_end|>\n" if default_system else ""
    return system + f"<|im_start|>user\n{_IMAGE}{{question}}<|im_end|>\n<|im_start|>assistant\n"


def _processor(family: str, *, patch: int, size: dict, mean: list, std: list, default_system: str | None):
    import transformers as tf

    template = _template(default_system)
    tokenizer = word_level_tokenizer(QWEN_SPECIAL, eos="<|im_end|>", pad="<|endoftext|>",
                                     extra_words=default_system or "", chat_template=template)
    image = tf.Qwen2VLImageProcessor(size=size, patch_size=patch, temporal_patch_size=2, merge_size=2,
                                     image_mean=mean, image_std=std, resample=3)
    if family == "qwen3_vl":
        video = tf.Qwen3VLVideoProcessor(patch_size=patch, temporal_patch_size=2, merge_size=2)
        processor_class = tf.Qwen3VLProcessor
    else:
        video = tf.Qwen2VLVideoProcessor(patch_size=patch, temporal_patch_size=2, merge_size=2)
        processor_class = tf.Qwen2_5_VLProcessor if family == "qwen2_5_vl" else tf.Qwen2VLProcessor
    return processor_class(image_processor=image, tokenizer=tokenizer, video_processor=video, chat_template=template)


def _token_facts(source: str = "tokens") -> tuple[Fact, ...]:
    return tuple(Fact(f"token:{token}", token_id, source) for token, token_id in QWEN_SPECIAL.items())


# --- Qwen3-VL-8B-Instruct ----------------------------------------------------------------------

QWEN3_VL_CONFIG = {
    "image_token_id": 151655, "video_token_id": 151656,
    "vision_start_token_id": 151652, "vision_end_token_id": 151653, "tie_word_embeddings": False,
    "text_config": {
        "attention_bias": False, "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128,
        "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 12288,
        "max_position_embeddings": 262144, "num_attention_heads": 32, "num_hidden_layers": 36,
        "num_key_value_heads": 8, "rms_norm_eps": 1e-6,
        "rope_scaling": {"mrope_interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default"},
        "rope_theta": 5000000, "vocab_size": 151936,
    },
    "vision_config": {
        "deepstack_visual_indexes": [8, 16, 24], "depth": 27, "hidden_act": "gelu_pytorch_tanh",
        "hidden_size": 1152, "in_channels": 3, "initializer_range": 0.02, "intermediate_size": 4304,
        "num_heads": 16, "num_position_embeddings": 2304, "out_hidden_size": 4096, "patch_size": 16,
        "spatial_merge_size": 2, "temporal_patch_size": 2,
    },
}

QWEN3_VL = Replica(
    name="qwen3_vl",
    checkpoint="Qwen/Qwen3-VL-8B-Instruct",
    model_class="Qwen3VLForConditionalGeneration",
    config_class="Qwen3VLConfig",
    config=QWEN3_VL_CONFIG,
    sources={
        "config": "https://huggingface.co/Qwen/Qwen3-VL-8B-Instruct/blob/main/config.json "
                  "(checked against stored copies: NVIDIA TensorRT-LLM test QWEN3_VL_8B_CONFIG, "
                  "https://ollama.com/library/qwen3-vl:8b-instruct-bf16/blobs/9b99cf8ef107)",
        "preprocessor": "https://huggingface.co/Qwen/Qwen3-VL-8B-Instruct/blob/main/preprocessor_config.json "
                        "(checked against the copy https://huggingface.co/cdreetz/Qwen3-VL-8B-Instruct/blob/main/"
                        "preprocessor_config.json)",
        "tokens": QWEN_TOKEN_SOURCE,
        "chat_template": "https://huggingface.co/Qwen/Qwen3-VL-8B-Instruct/blob/main/chat_template.json "
                         "(Qwen3-VL family template: no default system turn; checked against the Qwen3-VL-30B-A3B "
                         "copy at https://ai-nexus-293.pages.dev/model/qwen/qwen3-vl-30b-a3b-instruct)",
    },
    facts=(
        Fact("config.text_config.num_hidden_layers", 36, "config"),
        Fact("config.text_config.num_attention_heads", 32, "config"),
        Fact("config.text_config.num_key_value_heads", 8, "config"),
        Fact("config.text_config.head_dim", 128, "config"),
        Fact("config.text_config.hidden_size", 4096, "config"),
        Fact("config.text_config.intermediate_size", 12288, "config"),
        Fact("config.text_config.vocab_size", 151936, "config"),
        Fact("config.text_config.max_position_embeddings", 262144, "config"),
        Fact("config.text_config.rope_parameters.rope_type", "default", "config"),
        Fact("config.text_config.rope_parameters.mrope_section", [24, 20, 20], "config"),
        Fact("config.text_config.rope_parameters.mrope_interleaved", True, "config"),
        Fact("config.text_config.rope_parameters.rope_theta", 5000000, "config"),
        Fact("config.image_token_id", 151655, "config"),
        Fact("config.video_token_id", 151656, "config"),
        Fact("config.vision_start_token_id", 151652, "config"),
        Fact("config.vision_end_token_id", 151653, "config"),
        Fact("config.tie_word_embeddings", False, "config"),
        Fact("config.vision_config.depth", 27, "config"),
        Fact("config.vision_config.hidden_size", 1152, "config"),
        Fact("config.vision_config.num_heads", 16, "config"),
        Fact("config.vision_config.intermediate_size", 4304, "config"),
        Fact("config.vision_config.patch_size", 16, "config"),
        Fact("config.vision_config.spatial_merge_size", 2, "config"),
        Fact("config.vision_config.temporal_patch_size", 2, "config"),
        Fact("config.vision_config.deepstack_visual_indexes", [8, 16, 24], "config"),
        Fact("config.vision_config.out_hidden_size", 4096, "config"),
        Fact("config.vision_config.num_position_embeddings", 2304, "config"),
        Fact("image_processor.patch_size", 16, "preprocessor"),
        Fact("image_processor.merge_size", 2, "preprocessor"),
        Fact("image_processor.temporal_patch_size", 2, "preprocessor"),
        Fact("image_processor.size", {"shortest_edge": 65536, "longest_edge": 16777216}, "preprocessor"),
        Fact("image_processor.image_mean", [0.5, 0.5, 0.5], "preprocessor"),
        Fact("image_processor.image_std", [0.5, 0.5, 0.5], "preprocessor"),
        Fact("attention.head_dim", 128, "config"),
    ) + _token_facts(),
    cuts=(
        Cut("config.text_config.num_hidden_layers", 36, 2, "depth"),
        Cut("config.text_config.intermediate_size", 12288, 256, "MLP width (not on the must-keep list)"),
        Cut("config.vision_config.depth", 27, 1, "depth"),
        Cut("config.vision_config.intermediate_size", 4304, 64, "vision MLP width"),
        Cut("config.vision_config.deepstack_visual_indexes", [8, 16, 24], [0, 0, 0],
            "the one vision block feeds all three DeepStack mergers (their number is kept)"),
        Cut("config.tie_word_embeddings", False, True, "one 151,936 x 4096 table instead of two"),
    ),
    make_processor=lambda: _processor("qwen3_vl", patch=16, size={"shortest_edge": 65536, "longest_edge": 16777216},
                                      mean=[0.5] * 3, std=[0.5] * 3, default_system=None),
    prompt=_chatml_prompt(None),
    system_prompt=None,
    system_turn=_chatml_prompt("{system}"),
    strip_tokens=80,
    strip_note="384x64 px: below min_pixels 65536, so smart_resize (factor 16*2 = 32) scales by sqrt(65536/24576) "
               "and rounds up: 640x128 px = 40x8 patches, merged 2x2 -> 20x4 = 80 tokens",
    kept=("32 heads x 8 KV heads x head_dim 128, hidden 4096", "interleaved M-RoPE [24, 20, 20], theta 5e6",
          "vocab 151,936 and the Qwen special ids", "patch 16, merge 2, temporal 2, 2304 position embeddings, "
          "three DeepStack mergers", "min/max pixels 65536/16777216, mean/std 0.5", "ChatML, no default system turn"),
)

# --- Qwen2.5-VL-7B-Instruct --------------------------------------------------------------------

QWEN2_5_VL_CONFIG = {
    "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
    "vision_end_token_id": 151653, "tie_word_embeddings": False,
    "text_config": {
        "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu",
        "hidden_size": 3584, "initializer_range": 0.02, "intermediate_size": 18944,
        "max_position_embeddings": 128000, "max_window_layers": 28, "num_attention_heads": 28,
        "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "sliding_window": 32768, "use_sliding_window": False,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "vocab_size": 152064,
    },
    "vision_config": {
        "depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
        "in_channels": 3, "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2,
    },
}

_QWEN25_CONFIG_SOURCE = (
    "https://huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct/blob/main/config.json (text fields checked against the "
    "copies https://huggingface.co/unsloth/Qwen2.5-VL-7B-Instruct/blob/main/config.json and "
    "https://huggingface.co/GD-ML/AutoDrive-R2-7B-COT-SFT/blob/main/config.json; vision fields as published, "
    "the schema checked against https://huggingface.co/huihui-ai/Qwen2.5-VL-3B-Instruct-abliterated/blob/main/"
    "config.json; the top-level text fields are nested in text_config as transformers does when loading)"
)

QWEN2_5_VL = Replica(
    name="qwen2_5_vl",
    checkpoint="Qwen/Qwen2.5-VL-7B-Instruct",
    model_class="Qwen2_5_VLForConditionalGeneration",
    config_class="Qwen2_5_VLConfig",
    config=QWEN2_5_VL_CONFIG,
    sources={
        "config": _QWEN25_CONFIG_SOURCE,
        "preprocessor": "https://huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct/blob/main/preprocessor_config.json "
                        "(min_pixels 3136, max_pixels 12845056, patch 14, merge 2, CLIP mean/std, resample 3; "
                        "checked against a stored copy of the file in a public test fixture)",
        "tokens": QWEN_TOKEN_SOURCE,
        "chat_template": "https://huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct/blob/main/chat_template.json "
                         "(default system turn 'You are a helpful assistant.'; checked against several stored "
                         "copies of the Qwen2-VL/Qwen2.5-VL template)",
    },
    facts=(
        Fact("config.text_config.num_hidden_layers", 28, "config"),
        Fact("config.text_config.num_attention_heads", 28, "config"),
        Fact("config.text_config.num_key_value_heads", 4, "config"),
        Fact("config.text_config.hidden_size", 3584, "config"),
        Fact("config.text_config.intermediate_size", 18944, "config"),
        Fact("config.text_config.vocab_size", 152064, "config"),
        Fact("config.text_config.max_position_embeddings", 128000, "config"),
        Fact("config.text_config.rope_parameters.mrope_section", [16, 24, 24], "config"),
        Fact("config.text_config.rope_parameters.rope_theta", 1000000.0, "config"),
        Fact("config.image_token_id", 151655, "config"),
        Fact("config.video_token_id", 151656, "config"),
        Fact("config.vision_start_token_id", 151652, "config"),
        Fact("config.vision_end_token_id", 151653, "config"),
        Fact("config.tie_word_embeddings", False, "config"),
        Fact("config.vision_config.depth", 32, "config"),
        Fact("config.vision_config.hidden_size", 1280, "config"),
        Fact("config.vision_config.num_heads", 16, "config"),
        Fact("config.vision_config.intermediate_size", 3420, "config"),
        Fact("config.vision_config.out_hidden_size", 3584, "config"),
        Fact("config.vision_config.patch_size", 14, "config"),
        Fact("config.vision_config.spatial_merge_size", 2, "config"),
        Fact("config.vision_config.temporal_patch_size", 2, "config"),
        Fact("config.vision_config.window_size", 112, "config"),
        Fact("config.vision_config.fullatt_block_indexes", [7, 15, 23, 31], "config"),
        Fact("image_processor.patch_size", 14, "preprocessor"),
        Fact("image_processor.merge_size", 2, "preprocessor"),
        Fact("image_processor.temporal_patch_size", 2, "preprocessor"),
        Fact("image_processor.size", {"shortest_edge": 3136, "longest_edge": 12845056}, "preprocessor"),
        Fact("image_processor.image_mean", CLIP_MEAN, "preprocessor"),
        Fact("image_processor.image_std", CLIP_STD, "preprocessor"),
        Fact("attention.head_dim", 128, "config", "hidden_size / num_attention_heads; config.json has no head_dim"),
    ) + _token_facts(),
    cuts=(
        Cut("config.text_config.num_hidden_layers", 28, 2, "depth"),
        Cut("config.text_config.intermediate_size", 18944, 256, "MLP width"),
        Cut("config.vision_config.depth", 32, 1, "depth"),
        Cut("config.vision_config.intermediate_size", 3420, 64, "vision MLP width"),
        Cut("config.vision_config.fullatt_block_indexes", [7, 15, 23, 31], [],
            "the one vision block uses windowed attention, as 28 of the 32 published blocks do"),
        Cut("config.tie_word_embeddings", False, True, "one embedding table instead of two"),
    ),
    make_processor=lambda: _processor("qwen2_5_vl", patch=14, size={"shortest_edge": 3136, "longest_edge": 12845056},
                                      mean=CLIP_MEAN, std=CLIP_STD, default_system=DEFAULT_SYSTEM),
    prompt=_chatml_prompt(DEFAULT_SYSTEM),
    system_prompt=DEFAULT_SYSTEM,
    system_turn=_chatml_prompt("{system}"),
    strip_tokens=28,
    strip_note="384x64 px: smart_resize (factor 14*2 = 28) rounds to 392x56 px = 28x4 patches, merged 2x2 -> "
               "14x2 = 28 tokens",
    kept=("28 heads x 4 KV heads x head_dim 128, hidden 3584", "M-RoPE [16, 24, 24], theta 1e6",
          "vocab 152,064 and the Qwen special ids", "patch 14, merge 2, temporal 2, window 112",
          "min/max pixels 3136/12845056, CLIP mean/std", "ChatML with the default system turn"),
)

# --- Qwen2-VL-7B-Instruct ----------------------------------------------------------------------

QWEN2_VL_CONFIG = {
    "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
    "vision_end_token_id": 151653, "tie_word_embeddings": False,
    "text_config": {
        "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 3584,
        "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 32768,
        "max_window_layers": 28, "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "sliding_window": 32768, "use_sliding_window": False,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "vocab_size": 152064,
    },
    "vision_config": {
        "depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16, "in_channels": 3, "hidden_size": 3584,
        "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
    },
}

QWEN2_VL = Replica(
    name="qwen2_vl",
    checkpoint="Qwen/Qwen2-VL-7B-Instruct",
    model_class="Qwen2VLForConditionalGeneration",
    config_class="Qwen2VLConfig",
    config=QWEN2_VL_CONFIG,
    sources={
        "config": "https://huggingface.co/Qwen/Qwen2-VL-7B-Instruct/blob/main/config.json (as published; the "
                  "schema checked against the Qwen2-VL-2B copy in https://huggingface.co/llmware/"
                  "qwen2-vl-2b-instruct-ov/commit/96c52463b288b3c4f3c8c69828169c241a023139; top-level text "
                  "fields nested in text_config as transformers does when loading)",
        "preprocessor": "https://huggingface.co/Qwen/Qwen2-VL-7B-Instruct/blob/main/preprocessor_config.json "
                        "(min_pixels 3136, max_pixels 12845056; checked against a stored printout of the "
                        "Qwen/Qwen2-VL-7B-Instruct processor)",
        "tokens": QWEN_TOKEN_SOURCE,
        "chat_template": "https://huggingface.co/Qwen/Qwen2-VL-7B-Instruct/blob/main/chat_template.json "
                         "(default system turn 'You are a helpful assistant.')",
    },
    facts=(
        Fact("config.text_config.num_hidden_layers", 28, "config"),
        Fact("config.text_config.num_attention_heads", 28, "config"),
        Fact("config.text_config.num_key_value_heads", 4, "config"),
        Fact("config.text_config.hidden_size", 3584, "config"),
        Fact("config.text_config.intermediate_size", 18944, "config"),
        Fact("config.text_config.vocab_size", 152064, "config"),
        Fact("config.text_config.max_position_embeddings", 32768, "config"),
        Fact("config.text_config.rope_parameters.mrope_section", [16, 24, 24], "config"),
        Fact("config.text_config.rope_parameters.rope_theta", 1000000.0, "config"),
        Fact("config.image_token_id", 151655, "config"),
        Fact("config.vision_start_token_id", 151652, "config"),
        Fact("config.vision_end_token_id", 151653, "config"),
        Fact("config.tie_word_embeddings", False, "config"),
        Fact("config.vision_config.depth", 32, "config"),
        Fact("config.vision_config.embed_dim", 1280, "config"),
        Fact("config.vision_config.mlp_ratio", 4, "config"),
        Fact("config.vision_config.num_heads", 16, "config"),
        Fact("config.vision_config.hidden_size", 3584, "config"),
        Fact("config.vision_config.patch_size", 14, "config"),
        Fact("config.vision_config.spatial_merge_size", 2, "config"),
        Fact("config.vision_config.temporal_patch_size", 2, "config"),
        Fact("image_processor.patch_size", 14, "preprocessor"),
        Fact("image_processor.merge_size", 2, "preprocessor"),
        Fact("image_processor.size", {"shortest_edge": 3136, "longest_edge": 12845056}, "preprocessor"),
        Fact("image_processor.image_mean", CLIP_MEAN, "preprocessor"),
        Fact("image_processor.image_std", CLIP_STD, "preprocessor"),
        Fact("attention.head_dim", 128, "config", "hidden_size / num_attention_heads"),
    ) + _token_facts(),
    cuts=(
        Cut("config.text_config.num_hidden_layers", 28, 2, "depth"),
        Cut("config.text_config.intermediate_size", 18944, 256, "MLP width"),
        Cut("config.vision_config.depth", 32, 1, "depth"),
        Cut("config.vision_config.mlp_ratio", 4, 1, "vision MLP width (embed_dim x 1)"),
        Cut("config.tie_word_embeddings", False, True, "one embedding table instead of two"),
    ),
    make_processor=lambda: _processor("qwen2_vl", patch=14, size={"shortest_edge": 3136, "longest_edge": 12845056},
                                      mean=CLIP_MEAN, std=CLIP_STD, default_system=DEFAULT_SYSTEM),
    prompt=_chatml_prompt(DEFAULT_SYSTEM),
    system_prompt=DEFAULT_SYSTEM,
    system_turn=_chatml_prompt("{system}"),
    strip_tokens=28,
    strip_note="as Qwen2.5-VL: 392x56 px = 28x4 patches -> 14x2 = 28 tokens",
    kept=("28 heads x 4 KV heads x head_dim 128, hidden 3584", "M-RoPE [16, 24, 24], theta 1e6",
          "vocab 152,064 and the Qwen special ids", "embed_dim 1280, patch 14, merge 2, temporal 2",
          "min/max pixels 3136/12845056, CLIP mean/std", "ChatML with the default system turn"),
)

REPLICAS = (QWEN3_VL, QWEN2_5_VL, QWEN2_VL)
