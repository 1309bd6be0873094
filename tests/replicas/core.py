"""What a replica is, and how one is built without downloading or touching a full vocabulary.

A replica is a model of one family built from the *published configuration of a real
checkpoint* (config.json, preprocessor/processor config, tokenizer special ids, chat
template), with only the parts that cost time and change nothing gazeheads looks at cut:
depth (2 language layers, 1-2 vision layers) and MLP widths. Everything the attention
geometry depends on is kept: query and key/value heads, head_dim, hidden size, RoPE type,
sections and theta, the real vocabulary size and special-token ids, the vision patch,
merge/pooling and tiling rules, and the processor's resize rules.

Building one takes a few seconds: the model is constructed without weight init, the
(real-sized) embedding table lives in anonymous memory that stays zero and unallocated
except for the rows of the tokens the small tokenizer can produce, and every other weight
gets the model's own seeded init.
"""

from __future__ import annotations

import copy
import math
import mmap
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from torch import nn
from transformers import PreTrainedTokenizerFast

from gazeheads import prompts

# --- the published facts -------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    """One published property: `path` into the replica, its published `value`, where it was read.

    Paths start with `config.`, `image_processor.`, `processor.`, `attention.` (the first
    language attention module; attributes, dict keys or list indices, dot-separated) or
    `token:` followed by a token string (its id).
    `source` is a key of the replica's `sources`; `note` says anything a reader must know
    (e.g. that config.json leaves the field out and transformers' default applies).
    """

    path: str
    value: Any
    source: str
    note: str = ""


@dataclass(frozen=True)
class Cut:
    """A deliberate deviation: `path` holds `replica` instead of the published `published`."""

    path: str
    published: Any
    replica: Any
    why: str


# What a replica may change. Anything else must equal the published value.
CUTTABLE = (
    "num_hidden_layers", "depth", "intermediate_size", "mlp_ratio", "tie_word_embeddings", "layer_types",
    "deepstack_visual_indexes", "fullatt_block_indexes",
)


@dataclass(frozen=True)
class Replica:
    """One checkpoint's replica: its facts, its cuts and how to build it.

    `config` is a transcription of the fields of the published config.json that the replica
    needs (before cuts); `make_processor()` returns the processor with the published image
    settings, a small word-level tokenizer keeping the real special-token ids, and a chat
    template written to render like the published one. `prompt` is the published template's
    rendering of gazeheads' standard message (a user turn holding the image, then
    `{question}`), with the image placeholder as the template writes it; `system_turn` the
    rendering when a system message `{system}` comes first (it replaces any default system turn).
    """

    name: str
    checkpoint: str
    model_class: str
    config_class: str
    config: Mapping[str, Any]
    sources: Mapping[str, str]
    facts: tuple[Fact, ...]
    cuts: tuple[Cut, ...]
    make_processor: Callable[[], Any]
    prompt: str
    system_prompt: str | None  # the published template's default system prompt, if any
    system_turn: str  # the rendering with a system message "{system}" before the same user turn
    strip_tokens: int  # image-token ids in the prompt for the standard strip (derivation in `strip_note`)
    strip_note: str
    post_init: Callable[[nn.Module], None] | None = None
    kept: tuple[str, ...] = ()  # what is kept exactly, in a few phrases, for the docs

    def build_config(self):
        import transformers

        config = copy.deepcopy(dict(self.config))
        for cut in self.cuts:
            if not cut.path.startswith("config."):
                raise ValueError(f"{self.name}: cuts apply to the model config only ({cut.path}).")
            _assign(config, cut.path[len("config."):], cut.replica)
        return getattr(transformers, self.config_class)(**config)


def _assign(tree: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def resolve(roots: Mapping[str, Any], path: str):
    """The value at `path` (see :class:`Fact`) under the named roots."""
    if path.startswith("token:"):
        return roots["tokenizer"].convert_tokens_to_ids(path[len("token:"):])
    head, _, rest = path.partition(".")
    value = roots[head]
    for part in rest.split(".") if rest else []:
        if isinstance(value, Mapping):
            value = value[part]
        elif isinstance(value, (list, tuple)) and part.isdigit():
            value = value[int(part)]
        else:
            value = getattr(value, part)
    return value


def same(a, b) -> bool:
    """Published values compare loosely in container type (JSON lists vs tuples, SizeDicts vs dicts)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if hasattr(a, "items") and not isinstance(a, Mapping):
        a = {k: v for k, v in dict(a).items() if v is not None}
    if hasattr(b, "items") and not isinstance(b, Mapping):
        b = {k: v for k, v in dict(b).items() if v is not None}
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


# --- tokenizer ------------------------------------------------------------------------------

WORD_ID_BASE = 1000  # ordinary words get ids from here; every published vocabulary is far larger


def prompt_words(extra: str = "") -> list[str]:
    """The words of gazeheads' prompts (and `extra`, e.g. a default system prompt)."""
    texts = [prompts.discovery_question(k, n) for n in (2, 3, 4, 6) for k in range(1, n + 1)]
    texts += [prompts.VQA_QUESTION, prompts.NARRATION_QUESTION, prompts.SCENE_QUESTION,
              "User Assistant user assistant system model USER ASSISTANT " + extra]
    words: set[str] = set()
    for text in texts:
        words.update(word for word, _ in pre_tokenizers.Whitespace().pre_tokenize_str(text))
    return sorted(words)


def word_level_tokenizer(
    special: Mapping[str, int],
    *,
    bos: str | None = None,
    eos: str | None = None,
    pad: str | None = None,
    named: Mapping[str, str] | None = None,
    extra_words: str = "",
    chat_template: str,
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the prompt words whose special tokens keep their published ids.

    `special` maps each special token to its id in the published tokenizer; `named` gives
    the attributes processors read (e.g. `image_token`). Words get ids from WORD_ID_BASE
    on, skipping the special ids.
    """
    missing = [t for t in [bos, eos, pad, *(named or {}).values()] if t is not None and t not in special]
    if missing:
        raise ValueError(f"Give the published ids of {missing} in `special`.")
    taken = set(special.values())
    vocab = dict(special)
    next_id = WORD_ID_BASE
    for word in ["[UNK]"] + prompt_words(extra_words):
        if word in vocab:
            continue
        while next_id in taken:
            next_id += 1
        vocab[word] = next_id
        taken.add(next_id)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token=bos, eos_token=eos,
                                   pad_token=pad, extra_special_tokens=dict(named or {}))
    fast.add_special_tokens({"additional_special_tokens": [t for t in special if t not in (bos, eos, pad)]},
                            replace_extra_special_tokens=False)
    fast.chat_template = chat_template
    return fast


# --- model ----------------------------------------------------------------------------------


def lazy_zeros(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """A tensor in fresh anonymous memory: zero by the OS's guarantee, and pages it never writes
    cost neither time nor resident memory (a 151,936 x 4096 float32 table is 2.5 GB otherwise)."""
    count = math.prod(shape)
    size = torch.empty((), dtype=dtype).element_size()
    buffer = mmap.mmap(-1, count * size)
    tensor = torch.frombuffer(buffer, dtype=dtype, count=count).view(*shape)
    return tensor


def build_model(replica: Replica, dtype: torch.dtype, token_ids: Sequence[int], seed: int = 0) -> nn.Module:
    """The replica's model in `dtype`: seeded init everywhere, the embedding table real-sized but
    filled only at `token_ids` (the rows a prompt can reach), tied to the LM head.

    Weights are drawn in float32 and rounded to `dtype`, so a bf16 replica is exactly the float32
    one rounded (:func:`cast_model` turns one into the other).
    """
    import transformers
    from transformers.initialization import no_init_weights

    config = replica.build_config()
    model_class = getattr(transformers, replica.model_class)
    with no_init_weights():
        model = model_class._from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    embedding = model.get_input_embeddings()
    table = nn.Parameter(lazy_zeros(tuple(embedding.weight.shape), torch.float32), requires_grad=False)
    table._is_hf_initialized = True  # the model's init leaves it alone
    embedding.weight = table
    model.tie_weights()
    output = model.get_output_embeddings()
    if output is not None and output.weight is not table:
        raise AssertionError(f"{replica.name}: the LM head is not tied to the embedding table.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.initialize_weights()
        ids = torch.tensor(sorted(set(int(i) for i in token_ids)))
        std = config.get_text_config().initializer_range
        with torch.no_grad():
            table[ids] = torch.randn(len(ids), table.shape[1]) * std
        if replica.post_init is not None:
            replica.post_init(model)
    table._replica_rows = ids
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return cast_model(model.eval(), dtype)


def cast_model(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Round a replica's parameters to `dtype` in place (buffers such as RoPE frequencies keep theirs).

    The embedding table moves to a fresh lazy table holding only its filled rows, so the
    untouched part of a 2.5 GB table is never read."""
    embedding = model.get_input_embeddings()
    old = embedding.weight
    if old.dtype == dtype:
        return model
    rows = old._replica_rows
    table = nn.Parameter(lazy_zeros(tuple(old.shape), dtype), requires_grad=False)
    with torch.no_grad():
        table[rows] = old[rows].to(dtype)
    table._replica_rows = rows
    embedding.weight = table
    model.tie_weights()
    for module in model.modules():
        for name, parameter in list(module.named_parameters(recurse=False)):
            if parameter is not table and parameter.is_floating_point() and parameter.dtype != dtype:
                setattr(module, name, nn.Parameter(parameter.detach().to(dtype), requires_grad=False))
    model.config.dtype = dtype
    for key in model.config.sub_configs:
        sub = getattr(model.config, key, None)
        if sub is not None:
            sub.dtype = dtype
    return model


# --- chat templates -------------------------------------------------------------------------


def render(tokenizer, question: str, system: str | None = None) -> str:
    """The chat template's rendering of gazeheads' standard message, with a system turn if given."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system}]})
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

