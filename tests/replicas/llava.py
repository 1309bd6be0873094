"""LLaVA replicas: llava-1.5-7b-hf, llava-v1.6-mistral-7b-hf (LLaVA-NeXT), llava-onevision-qwen2-7b-ov-hf."""

from __future__ import annotations

from .core import Cut, Fact, Replica, word_level_tokenizer

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]

# CLIP ViT-L/14-336, as both LLaVA-1.5 and LLaVA-NeXT config.json spell it out.
CLIP_L_336 = {
    "model_type": "clip_vision_model", "hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
    "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768, "vocab_size": 32000,
}
LLAMA_SPECIAL = {"<unk>": 0, "<s>": 1, "</s>": 2, "<image>": 32000, "<pad>": 32001}


def _clip_facts(source: str) -> tuple[Fact, ...]:
    return (
        Fact("config.vision_config.hidden_size", 1024, source),
        Fact("config.vision_config.num_hidden_layers", 24, source),
        Fact("config.vision_config.num_attention_heads", 16, source),
        Fact("config.vision_config.intermediate_size", 4096, source),
        Fact("config.vision_config.image_size", 336, source),
        Fact("config.vision_config.patch_size", 14, source),
        Fact("config.vision_config.projection_dim", 768, source),
        Fact("config.vision_feature_layer", -2, source),
        Fact("config.vision_feature_select_strategy", "default", source),
    )


_CLIP_CUTS = (
    Cut("config.vision_config.num_hidden_layers", 24, 2, "depth (2: the features are read at layer -2)"),
    Cut("config.vision_config.intermediate_size", 4096, 64, "vision MLP width"),
)


def _llama_tokenizer(template: str):
    return word_level_tokenizer(LLAMA_SPECIAL, bos="<s>", eos="</s>", pad="<pad>", named={"image_token": "<image>"},
                                chat_template=template)


# --- llava-hf/llava-1.5-7b-hf ------------------------------------------------------------------

LLAVA_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] != 'system' %}{{ m['role'].upper() + ': ' }}{% endif %}"
    "{% for part in m['content'] %}{% if part['type'] == 'image' %}{{ '<image>\\n' }}{% endif %}{% endfor %}"
    "{% for part in m['content'] %}{% if part['type'] == 'text' %}{{ part['text'] + ' ' }}{% endif %}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def _llava_processor():
    import transformers as tf

    image = tf.CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                  do_center_crop=True, resample=3, image_mean=CLIP_MEAN, image_std=CLIP_STD)
    return tf.LlavaProcessor(image_processor=image, tokenizer=_llama_tokenizer(LLAVA_TEMPLATE), patch_size=14,
                             vision_feature_select_strategy="default", num_additional_image_tokens=1,
                             chat_template=LLAVA_TEMPLATE)


LLAVA = Replica(
    name="llava",
    checkpoint="llava-hf/llava-1.5-7b-hf",
    model_class="LlavaForConditionalGeneration",
    config_class="LlavaConfig",
    config={
        "image_token_index": 32000, "pad_token_id": 32001, "projector_hidden_act": "gelu",
        "tie_word_embeddings": False, "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
        "text_config": {"model_type": "llama", "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
                        "vocab_size": 32064},
        "vision_config": CLIP_L_336,
    },
    sources={
        "config": "https://huggingface.co/llava-hf/llava-1.5-7b-hf/blob/main/config.json (checked against the "
                  "copy https://huggingface.co/mohitsha/llava-1.5-7b-hf/blob/main/config.json); its text_config "
                  "names only vocab 32064, max_position 4096 and rms_norm_eps, so the language model's shape is "
                  "transformers' LlamaConfig default (Llama-2-7B / vicuna-7b-v1.5: 32 layers x 32 heads, "
                  "hidden 4096, MLP 11008, rope_theta 10000)",
        "preprocessor": "https://huggingface.co/llava-hf/llava-1.5-7b-hf/blob/main/preprocessor_config.json "
                        "(CLIPImageProcessor: shortest edge 336, center crop 336, resample 3, CLIP mean/std; "
                        "checked against https://huggingface.co/HuggingFaceH4/sft-llava-1.5-7b-hf/blob/"
                        "1d02f81dc23db0434a119df252bf7a755b3f318f/preprocessor_config.json)",
        "processor": "https://huggingface.co/llava-hf/llava-1.5-7b-hf/blob/main/processor_config.json "
                     "(patch_size 14, vision_feature_select_strategy default, num_additional_image_tokens 1)",
        "tokens": "https://huggingface.co/llava-hf/llava-1.5-7b-hf/blob/main/tokenizer_config.json "
                  "(<unk> 0, <s> 1, </s> 2, <image> 32000, <pad> 32001; checked against the copy "
                  "https://huggingface.co/therem/llava-1.5-7b-CLEAR-forget-DPO/blob/main/tokenizer_config.json)",
        "chat_template": "https://huggingface.co/llava-hf/llava-1.5-7b-hf/blob/main/chat_template.json (checked "
                         "against the duplicate https://huggingface.co/FriendliAI/llava-1.5-7b-hf/blob/main/"
                         "chat_template.json): images first, then text + ' ', 'ASSISTANT:'; no default system turn",
    },
    facts=(
        Fact("config.text_config.num_hidden_layers", 32, "config", "LlamaConfig default"),
        Fact("config.text_config.num_attention_heads", 32, "config", "LlamaConfig default"),
        Fact("config.text_config.num_key_value_heads", 32, "config", "LlamaConfig default (= heads)"),
        Fact("config.text_config.hidden_size", 4096, "config", "LlamaConfig default"),
        Fact("config.text_config.intermediate_size", 11008, "config", "LlamaConfig default"),
        Fact("config.text_config.vocab_size", 32064, "config"),
        Fact("config.text_config.max_position_embeddings", 4096, "config"),
        Fact("config.text_config.rope_parameters.rope_type", "default", "config", "LlamaConfig default"),
        Fact("config.text_config.rope_parameters.rope_theta", 10000.0, "config", "LlamaConfig default"),
        Fact("config.image_token_id", 32000, "config", "image_token_index in config.json"),
        Fact("config.tie_word_embeddings", False, "config"),
        *_clip_facts("config"),
        Fact("image_processor.size", {"shortest_edge": 336}, "preprocessor"),
        Fact("image_processor.crop_size", {"height": 336, "width": 336}, "preprocessor"),
        Fact("image_processor.do_center_crop", True, "preprocessor"),
        Fact("image_processor.resample", 3, "preprocessor"),
        Fact("image_processor.image_mean", CLIP_MEAN, "preprocessor"),
        Fact("image_processor.image_std", CLIP_STD, "preprocessor"),
        Fact("processor.patch_size", 14, "processor"),
        Fact("processor.num_additional_image_tokens", 1, "processor"),
        Fact("processor.vision_feature_select_strategy", "default", "processor"),
        Fact("attention.head_dim", 128, "config", "hidden_size / num_attention_heads"),
        *(Fact(f"token:{t}", i, "tokens") for t, i in LLAMA_SPECIAL.items()),
    ),
    cuts=(
        Cut("config.text_config.num_hidden_layers", 32, 2, "depth"),
        Cut("config.text_config.intermediate_size", 11008, 256, "MLP width"),
        *_CLIP_CUTS,
        Cut("config.tie_word_embeddings", False, True, "one embedding table instead of two"),
    ),
    make_processor=_llava_processor,
    prompt="USER: <image>\n{question} ASSISTANT:",
    system_prompt=None,
    system_turn="{system} USER: <image>\n{question} ASSISTANT:",
    strip_tokens=576,
    strip_note="(336 / 14)^2 = 576 patch tokens (the CLS token is dropped by the 'default' strategy); the "
               "shortest edge goes to 336 px and the center crop keeps the middle 336x336 px: of a 384x64 strip "
               "the model sees only x = 160..224 (the right half of panel 3 and the left half of panel 4)",
    kept=("32 heads (MHA) x head_dim 128, hidden 4096 (LlamaConfig defaults, as loading the checkpoint gives)",
          "RoPE theta 10000", "vocab 32,064; <image> 32000, <pad> 32001", "CLIP-L/14 at 336 px, layer -2, 576 tokens",
          "shortest edge 336 + center crop 336, no padding (the published processor)", "USER:/ASSISTANT: template"),
)

# --- llava-hf/llava-v1.6-mistral-7b-hf (LLaVA-NeXT) -------------------------------------------

NEXT_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
NEXT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ '<<SYS>>\\n' + m['content'][0]['text'] + '\\n<</SYS>>\\n\\n' }}"
    "{% elif m['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for part in m['content'] %}{% if part['type'] == 'image' %}{{ '<image>\\n' }}{% endif %}{% endfor %}"
    "{% for part in m['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{{ ' [/INST]' }}{% else %}{{ ' ' + m['content'][0]['text'] + '</s> ' }}{% endif %}{% endfor %}"
)


def _next_processor():
    import transformers as tf

    image = tf.LlavaNextImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336},
                                       image_grid_pinpoints=NEXT_PINPOINTS, do_center_crop=True, do_pad=True,
                                       resample=3, image_mean=CLIP_MEAN, image_std=CLIP_STD)
    return tf.LlavaNextProcessor(image_processor=image, tokenizer=_llama_tokenizer(NEXT_TEMPLATE), patch_size=14,
                                 vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                 chat_template=NEXT_TEMPLATE)


LLAVA_NEXT = Replica(
    name="llava_next",
    checkpoint="llava-hf/llava-v1.6-mistral-7b-hf",
    model_class="LlavaNextForConditionalGeneration",
    config_class="LlavaNextConfig",
    config={
        "image_grid_pinpoints": NEXT_PINPOINTS, "image_token_index": 32000, "projector_hidden_act": "gelu",
        "tie_word_embeddings": False, "use_image_newline_parameter": True, "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "text_config": {"model_type": "mistral", "intermediate_size": 14336, "max_position_embeddings": 32768,
                        "num_key_value_heads": 8, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0,
                        "sliding_window": None, "vocab_size": 32064},
        "vision_config": CLIP_L_336,
    },
    sources={
        "config": "https://huggingface.co/llava-hf/llava-v1.6-mistral-7b-hf/blob/main/config.json (checked "
                  "against the copies https://huggingface.co/Ayush374/quantised_llava/blob/main/config.json and "
                  "https://huggingface.co/zhenxuan/llava-v1.6-mistral-7b-awq/blob/main/config.json); its "
                  "text_config (Mistral-7B-Instruct-v0.2) names MLP 14336, 8 KV heads, theta 1e6, vocab 32064, "
                  "so layers/heads/hidden are MistralConfig defaults (32 x 32, hidden 4096)",
        "preprocessor": "https://huggingface.co/llava-hf/llava-v1.6-mistral-7b-hf/blob/main/preprocessor_config.json "
                        "(LlavaNextImageProcessor: shortest edge 336, crop 336, the 5 pinpoints, do_pad, resample 3, "
                        "CLIP mean/std; checked against a stored printout of the loaded processor)",
        "processor": "https://huggingface.co/llava-hf/llava-v1.6-mistral-7b-hf/blob/main/processor_config.json",
        "tokens": "https://huggingface.co/llava-hf/llava-v1.6-mistral-7b-hf/blob/main/added_tokens.json "
                  "(<image> 32000, <pad> 32001; stored page checked) and the Mistral tokenizer "
                  "(<unk> 0, <s> 1, </s> 2)",
        "chat_template": "https://huggingface.co/llava-hf/llava-v1.6-mistral-7b-hf/blob/main/chat_template.json "
                         "('[INST] ' + '<image>\\n' per image + text + ' [/INST]'; system turn as <<SYS>>; checked "
                         "against stored copies, e.g. vLLM's chat-template test table)",
    },
    facts=(
        Fact("config.text_config.num_hidden_layers", 32, "config", "MistralConfig default"),
        Fact("config.text_config.num_attention_heads", 32, "config", "MistralConfig default"),
        Fact("config.text_config.num_key_value_heads", 8, "config"),
        Fact("config.text_config.hidden_size", 4096, "config", "MistralConfig default"),
        Fact("config.text_config.intermediate_size", 14336, "config"),
        Fact("config.text_config.vocab_size", 32064, "config"),
        Fact("config.text_config.max_position_embeddings", 32768, "config"),
        Fact("config.text_config.rope_parameters.rope_theta", 1000000.0, "config"),
        Fact("config.text_config.sliding_window", None, "config"),
        Fact("config.image_token_id", 32000, "config", "image_token_index in config.json"),
        Fact("config.image_grid_pinpoints", NEXT_PINPOINTS, "config"),
        Fact("config.tie_word_embeddings", False, "config"),
        *_clip_facts("config"),
        Fact("image_processor.size", {"shortest_edge": 336}, "preprocessor"),
        Fact("image_processor.crop_size", {"height": 336, "width": 336}, "preprocessor"),
        Fact("image_processor.image_grid_pinpoints", NEXT_PINPOINTS, "preprocessor"),
        Fact("image_processor.do_pad", True, "preprocessor"),
        Fact("image_processor.resample", 3, "preprocessor"),
        Fact("image_processor.image_mean", CLIP_MEAN, "preprocessor"),
        Fact("processor.patch_size", 14, "processor"),
        Fact("processor.num_additional_image_tokens", 1, "processor"),
        Fact("attention.head_dim", 128, "config", "hidden_size / num_attention_heads"),
        *(Fact(f"token:{t}", i, "tokens") for t, i in LLAMA_SPECIAL.items()),
    ),
    cuts=(
        Cut("config.text_config.num_hidden_layers", 32, 2, "depth"),
        Cut("config.text_config.intermediate_size", 14336, 256, "MLP width"),
        *_CLIP_CUTS,
        Cut("config.tie_word_embeddings", False, True, "one embedding table instead of two"),
    ),
    make_processor=_next_processor,
    prompt="[INST] <image>\n{question} [/INST]",
    system_prompt=None,
    system_turn="<<SYS>>\n{system}\n<</SYS>>\n\n[INST] <image>\n{question} [/INST]",
    strip_tokens=576 + 8 * 49,
    strip_note="base view (336/14)^2 = 576; the 384x64 strip fits best in the 336x672 (h x w) pinpoint, resized "
               "to 672x112 px and padded to 672x336: 2 tiles of 24x24 features = 24x48, of which unpadding keeps "
               "the 8 rows that show the image, each followed by a newline token: 8 x 49 = 392; 968 in all",
    kept=("32 heads x 8 KV heads x head_dim 128, hidden 4096", "RoPE theta 1e6, no sliding window",
          "vocab 32,064; <image> 32000", "CLIP-L/14 at 336 px, layer -2; the 5 anyres pinpoints, image newline",
          "base 336 px + tiles, padding and unpadding as published", "[INST] template"),
)

# --- llava-hf/llava-onevision-qwen2-7b-ov-hf ---------------------------------------------------

OV_PINPOINTS = [[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)]
OV_SPECIAL = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<image>": 151646,
              "<video>": 151647}
OV_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}"
    "{% for part in m['content'] %}{% if part['type'] == 'image' %}{{ '<image>\\n' }}{% endif %}{% endfor %}"
    "{% for part in m['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{{ '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _ov_processor():
    import transformers as tf

    tokenizer = word_level_tokenizer(OV_SPECIAL, eos="<|im_end|>", pad="<|endoftext|>",
                                     named={"image_token": "<image>", "video_token": "<video>"},
                                     chat_template=OV_TEMPLATE)
    image = tf.LlavaOnevisionImageProcessor(size={"height": 384, "width": 384}, image_grid_pinpoints=OV_PINPOINTS,
                                            do_pad=True, resample=3, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return tf.LlavaOnevisionProcessor(image_processor=image, tokenizer=tokenizer,
                                      video_processor=tf.LlavaOnevisionVideoProcessor(), num_image_tokens=729,
                                      vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9",
                                      chat_template=OV_TEMPLATE)


OV_CONVERTER = ("huggingface/transformers src/transformers/models/llava_onevision/"
                "convert_llava_onevision_weights_to_hf.py (commit 01080c629600d4ff3121446bb4f4a2e240c2cf41), the "
                "script that made the llava-hf checkpoint")

LLAVA_ONEVISION = Replica(
    name="llava_onevision",
    checkpoint="llava-hf/llava-onevision-qwen2-7b-ov-hf",
    model_class="LlavaOnevisionForConditionalGeneration",
    config_class="LlavaOnevisionConfig",
    config={
        "image_token_index": 151646, "video_token_index": 151647, "image_grid_pinpoints": OV_PINPOINTS,
        "projector_hidden_act": "gelu", "tie_word_embeddings": False, "use_image_newline_parameter": True,
        "vision_aspect_ratio": "anyres_max_9", "vision_feature_layer": -1, "vision_feature_select_strategy": "full",
        "text_config": {"model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
                        "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                        "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
                        "bos_token_id": 151643, "eos_token_id": 151645, "vocab_size": 152128},
        "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152, "image_size": 384,
                          "intermediate_size": 4304, "num_attention_heads": 16, "num_hidden_layers": 26,
                          "patch_size": 14, "vision_use_head": False},
    },
    sources={
        "config": "https://huggingface.co/llava-hf/llava-onevision-qwen2-7b-ov-hf/blob/main/config.json (pinpoints "
                  "and image_token_index 151646 checked against the copy https://huggingface.co/mgoin/"
                  "llava-onevision-qwen2-7b-ov-hf-bnb-full-4bit/blob/main/config.json; the vision tower "
                  "(SigLIP-so400m/14-384, 26 layers), num_image_tokens 729, strategy 'full' and the vocabulary "
                  "(Qwen2-7B-Instruct's 152,064 + <image>, <video>, padded to a multiple of 64 = 152,128) from "
                  + OV_CONVERTER + "; the Qwen2-7B-Instruct shape from https://huggingface.co/Qwen/"
                  "Qwen2-7B-Instruct/blob/main/config.json)",
        "preprocessor": "https://huggingface.co/llava-hf/llava-onevision-qwen2-7b-ov-hf/blob/main/"
                        "preprocessor_config.json (384x384 base, the 36 pinpoints 384..2304, do_pad, resample 3, "
                        "mean/std 0.5)",
        "processor": OV_CONVERTER + " (num_image_tokens 729, vision_feature_select_strategy 'full')",
        "tokens": OV_CONVERTER + " (adds <image>, <video> after Qwen2's 151,646 tokens: 151646, 151647)",
        "chat_template": OV_CONVERTER + " (chat_template: '<|im_start|>' + role + '\\n', images as '<image>\\n', "
                                        "text, '<|im_end|>\\n'; no default system turn)",
    },
    facts=(
        Fact("config.text_config.num_hidden_layers", 28, "config"),
        Fact("config.text_config.num_attention_heads", 28, "config"),
        Fact("config.text_config.num_key_value_heads", 4, "config"),
        Fact("config.text_config.hidden_size", 3584, "config"),
        Fact("config.text_config.intermediate_size", 18944, "config"),
        Fact("config.text_config.vocab_size", 152128, "config"),
        Fact("config.text_config.rope_parameters.rope_theta", 1000000.0, "config"),
        Fact("config.image_token_id", 151646, "config", "image_token_index in config.json"),
        Fact("config.video_token_id", 151647, "config", "video_token_index in config.json"),
        Fact("config.image_grid_pinpoints", OV_PINPOINTS, "config"),
        Fact("config.vision_aspect_ratio", "anyres_max_9", "config"),
        Fact("config.vision_feature_layer", -1, "config"),
        Fact("config.vision_feature_select_strategy", "full", "config"),
        Fact("config.tie_word_embeddings", False, "config"),
        Fact("config.vision_config.hidden_size", 1152, "config"),
        Fact("config.vision_config.num_hidden_layers", 26, "config"),
        Fact("config.vision_config.num_attention_heads", 16, "config"),
        Fact("config.vision_config.intermediate_size", 4304, "config"),
        Fact("config.vision_config.image_size", 384, "config"),
        Fact("config.vision_config.patch_size", 14, "config"),
        Fact("image_processor.size", {"height": 384, "width": 384}, "preprocessor"),
        Fact("image_processor.image_grid_pinpoints", OV_PINPOINTS, "preprocessor"),
        Fact("image_processor.do_pad", True, "preprocessor"),
        Fact("image_processor.image_mean", [0.5, 0.5, 0.5], "preprocessor"),
        Fact("processor.num_image_tokens", 729, "processor"),
        Fact("processor.vision_feature_select_strategy", "full", "processor"),
        Fact("processor.vision_aspect_ratio", "anyres_max_9", "processor"),
        Fact("attention.head_dim", 128, "config", "hidden_size / num_attention_heads"),
        *(Fact(f"token:{t}", i, "tokens") for t, i in OV_SPECIAL.items()),
    ),
    cuts=(
        Cut("config.text_config.num_hidden_layers", 28, 2, "depth"),
        Cut("config.text_config.intermediate_size", 18944, 256, "MLP width"),
        Cut("config.vision_config.num_hidden_layers", 26, 1, "depth"),
        Cut("config.vision_config.intermediate_size", 4304, 64, "vision MLP width"),
        Cut("config.tie_word_embeddings", False, True, "one 152,128 x 3584 table instead of two"),
    ),
    make_processor=_ov_processor,
    prompt="<|im_start|>user\n<image>\n{question}<|im_end|>\n<|im_start|>assistant\n",
    system_prompt=None,
    system_turn="<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n<image>\n{question}<|im_end|>\n"
                "<|im_start|>assistant\n",
    strip_tokens=729 + 5 * 28,
    strip_note="base view 27x27 = 729 (SigLIP 384/14; 'full' keeps every patch); the smallest pinpoint, 384x384, "
               "wastes least: one tile of 27x27 features, of which unpadding keeps the 5 rows that show the "
               "384x64 image, each followed by a newline token: 5 x 28 = 140; 869 in all",
    kept=("28 heads x 4 KV heads x head_dim 128, hidden 3584", "RoPE theta 1e6", "vocab 152,128; <image> 151646",
          "SigLIP/14 at 384 px (729 tokens a view), strategy 'full', image newline",
          "the 36 anyres pinpoints, anyres_max_9", "ChatML without a default system turn"),
)

REPLICAS = (LLAVA, LLAVA_NEXT, LLAVA_ONEVISION)
