"""The forward passes the exactness checks compare, each reduced to what the checks read.

A pass runs the language model once on one encoded strip and keeps, per sampled layer, the
attention row of the last prompt token, and at one probed layer the attention output of every
head (the input of the output projection). gazeheads' passes go through its attention function
(captures and steering); eager passes go through `gazeheads.reference` (transformers' eager
attention with `output_attentions=True`, steering by the published mask-editing pre-hook), which
never touches that function.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from .. import hook
from ..heads import HeadSet
from ..model import Encoded, GazeModel
from ..reference import EagerSteering, eager_everywhere
from ..regions import Region
from ..specs import SteerSpec
from ..steering import steer


@dataclass(frozen=True)
class Steering:
    """What a steered pass steers: heads, target region and how (one prompt, one target)."""

    heads: HeadSet
    target: Region
    spec: SteerSpec


@dataclass
class Observation:
    """What one pass showed: rows[layer] is (heads, keys) float32, the last prompt token's attention;
    `head_outputs` is (heads, queries, head_dim) float32 at the probed layer (one entry holding the whole
    projected output when the attention module has no `o_proj`); `nonfinite` counts inf/NaN values in
    the probed output and the last hidden state."""

    rows: dict[int, torch.Tensor]
    head_outputs: torch.Tensor | None
    nonfinite: int


@contextlib.contextmanager
def _probe(attention: nn.Module, n_heads: int) -> Iterator[dict]:
    """Record the per-head attention output of one attention module (before `o_proj`, else after it)."""
    seen: dict = {}
    projection = getattr(attention, "o_proj", None)
    if isinstance(projection, nn.Module):
        def before_projection(module, args):
            merged = args[0][0].detach().float()  # (queries, heads * head_dim) of batch row 0
            seen["out"] = merged.reshape(merged.shape[0], n_heads, -1).transpose(0, 1).cpu()

        handle = projection.register_forward_pre_hook(before_projection)
    else:
        def after_attention(module, args, output):
            first = output[0] if isinstance(output, tuple) else output
            seen["out"] = first[0].detach().float()[None].cpu()

        handle = attention.register_forward_hook(after_attention)
    try:
        yield seen
    finally:
        handle.remove()


def _nonfinite(*tensors: torch.Tensor | None) -> int:
    return int(sum(int((~torch.isfinite(t)).sum()) for t in tensors if t is not None))


def gazeheads_pass(gm: GazeModel, encoded: Encoded, layers: Sequence[int], probe_layer: int,
                   steering: Steering | None = None) -> Observation:
    """One forward through gazeheads' attention function: captured rows, optionally steered."""
    rows: dict[int, torch.Tensor] = {}

    def record(layer: int, probs: torch.Tensor, value: torch.Tensor) -> None:
        rows[layer] = probs[0].detach().float().cpu()

    modules = gm.attention_modules()
    request = hook.CaptureRequest(frozenset(layers), record)
    base = gm.adapter.base_model(gm.model)
    with contextlib.ExitStack() as stack:
        if steering is not None:
            stack.enter_context(steer(gm, steering.heads, steering.target, encoded, steering.spec))
        stack.enter_context(hook.requesting(modules, capture=request))
        probe = stack.enter_context(_probe(modules[probe_layer], gm.shape.n_heads))
        with torch.inference_mode():
            hidden = base(**encoded.inputs, use_cache=False).last_hidden_state
    out = probe.get("out")
    return Observation(rows, out, _nonfinite(out, hidden))


def eager_pass(gm: GazeModel, encoded: Encoded, layers: Sequence[int], probe_layer: int,
               steering: Steering | None = None) -> Observation:
    """One forward with eager attention everywhere and `output_attentions=True` (the reference),
    optionally steered by the published mask-editing pre-hook."""
    base = gm.adapter.base_model(gm.model)
    modules = gm.attention_modules()
    with contextlib.ExitStack() as stack:
        stack.enter_context(eager_everywhere(gm))
        if steering is not None:
            spec = steering.spec
            stack.enter_context(EagerSteering(gm, steering.heads, steering.target, encoded, strength=spec.strength,
                                              mode=spec.mode, phase=spec.phase))
        probe = stack.enter_context(_probe(modules[probe_layer], gm.shape.n_heads))
        with torch.inference_mode():
            output = base(**encoded.inputs, use_cache=False, output_attentions=True)
    attentions = output.attentions
    rows = {layer: attentions[layer][0, :, -1, :].detach().float().cpu() for layer in layers}
    out = probe.get("out")
    return Observation(rows, out, _nonfinite(out, output.last_hidden_state))
