"""Model adapters: one small class per family, found from the model's class."""

from __future__ import annotations

from torch import nn

from ..errors import ModelError
from .base import Adapter, HeadShape
from .gemma3 import Gemma3Adapter
from .generic import GenericAdapter, Grid
from .idefics3 import Idefics3Adapter
from .internvl import InternVLAdapter
from .llava import LlavaAdapter
from .llava_next import LlavaNextAdapter
from .llava_onevision import LlavaOnevisionAdapter
from .qwen import QwenVLAdapter

ADAPTERS: list[type[Adapter]] = [
    QwenVLAdapter, LlavaAdapter, LlavaNextAdapter, LlavaOnevisionAdapter, InternVLAdapter, Gemma3Adapter,
    Idefics3Adapter,
]


def supported_classes() -> list[str]:
    return [name for adapter in ADAPTERS for name in adapter.model_classes]


def adapter_for(model: nn.Module, processor=None) -> Adapter:
    """The adapter of `model`'s family, or a ModelError listing the supported classes."""
    for adapter in ADAPTERS:
        if adapter.matches(model):
            return adapter(processor)
    raise ModelError(
        f"Unsupported architecture: {type(model).__name__}.",
        "Use one of: " + ", ".join(supported_classes()) + ", or describe the model with "
        "gazeheads.adapters.GenericAdapter and pass it as GazeModel(model, processor, adapter=...).",
    )


def check_supported_config(config) -> None:
    """Fail before loading weights when no adapter knows the config's architecture."""
    names = set(getattr(config, "architectures", None) or [])
    if names and not names & set(supported_classes()):
        raise ModelError(
            f"Unsupported architecture: {', '.join(sorted(names))}.",
            "Use one of: " + ", ".join(supported_classes()) + ".",
        )


__all__ = [
    "Adapter", "Gemma3Adapter", "GenericAdapter", "Grid", "HeadShape", "Idefics3Adapter", "InternVLAdapter",
    "LlavaAdapter", "LlavaNextAdapter", "LlavaOnevisionAdapter", "QwenVLAdapter", "adapter_for",
    "check_supported_config", "supported_classes",
]
