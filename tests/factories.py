"""Tiny randomly initialised Qwen-VL models and processors, built in code (no downloads)."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
from transformers import PreTrainedTokenizerFast

from gazeheads import prompts

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tokenizer() -> PreTrainedTokenizerFast:
    words = set()
    texts = [prompts.discovery_question(k, n) for n in (2, 3, 4, 6) for k in range(1, n + 1)]
    texts += [prompts.VQA_QUESTION, prompts.NARRATION_QUESTION, prompts.SCENE_QUESTION,
              "user assistant system red green blue cat dog box a the is ."]
    for text in texts:
        for word, _ in pre_tokenizers.Whitespace().pre_tokenize_str(text):
            words.add(word)
    vocab = {tok: i for i, tok in enumerate(SPECIAL + ["[UNK]", "\n"] + sorted(words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")
    fast.add_special_tokens({"additional_special_tokens": SPECIAL[1:]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _text_config(vocab: int, layers: int, heads: int, kv_heads: int, **extra) -> dict:
    return dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=16,
                rope_theta=100.0, max_position_embeddings=2048, **extra)


def make_qwen(family: str = "qwen3_vl", *, layers: int = 2, heads: int = 4, kv_heads: int = 2,
              seed: int = 0, attn: str = "sdpa"):
    """Return (model, processor) for 'qwen3_vl', 'qwen2_5_vl' or 'qwen2_vl'."""
    import transformers as tf

    tokenizer = make_tokenizer()
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIAL}
    torch.manual_seed(seed)
    common = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    vocab = len(tokenizer)
    if family == "qwen3_vl":
        patch = 16
        text = _text_config(vocab, layers, heads, kv_heads,
                            rope_scaling={"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True})
        vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                      patch_size=patch, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                      deepstack_visual_indexes=[0])
        config = tf.Qwen3VLConfig(text_config=text, vision_config=vision, **common)
        model_cls, proc_cls = tf.Qwen3VLForConditionalGeneration, tf.Qwen3VLProcessor
        video_proc = tf.Qwen3VLVideoProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2)
    elif family in ("qwen2_5_vl", "qwen2_vl"):
        patch = 14
        text = _text_config(vocab, layers, heads, kv_heads,
                            rope_scaling={"rope_type": "default", "mrope_section": [2, 3, 3]})
        if family == "qwen2_5_vl":
            vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                          patch_size=patch, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                          fullatt_block_indexes=[0])
            config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)
            model_cls, proc_cls = tf.Qwen2_5_VLForConditionalGeneration, tf.Qwen2_5_VLProcessor
        else:
            vision = dict(depth=1, embed_dim=32, mlp_ratio=2, num_heads=2, hidden_size=64,
                          patch_size=patch, spatial_merge_size=2, temporal_patch_size=2)
            config = tf.Qwen2VLConfig(text_config=text, vision_config=vision, **common)
            model_cls, proc_cls = tf.Qwen2VLForConditionalGeneration, tf.Qwen2VLProcessor
        video_proc = tf.Qwen2VLVideoProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2)
    else:
        raise ValueError(family)
    factor = patch * 2
    image_proc = tf.Qwen2VLImageProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2,
                                          size={"shortest_edge": factor * factor, "longest_edge": factor * factor * 400})
    processor = proc_cls(image_processor=image_proc, tokenizer=tokenizer, video_processor=video_proc,
                         chat_template=CHAT_TEMPLATE)
    model = model_cls._from_config(config, attn_implementation=attn).eval()
    return model, processor


def save_qwen(folder, family: str = "qwen3_vl", **kwargs):
    """Build a tiny model with `make_qwen` and save it with its processor as a model folder."""
    model, processor = make_qwen(family, **kwargs)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def tiny_synthetic_gazemodel(seed: int = 3):
    """A random 2-layer x 8-head Qwen3-VL wrapped as a GazeModel with the bundled model's strip layout."""
    import gazeheads as gh
    from gazeheads.layout import ModelLayout, StripLayout

    model, processor = make_qwen("qwen3_vl", layers=2, heads=8, kv_heads=4, seed=seed)
    return gh.GazeModel(model, processor, name="tiny-random",
                        layout=ModelLayout(strip=StripLayout(height=64, gap=0), synthetic=True))
