"""The reference method, computed the way the published code does it, for checking gazeheads.

* :func:`eager_attention_rows`: eager attention for the whole model and
  ``output_attentions=True``; the attention rows of one query position per layer.
* :func:`reference_strip_matrices`: gaze scores with one full forward per panel question.
* :func:`eager_steer`: eager attention for the whole model and a forward pre-hook on each
  chosen layer's attention module that rewrites its ``attention_mask`` into a per-head mask
  with the bias added on the chosen heads, in the model's dtype (the published numerics);
  phase "decode" steers only forwards with a single query position (the published rule).

Nothing here goes through gazeheads' attention function: it is the independent computation
that the tests, the benchmarks, `gazeheads verify` and tiny-model training compare against.
All of it runs on the same model object: :func:`eager_everywhere` switches its attention
implementation to eager for the duration and restores it afterwards (no weights are copied).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch

from . import prompts
from .regions import Panel

if TYPE_CHECKING:
    from .data.strips import Strip
    from .heads import HeadSet
    from .model import Encoded, GazeModel


@contextlib.contextmanager
def eager_everywhere(gm: "GazeModel") -> Iterator[None]:
    """Eager attention for every attention module of the model while inside (restored after)."""
    config = gm.model.config
    before: dict[str, str] = {"": config._attn_implementation}
    for key in ("text_config", "vision_config"):
        sub = getattr(config, key, None)
        if sub is not None:
            before[key] = sub._attn_implementation
    gm.model.set_attn_implementation("eager")
    try:
        yield
    finally:
        gm.model.set_attn_implementation(before)


def eager_attentions(gm: "GazeModel", encoded: "Encoded") -> tuple[torch.Tensor, ...]:
    """Every language layer's full attention matrices (batch, heads, q, keys) from one eager forward."""
    with eager_everywhere(gm), torch.inference_mode():
        return gm.model(**encoded.inputs, output_attentions=True).attentions


def eager_attention_rows(gm: "GazeModel", encoded: "Encoded", query: int = -1) -> list[torch.Tensor]:
    """Per language layer, the float32 attention row of query position `query`: (batch, heads, keys)."""
    return [a[:, :, query, :].float() for a in eager_attentions(gm, encoded)]


def reference_strip_matrices(gm: "GazeModel", strip: "Strip") -> np.ndarray:
    """(layers, heads, queried panel, attended panel): one eager forward per panel question, the last
    prompt token's attention summed over each panel's image tokens (raw mass)."""
    n = strip.n_panels
    shape = gm.shape
    out = np.zeros((shape.n_layers, shape.n_heads, n, n), dtype=np.float64)
    for k in range(1, n + 1):
        encoded = gm.encode(strip, prompts.discovery_question(k, n))
        geometry = encoded.geometries[0]
        panels = [geometry.positions_of(Panel(j)).to(gm.device) for j in range(1, n + 1)]
        for layer, row in enumerate(eager_attention_rows(gm, encoded)):
            out[layer, :, k - 1, :] = torch.stack([row[0][:, p].sum(-1) for p in panels], -1).cpu().numpy()
    return out


def reference_bias(encoded: "Encoded", targets: Sequence, mode: str = "boost_suppress",
                   strength: float = 10000.0) -> torch.Tensor:
    """(batch, prompt_len) float32 bias over the prompt, from the method notes' definition of the modes (docs/method.md).

    boost_suppress: +B on the target's image tokens, -B on the other image tokens;
    suppress_image: only -B on the other image tokens; suppress_all: also -B on the prompt's
    text. (max_suppress_all's -B on generated tokens is added per step by :class:`EagerSteering`.)
    """
    image = torch.zeros(encoded.batch_size, encoded.prompt_len, dtype=torch.bool)
    target = torch.zeros_like(image)
    for row, (region, geometry) in enumerate(zip(targets, encoded.geometries)):
        image[row, geometry.positions.cpu()] = True
        target[row, geometry.positions_of(region).cpu()] = True
    real = encoded.inputs["attention_mask"].bool().cpu()
    bias = torch.zeros(encoded.batch_size, encoded.prompt_len)
    bias[image & ~target] = -strength
    if mode == "boost_suppress":
        bias[target] = strength
    if mode in ("suppress_all", "max_suppress_all"):
        bias[real & ~image] = -strength
    return bias


class EagerSteering:
    """The published steering as a mask-editing forward pre-hook on the chosen layers' attention."""

    def __init__(self, gm: "GazeModel", heads: "HeadSet", targets, encoded: "Encoded", *, strength: float = 10000.0,
                 mode: str = "boost_suppress", phase: str = "prefill+decode") -> None:
        targets = list(targets) if isinstance(targets, (list, tuple)) else [targets] * encoded.batch_size
        self.prompt_bias = reference_bias(encoded, targets, mode, strength).to(gm.device)
        self.prompt_len = encoded.prompt_len
        self.strength, self.mode, self.phase = strength, mode, phase
        self.head_masks = {}
        for layer, head in heads:
            self.head_masks.setdefault(layer, torch.zeros(gm.shape.n_heads, device=gm.device))[head] = 1.0
        self.modules = gm.attention_modules()
        self.handles: list = []

    def _pre_hook(self, module, args, kwargs):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        batch, q_len = hidden.shape[:2]
        if self.phase == "decode" and q_len != 1:
            return args, kwargs  # the published decode-only rule: only single-query forwards are steered
        mask = kwargs.get("attention_mask")
        dtype = hidden.dtype
        if mask is None:  # attend everywhere (decode without padding)
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            past = cache.get_seq_length(module.layer_idx) if cache is not None else 0
            mask = torch.zeros(batch, 1, q_len, past + q_len, dtype=dtype, device=hidden.device)
        k_len = mask.shape[-1]
        bias = torch.zeros(batch, k_len, dtype=torch.float32, device=hidden.device)
        width = min(k_len, self.prompt_bias.shape[1])
        bias[:, :width] = self.prompt_bias[:, :width]
        if self.mode == "max_suppress_all" and k_len > self.prompt_len:
            bias[:, self.prompt_len:] = -self.strength
        per_head = bias[:, None, None, :] * self.head_masks[module.layer_idx][None, :, None, None]
        low = torch.finfo(dtype).min
        kwargs["attention_mask"] = (mask.float() + per_head).clamp(min=low).to(dtype)
        return args, kwargs

    def __enter__(self) -> "EagerSteering":
        for layer in self.head_masks:
            self.handles.append(self.modules[layer].register_forward_pre_hook(self._pre_hook, with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


@contextlib.contextmanager
def eager_steer(gm: "GazeModel", heads: "HeadSet", targets, encoded: "Encoded", *, strength: float = 10000.0,
                mode: str = "boost_suppress", phase: str = "prefill+decode") -> Iterator[EagerSteering]:
    """Steer through eager attention (whole model) with the mask-editing pre-hook."""
    with eager_everywhere(gm), EagerSteering(gm, heads, targets, encoded, strength=strength, mode=mode,
                                             phase=phase) as steering:
        yield steering
