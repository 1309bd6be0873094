"""Running checks on replicas cheaply: bf16 matrix products on CPUs without bf16 units, and one
vision pass shared by the forwards of a check.

Both are exact with respect to what they replace. Neither touches gazeheads' attention
function: SDPA, the masks and biases it builds, and every elementwise op still run in the
model's dtype.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from gazeheads.adapters.sharing import patched


def native_bf16_matmul() -> bool:
    """True where bf16 matrix products run on bf16 hardware (GPUs, CPUs with AVX512-BF16/AMX)."""
    if torch.cuda.is_available():
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class Bf16ProductsInFloat32(TorchFunctionMode):
    """While active, bf16 linear/matmul/bmm/conv calls on CPU run as float32 products of the
    same bf16 operands, rounded back to bf16.

    That is the arithmetic of a bf16 GEMM (bf16 inputs, float32 accumulation, bf16 output),
    done by the float32 kernels: on a CPU without bf16 units, PyTorch's bf16 GEMM is 7-10x
    slower than float32 (measured here: 6.5 vs 46 GFLOP/s), which would put a bf16 forward
    of a 4096-wide replica at tens of seconds. Weights are converted once and cached.
    """

    _PRODUCTS = {F.linear, torch.matmul, torch.Tensor.__matmul__, torch.bmm, F.conv2d, F.conv3d}

    def __init__(self) -> None:
        super().__init__()
        self._weights: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _float(self, tensor, cache: bool):
        if not isinstance(tensor, torch.Tensor):
            return tensor
        if not cache:
            return tensor.float()
        key = id(tensor)
        hit = self._weights.get(key)
        if hit is None or hit[0] is not tensor:
            hit = self._weights[key] = (tensor, tensor.float())
        return hit[1]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._PRODUCTS:
            tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
            if tensors and all(t.dtype == torch.bfloat16 and t.device.type == "cpu" for t in tensors):
                weights = func in (F.linear, F.conv2d, F.conv3d)
                args = tuple(self._float(a, cache=weights and i > 0 and isinstance(a, nn.Parameter))
                             for i, a in enumerate(args))
                kwargs = {k: self._float(v, cache=weights and isinstance(v, nn.Parameter)) for k, v in kwargs.items()}
                return func(*args, **kwargs).to(torch.bfloat16)
        return func(*args, **kwargs)


def fast_products(dtype: torch.dtype):
    """A reusable context: Bf16ProductsInFloat32 for bf16 on CPUs without bf16 units, else nothing.

    Enter the same object for every forward of a model so its float32 weights are converted once.
    """
    if dtype != torch.bfloat16 or native_bf16_matmul():
        return contextlib.nullcontext()
    return Bf16ProductsInFloat32()


@contextlib.contextmanager
def vision_once(base_model: nn.Module, memo: dict | None = None) -> Iterator[None]:
    """Forwards inside the block that pass the same `pixel_values` tensor reuse the first call's
    image features: the vision tower is deterministic, so this only saves its cost. Pass the
    same `memo` dict to several blocks to share the features between them."""
    original = base_model.get_image_features
    memo = {} if memo is None else memo

    def get_image_features(pixel_values, *args, **kwargs):
        hit = memo.get(id(pixel_values))
        if hit is None or hit[0] is not pixel_values:
            hit = memo[id(pixel_values)] = (pixel_values, original(pixel_values, *args, **kwargs))
        return hit[1]

    with patched(base_model, "get_image_features", get_image_features):
        yield
