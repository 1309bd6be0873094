"""Model adapters: one small class per family, found from the model's class."""

from __future__ import annotations

from torch import nn

from ..errors import ModelError
from .base import Adapter, HeadShape
from .qwen import QwenVLAdapter

ADAPTERS: list[type[Adapter]] = [QwenVLAdapter]


def supported_classes() -> list[str]:
    return [name for adapter in ADAPTERS for name in adapter.model_classes]


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter of `model`'s family, or a ModelError listing the supported classes."""
    for adapter in ADAPTERS:
        if adapter.matches(model):
            return adapter()
    raise ModelError(
        f"Unsupported architecture: {type(model).__name__}.",
        "Use one of: " + ", ".join(supported_classes()) + ".",
    )


def check_supported_config(config) -> None:
    """Fail before loading weights when no adapter knows the config's architecture."""
    names = set(getattr(config, "architectures", None) or [])
    if names and not names & set(supported_classes()):
        raise ModelError(
            f"Unsupported architecture: {', '.join(sorted(names))}.",
            "Use one of: " + ", ".join(supported_classes()) + ".",
        )


__all__ = ["check_supported_config", "Adapter", "HeadShape", "QwenVLAdapter", "adapter_for", "supported_classes"]
