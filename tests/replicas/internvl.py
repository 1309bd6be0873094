"""InternVL (HF-native) replica: OpenGVLab/InternVL3-8B-hf."""

from __future__ import annotations

from .core import Cut, Fact, Replica, word_level_tokenizer

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

# Qwen2.5's tokenizer plus the tokens the conversion adds after its 151,665: <img>, </img>, <IMG_CONTEXT>,
# <quad>, </quad>, <ref>, </ref>, <box>, </box> (151665..151673; vocab 151,674).
INTERNVL_SPECIAL = {
    "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
    "<img>": 151665, "</img>": 151666, "<IMG_CONTEXT>": 151667, "<quad>": 151668, "</quad>": 151669,
    "<ref>": 151670, "</ref>": 151671, "<box>": 151672, "</box>": 151673,
}
# InternVLProcessor also wants a `video_token`; it is not among the published added tokens above, so the
# replica gives "<video>" the id of Qwen2.5's <|video_pad|> (151656), which no image prompt contains.
VIDEO = {"<video>": 151656}

INTERNVL_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for part in m['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

CONVERTER = ("huggingface/transformers src/transformers/models/internvl/convert_internvl_weights_to_hf.py (the "
             "script that made the -hf checkpoints)")


def _processor():
    import transformers as tf

    named = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
             "video_token": "<video>"}
    special = {**INTERNVL_SPECIAL, **VIDEO}
    tokenizer = word_level_tokenizer(special, eos="<|im_end|>", pad="<|endoftext|>", named=named,
                                     chat_template=INTERNVL_TEMPLATE)
    image = tf.GotOcr2ImageProcessor(size={"height": 448, "width": 448}, crop_to_patches=True, min_patches=1,
                                     max_patches=12, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, resample=3)
    return tf.InternVLProcessor(image_processor=image, tokenizer=tokenizer, video_processor=tf.InternVLVideoProcessor(),
                                image_seq_length=256, chat_template=INTERNVL_TEMPLATE)


INTERNVL = Replica(
    name="internvl",
    checkpoint="OpenGVLab/InternVL3-8B-hf",
    model_class="InternVLForConditionalGeneration",
    config_class="InternVLConfig",
    config={
        "image_token_id": 151667, "image_seq_length": 256, "downsample_ratio": 0.5, "projector_hidden_act": "gelu",
        "vision_feature_layer": -1, "vision_feature_select_strategy": "default", "tie_word_embeddings": False,
        "text_config": {"model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
                        "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                        "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
                        "bos_token_id": 151643, "eos_token_id": 151645, "vocab_size": 151674,
                        "tie_word_embeddings": False},
        "vision_config": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                          "intermediate_size": 4096, "image_size": [448, 448], "patch_size": [14, 14],
                          "attention_bias": True, "use_qk_norm": False, "norm_type": "layer_norm",
                          "layer_scale_init_value": 0.1, "use_absolute_position_embeddings": True,
                          "hidden_act": "gelu"},
    },
    sources={
        "config": "https://huggingface.co/OpenGVLab/InternVL3-8B-hf/blob/main/config.json (text: InternVL3-8B's "
                  "Qwen2.5-7B llm_config, vocab 151,674; vision: InternViT-300M-448px-V2.5; image_token_id 151667 "
                  "and the key renames from " + CONVERTER + "; not re-checked against a stored copy of the file)",
        "preprocessor": "https://huggingface.co/OpenGVLab/InternVL3-8B-hf/blob/main/preprocessor_config.json "
                        "(GotOcr2ImageProcessor 448x448, ImageNet mean/std, as written by " + CONVERTER + "; "
                        "crop_to_patches on with min 1 / max 12 tiles: InternVLProcessor's defaults)",
        "processor": CONVERTER + " (InternVLProcessor, image_seq_length 256)",
        "tokens": CONVERTER + " (write_tokenizer: Qwen2.5-VL-7B-Instruct's tokenizer + <img>, </img>, "
                              "<IMG_CONTEXT>, <quad>, </quad>, <ref>, </ref>, <box>, </box>)",
        "chat_template": CONVERTER + " (chat_template: ChatML, images as '<IMG_CONTEXT>\\n', no default system "
                                     "turn; the original remote-code InternVL3 prompt has a default Chinese system "
                                     "prompt, the -hf template does not)",
    },
    facts=(
        Fact("config.text_config.num_hidden_layers", 28, "config"),
        Fact("config.text_config.num_attention_heads", 28, "config"),
        Fact("config.text_config.num_key_value_heads", 4, "config"),
        Fact("config.text_config.hidden_size", 3584, "config"),
        Fact("config.text_config.intermediate_size", 18944, "config"),
        Fact("config.text_config.vocab_size", 151674, "config"),
        Fact("config.text_config.rope_parameters.rope_theta", 1000000.0, "config"),
        Fact("config.image_token_id", 151667, "config"),
        Fact("config.image_seq_length", 256, "config"),
        Fact("config.downsample_ratio", 0.5, "config"),
        Fact("config.vision_feature_layer", -1, "config"),
        Fact("config.tie_word_embeddings", False, "config"),
        Fact("config.text_config.tie_word_embeddings", False, "config"),
        Fact("config.vision_config.hidden_size", 1024, "config"),
        Fact("config.vision_config.num_hidden_layers", 24, "config"),
        Fact("config.vision_config.num_attention_heads", 16, "config"),
        Fact("config.vision_config.intermediate_size", 4096, "config"),
        Fact("config.vision_config.image_size", [448, 448], "config"),
        Fact("config.vision_config.patch_size", [14, 14], "config"),
        Fact("image_processor.size", {"height": 448, "width": 448}, "preprocessor"),
        Fact("image_processor.image_mean", IMAGENET_MEAN, "preprocessor"),
        Fact("image_processor.image_std", IMAGENET_STD, "preprocessor"),
        Fact("image_processor.min_patches", 1, "preprocessor"),
        Fact("image_processor.max_patches", 12, "preprocessor"),
        Fact("processor.image_seq_length", 256, "processor"),
        Fact("attention.head_dim", 128, "config", "hidden_size / num_attention_heads"),
        *(Fact(f"token:{t}", i, "tokens") for t, i in INTERNVL_SPECIAL.items()),
    ),
    cuts=(
        Cut("config.text_config.num_hidden_layers", 28, 2, "depth"),
        Cut("config.text_config.intermediate_size", 18944, 256, "MLP width"),
        Cut("config.vision_config.num_hidden_layers", 24, 1, "depth"),
        Cut("config.vision_config.intermediate_size", 4096, 64, "vision MLP width"),
        Cut("config.tie_word_embeddings", False, True, "one embedding table instead of two"),
        Cut("config.text_config.tie_word_embeddings", False, True, "(the same, on the text config)"),
    ),
    make_processor=_processor,
    prompt="<|im_start|>user\n<IMG_CONTEXT>\n{question}<|im_end|>\n<|im_start|>assistant\n",
    system_prompt=None,
    system_turn="<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n<IMG_CONTEXT>\n{question}<|im_end|>\n"
                "<|im_start|>assistant\n",
    strip_tokens=7 * 256,
    strip_note="the 384x64 strip (aspect 6) is closest to the 6x1 tiling (at most 12 tiles of 448 px): 6 tiles "
               "+ a thumbnail, each 32x32 patches pixel-unshuffled to 16x16 = 256 tokens: 7 x 256 = 1792",
    kept=("28 heads x 4 KV heads x head_dim 128, hidden 3584", "RoPE theta 1e6", "vocab 151,674; <IMG_CONTEXT> 151667",
          "InternViT width 1024 at 448 px, patch 14, pixel unshuffle 0.5 -> 256 tokens a tile",
          "1..12 tiles + thumbnail, ImageNet mean/std", "ChatML, no default system turn (the -hf template)"),
)

REPLICAS = (INTERNVL,)
