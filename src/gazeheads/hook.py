"""The one attention function gazeheads registers with transformers.

It serves every decoder layer of the language backbone. Layers nobody asked about go
straight to transformers' SDPA implementation (the fast kernels). On a layer with a
request it can

* add a per-query-head **bias** to the pre-softmax logits of some heads (steering), with
  the numerics of the published method (``"reference"``: eager attention in the model's
  dtype, the bias added to the scores in that dtype) or the dtype-faithful ones
  (``"exact"``: SDPA with the bias shifted so the target's logits keep their precision), and
* **capture** the post-softmax attention of one query row per batch row (by default the
  last), computed as ``softmax(q_row @ K^T * scaling + mask_row)`` without materialising
  any full attention matrix.

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

from .errors import GazeheadsError

ATTENTION_NAME = "gazeheads"
_PLAN_ATTR = "_gazeheads_plan"
_REFERENCE_CHUNK_BYTES = 256 * 2**20  # query rows of the eager reference path are processed in chunks this big


class BiasSource(Protocol):
    """Something that adds a bias to some heads' logits (steering implements it)."""

    numerics: str  # "reference" or "exact"

    def head_index(self, layer: int, device: torch.device) -> torch.Tensor | None:
        """Long (steered,) query-head indices of `layer` on `device`, or None when the layer has none."""

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
    bias: BiasSource | None = None
    users: int = 0
    keys_seen: dict[int, int] = field(default_factory=dict)

    def is_idle(self, layer: int) -> bool:
        return self.bias is None and not any(layer in c.layers for c in self.captures)

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
    """The bias of one layer: which query heads get it, its rows, and how it is applied."""

    heads: torch.Tensor  # (steered,) query-head indices
    rows: torch.Tensor  # (batch, q_rows, keys) float32, q_rows 1 or q_len, the same for every steered head
    numerics: str


def _layer_bias(plan: AttentionPlan, layer: int, q_len: int, k_len: int, total: int, device) -> HeadBias | None:
    """The plan's bias for `layer` over its `k_len` keys (the last of `total`), or None."""
    source = plan.bias
    if source is None:
        return None
    heads = source.head_index(layer, device)
    if heads is None:
        return None
    rows = source.row_bias(q_len, total, device)
    if rows is None:
        return None
    return HeadBias(heads, rows[..., total - k_len:], source.numerics)


def _biased_logit_mask(base_mask: torch.Tensor | None, bias: HeadBias, q_len: int) -> torch.Tensor:
    """float32 (batch, 1, q_len, keys): the model's mask plus the bias, for the steered heads."""
    rows = bias.rows[:, None]
    mask = rows if base_mask is None else base_mask + rows
    return mask.expand(-1, -1, q_len, -1) if mask.shape[2] != q_len else mask


def _exact_mask(base_mask: torch.Tensor | None, bias: HeadBias, q_len: int, dtype: torch.dtype) -> torch.Tensor:
    """The biased mask shifted per query row so its largest allowed entry is 0.

    Softmax is unchanged by a per-row shift, but the logits the bias favours then keep full
    precision instead of being rounded at the scale of B (1e-3 in float32 at B = 1e4, 64 in
    bfloat16): the steered heads attend to the target exactly as the model's own scores say.
    """
    mask = _biased_logit_mask(base_mask, bias, q_len)
    shift = mask.amax(-1, keepdim=True)
    shift = torch.where(shift > torch.finfo(torch.float32).min / 2, shift, torch.zeros_like(shift))
    low, high = torch.finfo(dtype).min, torch.finfo(dtype).max
    return (mask - shift).clamp_(low, high).to(dtype)


def _reference_mask(base_mask: torch.Tensor | None, bias: HeadBias, q_len: int, dtype: torch.dtype) -> torch.Tensor:
    """The biased mask in the model's dtype, as the published code adds it (float sum, clamped, cast)."""
    low, high = torch.finfo(dtype).min, torch.finfo(dtype).max
    return _biased_logit_mask(base_mask, bias, q_len).clamp(low, high).to(dtype)


def _eager_heads(query, key, value, mask, scaling) -> torch.Tensor:
    """Eager attention of some heads in the inputs' dtype, as transformers' eager path computes it:
    scores = q @ k^T * scaling; + mask; softmax in float32, cast back; @ v. Output (b, heads, q, d).

    Query rows are processed in chunks so memory stays bounded for long prompts.
    """
    batch, heads, q_len, _ = query.shape
    k_len = key.shape[2]
    per_row = max(1, batch * heads * k_len * 4)
    chunk = max(1, _REFERENCE_CHUNK_BYTES // per_row)
    out = []
    for start in range(0, q_len, chunk):
        q = query[:, :, start:start + chunk]
        scores = torch.matmul(q, key.transpose(2, 3)) * scaling
        scores = scores + mask[:, :, start:start + chunk]
        if scores.dtype == torch.float16:  # a saturated bias plus a positive score may pass fp16's max
            scores = scores.clamp_(torch.finfo(scores.dtype).min, torch.finfo(scores.dtype).max)
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        out.append(torch.matmul(weights, value))
    return torch.cat(out, dim=2) if len(out) > 1 else out[0]


def _steered_output(module, query, key, value, attention_mask, base_mask, bias: HeadBias, scaling, dropout,
                    **kwargs) -> torch.Tensor:
    """SDPA for the unsteered heads, the steered heads with their bias; output (b, q, h, d).

    Only the steered heads pay for a float mask (or eager attention), so unsteered heads keep
    the fast kernel. A per-query-row bias that leaves some rows unbiased (the prompt rows of phase
    "last-prompt+decode") recomputes only the biased rows, so the others stay exactly unsteered.
    """
    n_heads, q_len = query.shape[1], query.shape[2]
    n_rep = n_heads // key.shape[1]
    steered = bias.heads
    kv_index = steered // n_rep
    rows = None  # every query row
    if bias.rows.shape[1] == q_len and q_len > 1:
        rows = bias.rows.ne(0).any(-1).any(0).nonzero().flatten()
    q_s, k_s, v_s = query[:, steered], key[:, kv_index], value[:, kv_index]
    if rows is not None:
        q_s = q_s[:, :, rows]
    if bias.numerics == "reference":
        mask = _reference_mask(base_mask, bias, q_len, query.dtype)
        mask = mask if rows is None else mask[:, :, rows]
        out_steered = _eager_heads(q_s, k_s, v_s, mask, scaling).transpose(1, 2)
    else:
        mask = _exact_mask(base_mask, bias, q_len, query.dtype)
        mask = mask if rows is None else mask[:, :, rows]
        out_steered = torch.nn.functional.scaled_dot_product_attention(
            q_s, k_s, v_s, attn_mask=mask, dropout_p=dropout, scale=scaling
        ).transpose(1, 2)
    if rows is None and len(steered) == n_heads:
        return out_steered.contiguous()
    output, _ = sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )
    if rows is None:
        output[:, :, steered] = out_steered.to(output.dtype)
    else:
        output[:, rows[:, None], steered[None, :]] = out_steered.to(output.dtype)
    return output


def _captured_rows(query, key, base_mask, bias: HeadBias | None, scaling, query_index) -> torch.Tensor:
    """Post-softmax attention of one query row per batch row: (batch, query_heads, keys) float32.

    Unsteered heads are computed in float32. Steered heads follow the bias's numerics: the
    model's dtype as the reference path computes them, or float32 with the shifted bias.
    """
    batch, n_heads, q_len, dim = query.shape
    n_kv = key.shape[1]
    device = query.device
    if query_index is None:
        rows = torch.full((batch,), q_len - 1, device=device, dtype=torch.long)
    else:
        rows = query_index.to(device).long()
    batch_idx = torch.arange(batch, device=device)
    picked = query[batch_idx, :, rows]  # (batch, heads, dim)
    grouped = picked.float().reshape(batch, n_kv, n_heads // n_kv, dim)
    logits = torch.einsum("bgrd,bgkd->bgrk", grouped, key.float()).reshape(batch, n_heads, -1) * scaling
    mask_rows = None
    if base_mask is not None:
        mask_rows = base_mask.expand(batch, -1, q_len, -1)[batch_idx, 0, rows]  # (batch, keys)
        logits = logits + mask_rows[:, None, :]
    low = torch.finfo(torch.float32).min
    probs = torch.softmax(logits.clamp(min=low), dim=-1)
    if bias is None:
        return probs
    bias_rows = bias.rows[batch_idx, rows if bias.rows.shape[1] == q_len else torch.zeros_like(rows)]  # (batch, keys)
    base = torch.zeros_like(bias_rows) if mask_rows is None else mask_rows
    steered = bias.heads
    biased = bias_rows.ne(0).any(-1)  # batch rows whose captured query carries a bias
    if not bool(biased.all()):  # unbiased rows (prompt rows of the decode phases) keep the plain attention
        plain = probs.clone()
    if bias.numerics == "reference":
        dtype = query.dtype
        k_steered = repeat_kv(key, n_heads // n_kv)[:, steered]  # (batch, steered, keys, dim)
        scores = torch.einsum("bhd,bhkd->bhk", picked[:, steered], k_steered) * scaling  # in the model's dtype
        mask = (base + bias_rows).clamp(torch.finfo(dtype).min, torch.finfo(dtype).max).to(dtype)
        probs[:, steered] = torch.softmax(scores + mask[:, None, :], dim=-1, dtype=torch.float32)
    else:
        mask = base + bias_rows
        shift = mask.amax(-1, keepdim=True)
        shift = torch.where(shift > low / 2, shift, torch.zeros_like(shift))
        steered_logits = logits[:, steered] + (bias_rows - shift)[:, None, :]
        probs[:, steered] = torch.softmax(steered_logits.clamp(min=low), dim=-1)
    if not bool(biased.all()):
        probs[~biased] = plain[~biased]
    return probs


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
        output = _steered_output(module, query, key, value, attention_mask, base_mask, bias, scaling, dropout,
                                 **kwargs)
    for capture in captures:
        probs = _captured_rows(query, key, base_mask, bias, scaling, capture.query_index)
        captured_value = value
        if total > k_len:  # a sliding window: the keys before it got no attention
            probs = torch.nn.functional.pad(probs, (total - k_len, 0))
            captured_value = torch.nn.functional.pad(value, (0, 0, total - k_len, 0))
        capture.callback(layer, probs, captured_value)
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
def bias_suspended(plan: AttentionPlan) -> Iterator[None]:
    """Run forwards without the plan's bias (captures stay), then put it back."""
    saved, plan.bias = plan.bias, None
    try:
        yield
    finally:
        plan.bias = saved


class NestedSteeringError(GazeheadsError):
    """A second steer() block on a model that is already being steered."""


@contextlib.contextmanager
def requesting(
    attention_modules: list[nn.Module], *, bias: BiasSource | None = None, capture: CaptureRequest | None = None
) -> Iterator[AttentionPlan]:
    """Add a bias source and/or a capture to the modules' plan for the duration of the block.

    A plan holds at most one bias source: two steer() blocks at once would give answers that
    match neither target, so the second is refused.
    """
    with attach_plan(attention_modules) as plan:
        if bias is not None and plan.bias is not None:
            raise NestedSteeringError(
                "This model is already being steered by another steer() block.",
                "Steer once: put all heads in one HeadSet and give one target per batch row (or a Schedule) "
                "in a single steer() block, or leave the first block before entering the second.",
            )
        if bias is not None:
            plan.bias = bias
        if capture is not None:
            plan.captures.append(capture)
        try:
            yield plan
        finally:
            if bias is not None:
                plan.bias = None
            if capture is not None:
                plan.captures.remove(capture)
