"""Idefics3 and SmolVLM replicas: HuggingFaceM4/Idefics3-8B-Llama3, HuggingFaceTB/SmolVLM2-500M-Video-Instruct."""

from __future__ import annotations

from .core import Cut, Fact, Replica, word_level_tokenizer


def _template(opening: str) -> str:
    """The Idefics3/SmolVLM turn format: 'User:' directly before a leading image, 'User: ' otherwise."""
    return (
        opening + "{% for m in messages %}{{ m['role'] | capitalize }}"
        "{% if m['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
        "{% for part in m['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
        "{% elif part['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
        "{{ '<end_of_utterance>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
    )


# --- HuggingFaceM4/Idefics3-8B-Llama3 ----------------------------------------------------------

# Llama 3.1's specials plus the three Idefics3 adds after its 128,256 tokens. <row_R_col_C> and <global-img>
# are not tokens of this tokenizer: the processor writes them as text, so the replica's tokenizer, like the
# published one, has no single token for them.
IDEFICS3_SPECIAL = {
    "<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|reserved_special_token_0|>": 128002,
    "<|eot_id|>": 128009, "<fake_token_around_image>": 128256, "<image>": 128257, "<end_of_utterance>": 128258,
}
IDEFICS3_TEMPLATE = _template("{{ '<|begin_of_text|>' }}")
IDEFICS3_ROPE = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                 "original_max_position_embeddings": 8192, "rope_type": "llama3"}


def _idefics3_processor():
    import transformers as tf

    named = {"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
             "end_of_utterance_token": "<end_of_utterance>"}
    tokenizer = word_level_tokenizer(IDEFICS3_SPECIAL, bos="<|begin_of_text|>", eos="<|end_of_text|>",
                                     pad="<|reserved_special_token_0|>", named=named, chat_template=IDEFICS3_TEMPLATE)
    image = tf.Idefics3ImageProcessor(size={"longest_edge": 1456}, max_image_size={"longest_edge": 364},
                                      do_image_splitting=True, resample=1, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return tf.Idefics3Processor(image_processor=image, tokenizer=tokenizer, image_seq_len=169,
                                chat_template=IDEFICS3_TEMPLATE)


IDEFICS3 = Replica(
    name="idefics3",
    checkpoint="HuggingFaceM4/Idefics3-8B-Llama3",
    model_class="Idefics3ForConditionalGeneration",
    config_class="Idefics3Config",
    config={
        "image_token_id": 128257, "scale_factor": 2, "tie_word_embeddings": False,
        "text_config": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
                        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                        "max_position_embeddings": 131072, "rope_theta": 500000.0, "rope_scaling": IDEFICS3_ROPE,
                        "rms_norm_eps": 1e-5, "vocab_size": 128259, "pad_token_id": 128002},
        "vision_config": {"hidden_size": 1152, "image_size": 364, "intermediate_size": 4304,
                          "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14},
    },
    sources={
        "config": "https://huggingface.co/HuggingFaceM4/Idefics3-8B-Llama3/blob/main/config.json (text: "
                  "Llama-3.1-8B-Instruct, 32 x 32 heads, 8 KV, theta 5e5 with llama3 RoPE scaling; vision: "
                  "SigLIP-so400m/14 at 364 px; scale_factor 2; image_token_id 128257, also transformers' "
                  "Idefics3Config default for this checkpoint; the file itself was not found in a stored copy)",
        "preprocessor": "https://huggingface.co/HuggingFaceM4/Idefics3-8B-Llama3/blob/main/preprocessor_config.json "
                        "(longest edge 4 x 364 = 1456, tiles of 364, resample 1 = Lanczos, mean/std 0.5; the 1456 "
                        "and 364 px checked against transformers' tests/models/idefics3/test_processing_idefics3.py, "
                        "which loads this checkpoint's processor)",
        "processor": "https://huggingface.co/HuggingFaceM4/Idefics3-8B-Llama3/blob/main/processor_config.json "
                     "(image_seq_len 169 = (364/14)^2 / 2^2)",
        "tokens": "https://huggingface.co/HuggingFaceM4/Idefics3-8B-Llama3/blob/main/generation_config.json "
                  "(bos 128000, eos [128001, 128008, 128009, 128258], pad 128002; stored page checked) and "
                  "tokenizer_config.json (<fake_token_around_image> 128256, <image> 128257, "
                  "<end_of_utterance> 128258)",
        "chat_template": "https://huggingface.co/HuggingFaceM4/Idefics3-8B-Llama3/blob/main/chat_template.json "
                         "(rendering checked against transformers' test_processing_idefics3.py: "
                         "'<|begin_of_text|>User: ...<end_of_utterance>\\nAssistant:')",
    },
    facts=(
        Fact("config.text_config.num_hidden_layers", 32, "config"),
        Fact("config.text_config.num_attention_heads", 32, "config"),
        Fact("config.text_config.num_key_value_heads", 8, "config"),
        Fact("config.text_config.hidden_size", 4096, "config"),
        Fact("config.text_config.intermediate_size", 14336, "config"),
        Fact("config.text_config.vocab_size", 128259, "config"),
        Fact("config.text_config.rope_parameters.rope_type", "llama3", "config"),
        Fact("config.text_config.rope_parameters.rope_theta", 500000.0, "config"),
        Fact("config.text_config.rope_parameters.factor", 8.0, "config"),
        Fact("config.image_token_id", 128257, "config"),
        Fact("config.scale_factor", 2, "config"),
        Fact("config.tie_word_embeddings", False, "config"),
        Fact("config.vision_config.hidden_size", 1152, "config"),
        Fact("config.vision_config.num_hidden_layers", 27, "config"),
        Fact("config.vision_config.num_attention_heads", 16, "config"),
        Fact("config.vision_config.intermediate_size", 4304, "config"),
        Fact("config.vision_config.image_size", 364, "config"),
        Fact("config.vision_config.patch_size", 14, "config"),
        Fact("image_processor.size", {"longest_edge": 1456}, "preprocessor"),
        Fact("image_processor.max_image_size", {"longest_edge": 364}, "preprocessor"),
        Fact("image_processor.do_image_splitting", True, "preprocessor"),
        Fact("image_processor.resample", 1, "preprocessor"),
        Fact("processor.image_seq_len", 169, "processor"),
        Fact("attention.head_dim", 128, "config", "hidden_size / num_attention_heads"),
        *(Fact(f"token:{t}", i, "tokens") for t, i in IDEFICS3_SPECIAL.items()),
    ),
    cuts=(
        Cut("config.text_config.num_hidden_layers", 32, 2, "depth"),
        Cut("config.text_config.intermediate_size", 14336, 256, "MLP width"),
        Cut("config.vision_config.num_hidden_layers", 27, 1, "depth"),
        Cut("config.vision_config.intermediate_size", 4304, 64, "vision MLP width"),
        Cut("config.tie_word_embeddings", False, True, "one 128,259 x 4096 table instead of two"),
    ),
    make_processor=_idefics3_processor,
    prompt="<|begin_of_text|>User:<image>{question}<end_of_utterance>\nAssistant:",
    system_prompt=None,
    system_turn="<|begin_of_text|>System: {system}<end_of_utterance>\nUser:<image>{question}<end_of_utterance>\n"
                "Assistant:",
    strip_tokens=5 * 169,
    strip_note="the longest edge goes to 1456 px (384x64 -> 1456x243), then to whole 364-px tiles: 4 columns x 1 "
               "row, plus the global image; each 26x26 patches pixel-shuffled 2x2 to 13x13 = 169 tokens: 5 x 169 = 845",
    kept=("32 heads x 8 KV heads x head_dim 128, hidden 4096", "llama3 RoPE scaling x8, theta 5e5",
          "vocab 128,259; <fake_token_around_image> 128256, <image> 128257, <end_of_utterance> 128258",
          "SigLIP/14 at 364 px, pixel shuffle 2 -> 169 tokens a tile", "longest edge 1456, 364-px tiles + global "
          "image, Lanczos", "User:/Assistant: turns after <|begin_of_text|>"),
)

# --- HuggingFaceTB/SmolVLM2-500M-Video-Instruct ------------------------------------------------

# The added tokens at their published ids (added_tokens.json): <global-img> 49152, the 36 <row_R_col_C> markers
# 49153..49188, <fake_token_around_image> 49189, <image> 49190, <end_of_utterance> 49279.
SMOLVLM_SPECIAL = {
    "<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "<global-img>": 49152,
    **{f"<row_{r}_col_{c}>": 49153 + (r - 1) * 6 + (c - 1) for r in range(1, 7) for c in range(1, 7)},
    "<fake_token_around_image>": 49189, "<image>": 49190, "<end_of_utterance>": 49279,
}
SMOLVLM_TEMPLATE = _template("{{ '<|im_start|>' }}")
SMOL_SOURCE = ("a stored public test utility (tests/offline_vlm_cache.py, search-index id 68306089702) that "
               "reproduces this checkpoint's config.json, preprocessor_config.json, processor_config.json and "
               "added-token ids 'verbatim from the model card'")


def _smolvlm_processor():
    import transformers as tf

    named = {"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
             "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"}
    tokenizer = word_level_tokenizer(SMOLVLM_SPECIAL, bos="<|im_start|>", eos="<end_of_utterance>", pad="<|im_end|>",
                                     named=named, chat_template=SMOLVLM_TEMPLATE)
    image = tf.SmolVLMImageProcessor(size={"longest_edge": 2048}, max_image_size={"longest_edge": 512},
                                     do_image_splitting=True, resample=1, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    try:
        return tf.SmolVLMProcessor(image_processor=image, tokenizer=tokenizer,
                                   video_processor=tf.SmolVLMVideoProcessor(), image_seq_len=64,
                                   chat_template=SMOLVLM_TEMPLATE)
    except ImportError:  # SmolVLMProcessor wants num2words (video timestamps only); images are prompted alike
        return tf.Idefics3Processor(image_processor=image, tokenizer=tokenizer, image_seq_len=64,
                                    chat_template=SMOLVLM_TEMPLATE)


SMOLVLM = Replica(
    name="smolvlm",
    checkpoint="HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
    model_class="SmolVLMForConditionalGeneration",
    config_class="SmolVLMConfig",
    config={
        "image_token_id": 49190, "pad_token_id": 128002, "scale_factor": 4, "tie_word_embeddings": False,
        "text_config": {"model_type": "llama", "head_dim": 64, "hidden_size": 960, "intermediate_size": 2560,
                        "max_position_embeddings": 8192, "num_attention_heads": 15, "num_hidden_layers": 32,
                        "num_key_value_heads": 5, "pad_token_id": 2, "rms_norm_eps": 1e-5, "rope_theta": 100000,
                        "vocab_size": 49280},
        "vision_config": {"hidden_size": 768, "image_size": 512, "num_attention_heads": 12, "patch_size": 16},
    },
    sources={
        "config": "https://huggingface.co/HuggingFaceTB/SmolVLM2-500M-Video-Instruct/blob/main/config.json (checked "
                  "against " + SMOL_SOURCE + "; the vision config names width 768, 12 heads, 512 px, patch 16 and "
                  "leaves depth 12 and MLP 3072 to SmolVLMVisionConfig's defaults)",
        "preprocessor": "https://huggingface.co/HuggingFaceTB/SmolVLM2-500M-Video-Instruct/blob/main/"
                        "preprocessor_config.json (longest edge 2048, tiles of 512, resample 1, mean/std 0.5; "
                        "checked against " + SMOL_SOURCE + " and the SmolVLM2-256M copy https://huggingface.co/"
                        "HuggingFaceTB/SmolVLM2-256M-Video-Instruct/blob/refs%2Fpr%2F6/preprocessor_config.json)",
        "processor": "https://huggingface.co/HuggingFaceTB/SmolVLM2-500M-Video-Instruct/blob/main/"
                     "processor_config.json (image_seq_len 64; checked against " + SMOL_SOURCE + ")",
        "tokens": "https://huggingface.co/HuggingFaceTB/SmolVLM2-500M-Video-Instruct/blob/main/added_tokens.json "
                  "and tokenizer_config.json (checked against " + SMOL_SOURCE + ")",
        "chat_template": "https://huggingface.co/HuggingFaceTB/SmolVLM2-500M-Video-Instruct/blob/main/"
                         "chat_template.json ('<|im_start|>User:<image>...<end_of_utterance>\\nAssistant:'; checked "
                         "against transformers' SmolVLM DEFAULT_CHAT_TEMPLATE)",
    },
    facts=(
        Fact("config.text_config.num_hidden_layers", 32, "config"),
        Fact("config.text_config.num_attention_heads", 15, "config"),
        Fact("config.text_config.num_key_value_heads", 5, "config"),
        Fact("config.text_config.head_dim", 64, "config"),
        Fact("config.text_config.hidden_size", 960, "config"),
        Fact("config.text_config.intermediate_size", 2560, "config"),
        Fact("config.text_config.vocab_size", 49280, "config"),
        Fact("config.text_config.max_position_embeddings", 8192, "config"),
        Fact("config.text_config.rope_parameters.rope_theta", 100000, "config"),
        Fact("config.image_token_id", 49190, "config"),
        Fact("config.scale_factor", 4, "config"),
        Fact("config.tie_word_embeddings", False, "config"),
        Fact("config.vision_config.hidden_size", 768, "config"),
        Fact("config.vision_config.num_hidden_layers", 12, "config", "SmolVLMVisionConfig default"),
        Fact("config.vision_config.num_attention_heads", 12, "config"),
        Fact("config.vision_config.intermediate_size", 3072, "config", "SmolVLMVisionConfig default"),
        Fact("config.vision_config.image_size", 512, "config"),
        Fact("config.vision_config.patch_size", 16, "config"),
        Fact("image_processor.size", {"longest_edge": 2048}, "preprocessor"),
        Fact("image_processor.max_image_size", {"longest_edge": 512}, "preprocessor"),
        Fact("image_processor.do_image_splitting", True, "preprocessor"),
        Fact("image_processor.resample", 1, "preprocessor"),
        Fact("processor.image_seq_len", 64, "processor"),
        Fact("attention.head_dim", 64, "config"),
        *(Fact(f"token:{t}", i, "tokens") for t, i in SMOLVLM_SPECIAL.items()),
    ),
    cuts=(
        Cut("config.text_config.num_hidden_layers", 32, 2, "depth"),
        Cut("config.text_config.intermediate_size", 2560, 256, "MLP width"),
        Cut("config.vision_config.num_hidden_layers", 12, 1, "depth"),
        Cut("config.vision_config.intermediate_size", 3072, 64, "vision MLP width"),
        Cut("config.tie_word_embeddings", False, True, "one embedding table instead of two"),
    ),
    make_processor=_smolvlm_processor,
    prompt="<|im_start|>User:<image>{question}<end_of_utterance>\nAssistant:",
    system_prompt=None,
    system_turn="<|im_start|>System: {system}<end_of_utterance>\nUser:<image>{question}<end_of_utterance>\n"
                "Assistant:",
    strip_tokens=5 * 64,
    strip_note="the longest edge goes to 2048 px (384x64 -> 2048x341), then to whole 512-px tiles: 4 columns x 1 "
               "row, plus the global image; each 32x32 patches pixel-shuffled 4x4 to 8x8 = 64 tokens: 5 x 64 = 320",
    kept=("15 heads x 5 KV heads x head_dim 64, hidden 960", "RoPE theta 1e5",
          "vocab 49,280; <image> 49190, <global-img> 49152, <row_R_col_C> 49153..49188",
          "SigLIP-B/16 at 512 px, pixel shuffle 4 -> 64 tokens a tile",
          "longest edge 2048, 512-px tiles + global image, Lanczos", "User:/Assistant: turns after <|im_start|>"),
)

REPLICAS = (IDEFICS3, SMOLVLM)
