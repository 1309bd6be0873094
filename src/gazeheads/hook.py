"""The one attention function gazeheads registers with transformers.

It serves every decoder layer of the language backbone. Layers nobody asked about go
straight to transformers' SDPA implementation (the fast kernels). On a layer with a
request it can

* add a per-query-head **bias** to the pre-softmax logits (steering), and
* **capture** the post-softmax attention of one query row per batch row (by default the
  last), in float32, computed as ``softmax(q_row @ K^T * scaling + mask_row)`` without
  materialising any full attention matrix.

What to do lives in an :class:`AttentionPlan` that :func:`attach_plan` installs on the
attention modules of one model and always removes; the function only reads it.
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

ATTENTION_NAME = "gazeheads"
_PLAN_ATTR = "_gazeheads_plan"


class BiasSource(Protocol):
    """Something that adds a bias to some heads' logits (steering implements it)."""

    def head_mask(self, layer: int, device: torch.device) -> torch.Tensor | None:
        """Float (n_query_heads,) on `device` with 1 on biased heads of `layer`, or None if none."""

    def row_bias(self, q_len: int, k_len: int, device: torch.device) -> torch.Tensor | None:
        """Float32 bias of shape (batch, q_rows, k_len), q_rows 1 or q_len; None when inactive.

        `k_len` counts every key of the sequence so far (a sliding-window layer that holds
        fewer gets the last columns)."""


AttentionCallback = Callable[[int, torch.Tensor, torch.Tensor], None]
"""Called as ``fn(layer, probs, value)``: probs (batch, query_heads, keys) float32 over every
key of the sequence so far (zero outside a sliding window), value (batch, kv_heads, keys, dim)."""


@dataclass
class CaptureRequest:
    """Capture one query row per batch row on some layers and hand it to `callback`.

    `query_index` (batch,) picks the query row inside the current call; None means the last.
    """

    layers: frozenset[int]
    callback: AttentionCallback
    query_index: torch.Tensor | None = None


@dataclass
class AttentionPlan:
    """Everything the attention function is asked to do, per layer, while attached."""

    captures: list[CaptureRequest] = field(default_factory=list)
    biases: list[BiasSource] = field(default_factory=list)
    users: int = 0
    keys_seen: dict[int, int] = field(default_factory=dict)

    def is_idle(self, layer: int) -> bool:
        return not self.biases and not any(layer in c.layers for c in self.captures)

    def count_keys(self, layer: int, q_len: int, k_len: int) -> int:
        """How many keys the sequence has at this call of `layer`, including this call's.

        A sliding-window layer's cache hands attention only the last keys of a long sequence,
        so `k_len` alone would misplace every position; the count is kept per layer from the
        first forward of a sequence (where keys and queries are the same tokens) on.
        """
        total = q_len if k_len == q_len else max(self.keys_seen.get(layer, 0) + q_len, k_len)
        self.keys_seen[layer] = total
        return total


def _additive_mask(
    mask: torch.Tensor | None, q_len: int, k_len: int, device: torch.device
) -> torch.Tensor | None:
    """The model's mask as float32 additive (batch|1, 1, q_len, k_len); None means 'attend everywhere'.

    A None mask with q_len > 1 means SDPA would use its upper-left causal rule, so build it.
    """
    low = torch.finfo(torch.float32).min
    if mask is None:
        if q_len == 1:
            return None
        allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril()
        return torch.zeros(q_len, k_len, device=device).masked_fill(~allowed, low)[None, None]
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, device=device).masked_fill(~mask, low)
    return mask.float().clamp(min=low)


@dataclass
class HeadBias:
    """The bias of one layer: which query heads get one, and its values per head."""

    heads: torch.Tensor  # (steered,) query-head indices
    values: torch.Tensor  # (batch, steered, q_rows, keys) float32, q_rows 1 or q_len


def _layer_bias(plan: AttentionPlan, layer: int, q_len: int, k_len: int, total: int, device) -> HeadBias | None:
    """Sum of all bias sources for `layer` over its `k_len` keys (the last of `total`), kept
    only for the heads that have one."""
    parts = []
    for source in plan.biases:
        heads = source.head_mask(layer, device)
        if heads is None:
            continue
        rows = source.row_bias(q_len, total, device)
        if rows is not None:
            parts.append((heads, rows[..., total - k_len :]))
    if not parts:
        return None
    steered = torch.stack([h for h, _ in parts]).sum(0).nonzero().flatten()
    values = sum(rows[:, None, :, :] * heads[steered][None, :, None, None] for heads, rows in parts)
    return HeadBias(steered, values)


def _biased_sdpa(module, query, key, value, attention_mask, base_mask, bias: HeadBias, scaling, dropout, **kwargs):
    """SDPA for every head, then the biased heads again with their bias in the mask; output (b, q, h, d).

    Only the steered heads pay for a float mask, so unsteered heads keep the fast kernel.
    """
    n_heads = query.shape[1]
    n_rep = n_heads // key.shape[1]
    steered = bias.heads
    low, high = torch.finfo(query.dtype).min, torch.finfo(query.dtype).max  # fp16 tops out at 65504
    mask = bias.values.clamp(low, high) if base_mask is None else (base_mask + bias.values).clamp_(low, high)
    mask = mask.to(query.dtype)
    kv_index = steered // n_rep
    out_steered = torch.nn.functional.scaled_dot_product_attention(
        query[:, steered], key[:, kv_index], value[:, kv_index], attn_mask=mask, dropout_p=dropout, scale=scaling
    ).transpose(1, 2)
    if len(steered) == n_heads:
        return out_steered.contiguous()
    output, _ = sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )
    output[:, :, steered] = out_steered.to(output.dtype)
    return output


def _captured_rows(query, key, base_mask, bias: HeadBias | None, scaling, query_index) -> torch.Tensor:
    """Post-softmax attention of one query row per batch row: (batch, query_heads, keys) float32."""
    batch, n_heads, q_len, dim = query.shape
    n_kv = key.shape[1]
    if query_index is None:
        rows = torch.full((batch,), q_len - 1, device=query.device, dtype=torch.long)
    else:
        rows = query_index.to(query.device).long()
    picked = query[torch.arange(batch, device=query.device), :, rows]  # (batch, heads, dim)
    picked = picked.float().reshape(batch, n_kv, n_heads // n_kv, dim)
    logits = torch.einsum("bgrd,bgkd->bgrk", picked, key.float()).reshape(batch, n_heads, -1) * scaling
    batch_idx = torch.arange(batch, device=query.device)
    if base_mask is not None:
        full = base_mask.expand(batch, -1, q_len, -1)
        logits = logits + full[batch_idx, 0, rows][:, None, :]
    if bias is not None:
        bias_rows = rows if bias.values.shape[2] == q_len else torch.zeros_like(rows)
        logits[:, bias.heads] += bias.values.expand(batch, -1, -1, -1)[batch_idx, :, bias_rows]
    logits = logits.clamp(min=torch.finfo(torch.float32).min)
    return torch.softmax(logits, dim=-1)


def gaze_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """The registered attention function (signature of transformers' attention interface)."""
    plan: AttentionPlan | None = getattr(module, _PLAN_ATTR, None)
    layer = getattr(module, "layer_idx", None)
    q_len, k_len = query.shape[2], key.shape[2]
    attached = plan is not None and layer is not None
    total = plan.count_keys(layer, q_len, k_len) if attached else k_len  # counted on idle layers too
    if not attached or plan.is_idle(layer):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scaling = scaling if scaling is not None else 1.0 / math.sqrt(query.shape[-1])
    bias = _layer_bias(plan, layer, q_len, k_len, total, query.device)
    captures = [c for c in plan.captures if layer in c.layers]
    base_mask = _additive_mask(attention_mask, q_len, k_len, query.device) if (bias is not None or captures) else None
    if bias is None:
        output, _ = sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    else:
        output = _biased_sdpa(module, query, key, value, attention_mask, base_mask, bias, scaling, dropout, **kwargs)
    for capture in captures:
        probs = _captured_rows(query, key, base_mask, bias, scaling, capture.query_index)
        if total > k_len:  # a sliding window: the keys before it got no attention
            probs = torch.nn.functional.pad(probs, (total - k_len, 0))
            value = torch.nn.functional.pad(value, (0, 0, total - k_len, 0))
        capture.callback(layer, probs, value)
    return output, None


_register_lock = threading.Lock()


def register() -> None:
    """Register the attention and mask functions under ATTENTION_NAME (idempotent)."""
    with _register_lock:
        if ATTENTION_NAME not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
            AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
        AttentionInterface.register(ATTENTION_NAME, gaze_attention_forward)


@contextlib.contextmanager
def attach_plan(attention_modules: list[nn.Module]) -> Iterator[AttentionPlan]:
    """Attach (or share) the plan of these attention modules; detach when the last user leaves."""
    if not attention_modules:
        raise ValueError("No attention modules given.")
    plan = getattr(attention_modules[0], _PLAN_ATTR, None)
    if plan is None:
        plan = AttentionPlan()
        for module in attention_modules:
            setattr(module, _PLAN_ATTR, plan)
    plan.users += 1
    try:
        yield plan
    finally:
        plan.users -= 1
        if plan.users == 0:
            for module in attention_modules:
                if getattr(module, _PLAN_ATTR, None) is plan:
                    delattr(module, _PLAN_ATTR)


def attached_plan(attention_modules: list[nn.Module]) -> AttentionPlan | None:
    """The plan attached to these modules, if any."""
    return getattr(attention_modules[0], _PLAN_ATTR, None) if attention_modules else None


@contextlib.contextmanager
def biases_suspended(plan: AttentionPlan) -> Iterator[None]:
    """Run forwards without the plan's bias sources (captures stay), then put them back."""
    saved = list(plan.biases)
    plan.biases.clear()
    try:
        yield
    finally:
        plan.biases[:] = saved


@contextlib.contextmanager
def requesting(
    attention_modules: list[nn.Module], *, bias: BiasSource | None = None, capture: CaptureRequest | None = None
) -> Iterator[AttentionPlan]:
    """Add one bias source and/or capture to the modules' plan for the duration of the block."""
    with attach_plan(attention_modules) as plan:
        if bias is not None:
            plan.biases.append(bias)
        if capture is not None:
            plan.captures.append(capture)
        try:
            yield plan
        finally:
            if bias is not None:
                plan.biases.remove(bias)
            if capture is not None:
                plan.captures.remove(capture)
