"""Training-only rewrites of the tiny model's forward pass: the same loss, computed faster on a CPU.

Nothing here changes what is learnt: each rewrite computes the loss of the plain forward pass
(equal up to float rounding, which `tests/test_tiny_training.py` checks), and the saved weights
are the standard ones. They are used during training only.

* `PatchEmbedAsLinear`: the vision patch embedding's Conv3d as the equal matmul (always on).
* `--fast-step` (`fast_step`): each batch is cut into sub-batches of equal sequence length, so
  that a long answer (a counted narration) does not pad every sequence of the batch, and the
  vision tower attends over all images of one size in one call instead of one call per image.
  Off by default, so that runs trained before it existed are reproduced bit for bit.
"""

from __future__ import annotations

import types
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch

from .tasks import Example


class PatchEmbedAsLinear(torch.nn.Module):
    """The vision patch embedding's Conv3d computed as the equal matmul (training only).

    Kernel = stride = the whole patch, so the convolution is one linear map per patch; on the
    CPU its backward pass as a matmul is several times faster than conv3d's. It shares the
    Conv3d's parameters, so the saved weights are the standard ones.
    """

    def __init__(self, conv: torch.nn.Conv3d) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.linear(x.flatten(1), self.weight.flatten(1), self.bias)
        return out[:, :, None, None, None]


def _grouped_vision_attention(self, hidden_states: torch.Tensor, cu_seqlens: torch.Tensor,
                              position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
                              max_seqlen: int | None = None, **kwargs) -> torch.Tensor:
    """Qwen3-VL vision attention with one SDPA call per image size (each image attends to itself only)."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb_vision

    n = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(n, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = position_embeddings
    q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
    starts = cu_seqlens[:-1].tolist()
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    by_length: dict[int, list[int]] = {}
    for i, length in enumerate(lengths):
        by_length.setdefault(length, []).append(i)
    outputs: list[torch.Tensor | None] = [None] * len(lengths)
    for length, images in by_length.items():
        def gather(t: torch.Tensor) -> torch.Tensor:  # [images, heads, length, head_dim]
            return torch.stack([t[starts[i]: starts[i] + length] for i in images]).transpose(1, 2)

        out = torch.nn.functional.scaled_dot_product_attention(gather(q), gather(k), gather(v), scale=self.scaling)
        out = out.transpose(1, 2).reshape(len(images), length, -1)
        for j, i in enumerate(images):
            outputs[i] = out[j]
    return self.proj(torch.cat(outputs, 0))


@contextmanager
def grouped_vision_attention(model) -> Iterator[None]:
    """Within the block, the vision tower's attention runs one call per image size."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionAttention

    modules = [m for m in model.modules() if isinstance(m, Qwen3VLVisionAttention)]
    for m in modules:
        m.forward = types.MethodType(_grouped_vision_attention, m)
    try:
        yield
    finally:
        for m in modules:
            del m.forward  # back to the class's forward


def by_sequence_length(examples: Sequence[Example], length: Callable[[Example], int]) -> list[list[Example]]:
    """`examples` cut into groups of equal sequence length, in order of first appearance."""
    groups: dict[int, list[Example]] = {}
    for ex in examples:
        groups.setdefault(length(ex), []).append(ex)
    return list(groups.values())


def grouped_loss(model, encoder, examples: Sequence[Example], loss: Callable) -> torch.Tensor:
    """`loss(model, encoder.batch(examples))` computed over sub-batches of equal sequence length.

    `loss` averages over the examples of its batch, so each group's loss is weighted by its share
    of the examples: the total is the plain loss and its gradient the plain gradient.
    """
    total = torch.zeros(())
    for group in by_sequence_length(examples, encoder.sequence_length):
        total = total + loss(model, encoder.batch(group)) * (len(group) / len(examples))
    return total
