"""The reference method, written the way the published code does it.

* Discovery: eager attention for the whole model and ``output_attentions=True``; one full
  forward (with the LM head) per panel question, so 6 forwards per 6-panel strip; the panel
  masses come from the last row of every layer's full attention matrix.
* Steering: eager attention for the whole model and a forward pre-hook on each chosen
  layer's attention module that rewrites its ``attention_mask`` argument into a per-head
  mask (batch, heads, q, keys) with the bias added on the chosen heads.

Both run on the same model object as gazeheads: :func:`eager_everywhere` switches its
attention implementation to eager for the duration and restores it afterwards, so no weights
are copied.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np
import torch

import gazeheads as gh
from gazeheads import prompts
from gazeheads.model import Encoded, GazeModel


@contextlib.contextmanager
def eager_everywhere(gm: GazeModel) -> Iterator[None]:
    """Eager attention for the vision tower and the language backbone while inside."""
    config = gm.model.config
    before = {
        "": config._attn_implementation,
        "text_config": config.text_config._attn_implementation,
        "vision_config": config.vision_config._attn_implementation,
    }
    gm.model.set_attn_implementation("eager")
    try:
        yield
    finally:
        gm.model.set_attn_implementation(before)


def reference_strip_matrices(gm: GazeModel, strip: gh.data.Strip) -> np.ndarray:
    """(layers, heads, queried panel, attended panel) from 6 eager forwards with output_attentions."""
    n = strip.n_panels
    shape = gm.shape
    out = np.zeros((shape.n_layers, shape.n_heads, n, n), dtype=np.float64)
    with eager_everywhere(gm), torch.inference_mode():
        for k in range(1, n + 1):
            encoded = gm.encode(strip, prompts.discovery_question(k, n))
            attentions = gm.model(**encoded.inputs, output_attentions=True).attentions
            geometry = encoded.geometries[0]
            panels = [geometry.positions_of(gh.Panel(j)).to(gm.device) for j in range(1, n + 1)]
            for layer, attention in enumerate(attentions):
                last = attention[0, :, -1, :].float()
                out[layer, :, k - 1, :] = torch.stack([last[:, p].sum(-1) for p in panels], -1).cpu().numpy()
            del attentions
    return out


class EagerSteering:
    """The published steering: a mask-editing forward pre-hook on the chosen layers' attention.

    Bias (mode boost_suppress, every query row, prefill and decode): +strength on the target's
    image tokens and -strength on the other image tokens, for the chosen heads only.
    """

    def __init__(self, gm: GazeModel, heads: gh.HeadSet, targets: gh.Panel | Sequence[gh.Panel], encoded: Encoded,
                 strength: float = 10000.0) -> None:
        targets = [targets] * encoded.batch_size if isinstance(targets, gh.Panel) else list(targets)
        image = encoded.image_mask()
        bias = torch.zeros(encoded.batch_size, encoded.prompt_len)
        for row, (target, geometry) in enumerate(zip(targets, encoded.geometries)):
            bias[row, image[row]] = -strength
            bias[row, geometry.positions_of(target).cpu()] = strength
        self.prompt_bias = bias.to(gm.device)
        self.head_masks = {layer: mask.to(gm.device) for layer, mask in heads.head_masks().items()}
        self.modules = gm.attention_modules()
        self.handles: list = []

    def _pre_hook(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        batch, q_len = hidden.shape[:2]
        dtype = hidden.dtype
        if mask is None:  # attend everywhere (decode without padding)
            cache = kwargs.get("past_key_values")
            past = cache.get_seq_length(module.layer_idx) if cache is not None else 0
            mask = torch.zeros(batch, 1, q_len, past + q_len, dtype=dtype, device=hidden.device)
        k_len = mask.shape[-1]
        bias = torch.zeros(batch, k_len, dtype=torch.float32, device=hidden.device)
        width = min(k_len, self.prompt_bias.shape[1])
        bias[:, :width] = self.prompt_bias[:, :width]
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
def eager_steer(gm: GazeModel, heads: gh.HeadSet, targets, encoded: Encoded,
                strength: float = 10000.0) -> Iterator[EagerSteering]:
    """Steer through eager attention (whole model) with the mask-editing pre-hook."""
    heads.check_shape(gm.shape)
    with eager_everywhere(gm), EagerSteering(gm, heads, targets, encoded, strength) as steering:
        yield steering
