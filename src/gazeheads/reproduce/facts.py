"""What a model's files say about it, read without loading any weights.

    config = read_config("Qwen/Qwen3-VL-8B-Instruct")      # config.json (hub or folder)
    head_shape(config)                                      # HeadShape(36, 32, 8)
    counts = parameter_counts(config)                       # from the shapes, on the meta device

Commands use these to check their arguments (a ranking's shape, layer numbers) and the dry run
uses them to size the work, all before a model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..adapters.base import HeadShape
from ..errors import ModelError

_VISION_WORDS = ("visual", "vision", "multi_modal_projector", "mm_projector", "connector", "mlp1")


def read_config(model: str | Path | None, revision: str | None = None, trust_remote_code: bool = False):
    """The model's config (the bundled model's for None); a ModelError when it cannot be read."""
    from transformers import AutoConfig

    from ..adapters import check_supported_config
    from ..assets import resolve_model

    path, _ = resolve_model(model)
    try:
        config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot read the config of {path!r}: {exc}",
                         "Give a local model folder (with config.json), or a hub id on a machine that can reach the "
                         "hub (or has it cached).") from None
    check_supported_config(config)
    return config


def read_processor(model: str | Path | None, revision: str | None = None, trust_remote_code: bool = False):
    """The model's processor (tokenizer and image processor; no weights)."""
    from transformers import AutoProcessor

    from ..assets import resolve_model

    path, _ = resolve_model(model)
    try:
        return AutoProcessor.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot read the processor of {path!r}: {exc}",
                         "The folder needs the tokenizer and processor files (save both with save_pretrained).") \
            from None


def head_shape(config) -> HeadShape:
    """The language backbone's attention shape from the config."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(text.num_attention_heads)
    return HeadShape(int(text.num_hidden_layers), heads, int(getattr(text, "num_key_value_heads", None) or heads))


@dataclass(frozen=True)
class ParameterCounts:
    """Parameters by part, counted from the shapes of a model built on the meta device (no memory)."""

    total: int
    vision: int  # vision tower and projector
    embedding: int  # input embedding table (a lookup: no FLOPs)
    lm_head: int  # output projection (0 when tied to the embedding table)

    @property
    def language(self) -> int:
        """Language-model parameters that multiply every token (no embedding table, no LM head)."""
        return self.total - self.vision - self.embedding - self.lm_head

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "vision": self.vision, "embedding": self.embedding, "lm_head": self.lm_head,
                "language": self.language}


def parameter_counts(config) -> ParameterCounts:
    """Count the parameters of the model `config` describes, without allocating them."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    seen: set[int] = set()
    total = vision = 0
    for name, parameter in model.named_parameters():
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        total += parameter.numel()
        if any(word in name for word in _VISION_WORDS):
            vision += parameter.numel()
    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    head = 0 if output is None or output.weight is embedding else output.weight.numel()
    return ParameterCounts(total, vision, embedding.numel(), head)
