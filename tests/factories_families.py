"""Tiny randomly initialised VLMs of every supported family, with processors, built in code.

No downloads: tokenizers are word-level `tokenizers` objects over the words of the prompts,
configs are a few dozen parameters wide, vision towers one layer deep. Each builder returns
(model, processor); `isolate_patches(model)` removes all mixing between image patches inside
the vision tower (zeroes the attention output projections) so geometry can be proven.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from torch import nn
from transformers import PreTrainedTokenizerFast

from gazeheads import prompts

FAMILIES = ["llava", "llava_next", "llava_onevision", "internvl", "gemma3", "idefics3", "smolvlm"]

_BASE_SPECIAL = ["<pad>", "<eos>", "<bos>", "<|user|>", "<|assistant|>"]


def _words() -> list[str]:
    texts = [prompts.discovery_question(k, n) for n in (2, 3, 4, 6) for k in range(1, n + 1)]
    texts += [prompts.VQA_QUESTION, prompts.NARRATION_QUESTION, prompts.SCENE_QUESTION,
              "user assistant system model here is the original image and are some crops to help you see better "
              "Frame red green blue cat dog box a is ."]
    words = set()
    for text in texts:
        for word, _ in pre_tokenizers.Whitespace().pre_tokenize_str(text):
            words.add(word)
    return sorted(words)


def make_tokenizer(image_tokens: list[str], named: dict[str, str] | None = None,
                   template_image: str = "<image>") -> PreTrainedTokenizerFast:
    """Word-level tokenizer with the family's image tokens as special tokens and a chat template.

    `template_image` is what the chat template writes for an image part of a message.
    """
    special = _BASE_SPECIAL + [t for t in image_tokens if t not in _BASE_SPECIAL]
    vocab = {tok: i for i, tok in enumerate(special + ["[UNK]"] + _words())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<eos>", pad_token="<pad>",
                                   bos_token="<bos>", extra_special_tokens=dict(named or {}))
    fast.add_special_tokens({"additional_special_tokens": special[3:]}, replace_extra_special_tokens=False)
    fast.chat_template = (
        "{% for message in messages %}{{ '<|' + message['role'] + '|>' }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for part in message['content'] %}{% if part['type'] == 'image' %}" + template_image +
        "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    return fast


def _text(vocab: int, layers: int, heads: int, kv_heads: int, **extra) -> dict:
    return dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=16,
                max_position_embeddings=4096, **extra)


# families ---------------------------------------------------------------------------------


def make_llava(*, layers=2, heads=4, kv_heads=2, seed=0, attn="sdpa", pad_to_square=True, crop=64, size=None):
    """LLaVA-1.5: CLIP patch 8 at `crop` px; shortest edge resized to `size` (default crop), center-cropped.

    `pad_to_square` pads the image to a square first (LlavaImageProcessor do_pad), so strips survive the crop.
    """
    import transformers as tf

    tokenizer = make_tokenizer(["<image>"])
    torch.manual_seed(seed)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=crop, patch_size=8, projection_dim=32)
    config = tf.LlavaConfig(vision_config=tf.CLIPVisionConfig(**vision),
                            text_config=tf.LlamaConfig(**_text(len(tokenizer), layers, heads, kv_heads)),
                            image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                            vision_feature_layer=-1, vision_feature_select_strategy="default")
    image_proc = tf.LlavaImageProcessor(size={"shortest_edge": size or crop}, crop_size={"height": crop, "width": crop},
                                        do_pad=pad_to_square)
    processor = tf.LlavaProcessor(image_processor=image_proc, tokenizer=tokenizer, patch_size=8,
                                  vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                  chat_template=tokenizer.chat_template)
    model = tf.LlavaForConditionalGeneration._from_config(config, attn_implementation=attn).eval()
    return model, processor


def make_llava_next(*, layers=2, heads=4, kv_heads=2, seed=0, attn="sdpa", tile=32,
                    pinpoints=((32, 64), (64, 32), (64, 64), (32, 96), (96, 32))):
    """LLaVA-NeXT: CLIP patch 8, `tile`-px base image and tiles, anyres pinpoints, newline tokens."""
    import transformers as tf

    tokenizer = make_tokenizer(["<image>"])
    torch.manual_seed(seed)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=tile, patch_size=8, projection_dim=32)
    pinpoints = [list(p) for p in pinpoints]
    config = tf.LlavaNextConfig(vision_config=tf.CLIPVisionConfig(**vision),
                                text_config=tf.LlamaConfig(**_text(len(tokenizer), layers, heads, kv_heads)),
                                image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                                image_grid_pinpoints=pinpoints, vision_feature_layer=-1,
                                vision_feature_select_strategy="default")
    image_proc = tf.LlavaNextImageProcessor(size={"shortest_edge": tile}, crop_size={"height": tile, "width": tile},
                                            image_grid_pinpoints=pinpoints)
    processor = tf.LlavaNextProcessor(image_processor=image_proc, tokenizer=tokenizer, patch_size=8,
                                      vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                      chat_template=tokenizer.chat_template)
    model = tf.LlavaNextForConditionalGeneration._from_config(config, attn_implementation=attn).eval()
    return model, processor


def make_llava_onevision(*, layers=2, heads=4, kv_heads=2, seed=0, attn="sdpa", tile=32,
                         aspect_ratio="anyres_max_9",
                         pinpoints=((32, 32), (32, 64), (64, 32), (64, 64), (32, 96), (96, 32))):
    """LLaVA-OneVision: SigLIP patch 8 (no CLS, 'full'), `tile`-px base and tiles, unpadding, newlines."""
    import transformers as tf

    tokenizer = make_tokenizer(["<image>", "<video>"])
    torch.manual_seed(seed)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=tile, patch_size=8)
    pinpoints = [list(p) for p in pinpoints]
    config = tf.LlavaOnevisionConfig(vision_config=tf.SiglipVisionConfig(**vision),
                                     text_config=tf.Qwen2Config(**_text(len(tokenizer), layers, heads, kv_heads)),
                                     image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                                     video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
                                     image_grid_pinpoints=pinpoints, vision_feature_layer=-1,
                                     vision_feature_select_strategy="full", vision_aspect_ratio=aspect_ratio)
    image_proc = tf.LlavaOnevisionImageProcessor(size={"height": tile, "width": tile}, image_grid_pinpoints=pinpoints)
    processor = tf.LlavaOnevisionProcessor(image_processor=image_proc, tokenizer=tokenizer,
                                           video_processor=tf.LlavaOnevisionVideoProcessor(),
                                           num_image_tokens=(tile // 8) ** 2, vision_feature_select_strategy="full",
                                           vision_aspect_ratio=aspect_ratio, chat_template=tokenizer.chat_template)
    model = tf.LlavaOnevisionForConditionalGeneration._from_config(config, attn_implementation=attn).eval()
    return model, processor


def make_internvl(*, layers=2, heads=4, kv_heads=2, seed=0, attn="sdpa", tile=32, max_patches=6):
    """InternVL (HF-native): patch 4 at `tile` px, pixel unshuffle 0.5 -> (tile/8)^2 tokens a tile, plus a thumbnail."""
    import transformers as tf

    named = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
             "video_token": "<video>"}
    tokenizer = make_tokenizer(list(named.values()), named, template_image="<IMG_CONTEXT>")
    torch.manual_seed(seed)
    vision = tf.InternVLVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=[tile, tile], patch_size=[4, 4])
    config = tf.InternVLConfig(vision_config=vision,
                               text_config=tf.Qwen2Config(**_text(len(tokenizer), layers, heads, kv_heads)),
                               image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
                               image_seq_length=(tile // 8) ** 2)
    image_proc = tf.GotOcr2ImageProcessor(size={"height": tile, "width": tile}, crop_to_patches=True,
                                          max_patches=max_patches)
    processor = tf.InternVLProcessor(image_processor=image_proc, tokenizer=tokenizer,
                                     video_processor=tf.InternVLVideoProcessor(),
                                     image_seq_length=(tile // 8) ** 2, chat_template=tokenizer.chat_template)
    model = tf.InternVLForConditionalGeneration._from_config(config, attn_implementation=attn).eval()
    return model, processor


def make_gemma3(*, layers=2, heads=4, kv_heads=2, seed=0, attn="sdpa", size=32, pan_and_scan=False,
                sliding_window=4096, layer_types=None):
    """Gemma 3: SigLIP patch 4 at `size` px, pooled 2x2 to 4x4 = 16 tokens; optional pan-and-scan crops.

    A `sliding_window` shorter than the prompt makes the sliding layers' cache drop keys."""
    import transformers as tf

    named = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tokenizer = make_tokenizer(list(named.values()), named, template_image="<start_of_image>")
    torch.manual_seed(seed)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=size, patch_size=4)
    text = _text(len(tokenizer), layers, heads, kv_heads, query_pre_attn_scalar=16, sliding_window=sliding_window,
                 layer_types=layer_types,
                 pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                 eos_token_id=tokenizer.eos_token_id)
    config = tf.Gemma3Config(vision_config=tf.SiglipVisionConfig(**vision), text_config=tf.Gemma3TextConfig(**text),
                             mm_tokens_per_image=16,
                             boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
                             eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
                             image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"))
    image_proc = tf.Gemma3ImageProcessor(size={"height": size, "width": size})
    processor = tf.Gemma3Processor(image_processor=image_proc, tokenizer=tokenizer, image_seq_length=16,
                                   chat_template=tokenizer.chat_template)
    if pan_and_scan:
        processor.images_kwargs = dict(processor.images_kwargs, do_pan_and_scan=True, pan_and_scan_min_crop_size=16)
    model = tf.Gemma3ForConditionalGeneration._from_config(config, attn_implementation=attn).eval()
    with torch.no_grad():  # the projection starts at zero: give image features a signal
        projector = model.model.multi_modal_projector
        projector.mm_input_projection_weight.normal_(0, 0.2)
    return model, processor


def _idefics_tokenizer():
    markers = [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    named = {"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
             "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"}
    return make_tokenizer(list(named.values()) + markers, named)


def make_idefics3(*, layers=2, heads=4, kv_heads=2, seed=0, attn="sdpa", tile=32, longest=96, smol=False):
    """Idefics3 (or SmolVLM with `smol`): patch 4 at `tile` px, pixel shuffle 2 -> 16 tokens a tile;
    the image is resized to `longest` px, split into tiles, plus a global image."""
    import transformers as tf

    tokenizer = _idefics_tokenizer()
    torch.manual_seed(seed)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=tile, patch_size=4)
    text = tf.LlamaConfig(**_text(len(tokenizer), layers, heads, kv_heads))
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    seq = (tile // 4 // 2) ** 2
    proc_kwargs = dict(size={"longest_edge": longest}, max_image_size={"longest_edge": tile})
    if smol:
        config = tf.SmolVLMConfig(vision_config=tf.SmolVLMVisionConfig(**vision), text_config=text,
                                  image_token_id=image_id, scale_factor=2)
        image_proc = tf.SmolVLMImageProcessor(**proc_kwargs)
        try:
            processor = tf.SmolVLMProcessor(image_processor=image_proc, tokenizer=tokenizer,
                                            video_processor=tf.SmolVLMVideoProcessor(), image_seq_len=seq,
                                            chat_template=tokenizer.chat_template)
        except ImportError:  # SmolVLMProcessor wants num2words (for video timestamps only); same image prompt
            processor = tf.Idefics3Processor(image_processor=image_proc, tokenizer=tokenizer, image_seq_len=seq,
                                             chat_template=tokenizer.chat_template)
        model_cls = tf.SmolVLMForConditionalGeneration
    else:
        config = tf.Idefics3Config(vision_config=tf.Idefics3VisionConfig(**vision), text_config=text,
                                   image_token_id=image_id, scale_factor=2)
        image_proc = tf.Idefics3ImageProcessor(**proc_kwargs)
        processor = tf.Idefics3Processor(image_processor=image_proc, tokenizer=tokenizer, image_seq_len=seq,
                                         chat_template=tokenizer.chat_template)
        model_cls = tf.Idefics3ForConditionalGeneration
    model = model_cls._from_config(config, attn_implementation=attn).eval()
    return model, processor


def make_family(family: str, **kwargs):
    """(model, processor) for one of FAMILIES."""
    builders = {"llava": make_llava, "llava_next": make_llava_next, "llava_onevision": make_llava_onevision,
                "internvl": make_internvl, "gemma3": make_gemma3, "idefics3": make_idefics3,
                "smolvlm": lambda **kw: make_idefics3(smol=True, **kw)}
    return builders[family](**kwargs)


# patch isolation ----------------------------------------------------------------------------------

_OUTPUT_PROJECTIONS = ("out_proj", "o_proj", "projection_layer", "proj")


def vision_tower(model: nn.Module) -> nn.Module:
    base = model.model
    for name in ("vision_tower", "vision_model"):
        if hasattr(base, name):
            return getattr(base, name)
    raise AttributeError(type(model).__name__)


def isolate_patches(model: nn.Module) -> int:
    """Zero the output projection of every vision attention layer: patches no longer exchange
    information, each image patch's features depend on its own pixels only. Returns how many."""
    count = 0
    for module in vision_tower(model).modules():
        if type(module).__name__.endswith("Attention"):
            for name in _OUTPUT_PROJECTIONS:
                proj = getattr(module, name, None)
                if isinstance(proj, nn.Linear):
                    with torch.no_grad():
                        proj.weight.zero_()
                        if proj.bias is not None:
                            proj.bias.zero_()
                    count += 1
                    break
    return count
