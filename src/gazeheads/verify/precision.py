"""Run a loaded model in float32 for a while and put it back exactly as it was.

Every floating parameter and buffer is cast in place (tied weights stay tied: they are one
Parameter) and restored to its own dtype afterwards; bfloat16 and float16 values round-trip
through float32 exactly, so the model after the block is bit-identical to the model before.
The float32 copy needs 4 bytes a parameter while it lasts (32 GB for an 8B model).
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Iterator

import torch
from torch import nn

Float32Weights = Callable[[nn.Module], ContextManager[None]]
"""How a caller runs a model in float32 for a block (replaceable, e.g. for models with lazy tables)."""


@contextlib.contextmanager
def float32_weights(model: nn.Module) -> Iterator[None]:
    saved: list[tuple[torch.Tensor, torch.dtype]] = []
    seen: set[int] = set()
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) in seen or not tensor.is_floating_point() or tensor.dtype == torch.float32:
            continue
        seen.add(id(tensor))
        saved.append((tensor, tensor.dtype))
        tensor.data = tensor.data.to(torch.float32)
    try:
        yield
    finally:
        for tensor, dtype in saved:
            tensor.data = tensor.data.to(dtype)


def parameter_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def float32_fits(model: nn.Module) -> tuple[bool, str]:
    """Whether a float32 copy of the weights fits in the free memory of their CUDA device (always on CPU)."""
    devices = {p.device for p in model.parameters()}
    needed = sum(p.numel() * (4 - p.element_size()) for p in model.parameters() if p.is_floating_point())
    cuda = [d for d in devices if d.type == "cuda"]
    if not cuda or needed <= 0:
        return True, ""
    free = sum(torch.cuda.mem_get_info(d)[0] for d in cuda)
    if needed > free:
        return False, (f"a float32 copy needs {needed / 2**30:.1f} GiB more GPU memory, {free / 2**30:.1f} GiB free "
                       "(run verify with --dtype float32, or on a larger GPU, to check float32)")
    return True, ""
