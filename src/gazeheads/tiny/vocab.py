"""The closed word vocabulary of the tiny model and its `tokenizers` word-level tokenizer.

The vocabulary covers every prompt in :mod:`gazeheads.prompts` (for strips of 2 to 20
panels), the tiny model's own panel-by-panel narration prompt, the chat roles and every
answer word. Text is lowercased and split on whitespace and punctuation; an unknown word maps
to ``<|unk|>``. The special tokens are those of Qwen-VL, so the Qwen3-VL processor and model
find their image tokens by the usual names.
"""

from __future__ import annotations

import re

from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers

from .. import prompts, synth

# The tiny model's narration prompt: answered with every caption in order, " . " between them.
NARRATE_PROMPT = "Narrate this comic strip panel by panel."
CAPTION_SEPARATOR = "."
PANEL_WORD = "panel"  # a counted narration's segments start "<ordinal> panel"
# The largest-object scene question in words of its own (task `scene_main`), so that a recipe can
# teach scenes while leaving `prompts.SCENE_QUESTION` (the box-steering prompt) untrained.
SCENE_MAIN_QUESTION = "What is the main event in this picture?"

UNK = "<|unk|>"
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    UNK,
)
MAX_PANELS = 20

# Qwen-style chat template: roles between <|im_start|> and <|im_end|>, images as
# <|vision_start|><|image_pad|><|vision_end|> (the processor expands the pad to the grid).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' or 'image' in item or 'image_url' in item %}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """How the tokenizer splits text (lowercased words and single punctuation marks)."""
    return _WORD.findall(text.lower())


def corpus() -> list[str]:
    """Every text the vocabulary must cover."""
    texts = [prompts.VQA_QUESTION, prompts.NARRATION_QUESTION, prompts.SCENE_QUESTION, NARRATE_PROMPT,
             SCENE_MAIN_QUESTION]
    for n in range(2, MAX_PANELS + 1):
        texts += [prompts.discovery_question(k, n) for k in range(1, n + 1)]
    texts += ["system user assistant", CAPTION_SEPARATOR]
    texts += [synth.caption(c, s) for c in synth.COLOURS for s in synth.SHAPES]
    texts += list(prompts.NUMBER_WORDS.values())
    return texts


def vocabulary() -> dict[str, int]:
    """Token -> id: the special tokens first, then the words in sorted order."""
    found = sorted({w for text in corpus() for w in words(text)})
    return {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *found])}


def build_tokenizer() -> Tokenizer:
    """The word-level `tokenizers.Tokenizer` (special tokens are neither lowercased nor split)."""
    tok = Tokenizer(models.WordLevel(vocab=vocabulary(), unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")]
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok
