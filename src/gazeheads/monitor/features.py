"""What the monitor measures in one captured attention row: statistics of each head's image attention.

Everything here is a pure function of the post-softmax attention of watched heads and of
which prompt positions hold image tokens, the two things a deployed observer can read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FLOOR = 1e-30
"""Attention below this counts as zero: its log is clamped at log(FLOOR), about -69 nats."""

FEATURES = (
    "gaze_focus", "gaze_share", "gaze_cliff_max", "gaze_cliff_mean",
    "wide_focus", "wide_share", "wide_cliff_max", "wide_cliff_mean",
)
"""The per-step feature vector, in order: for the gaze heads and for the wide view, the mean focus
(1 - normalised entropy of the image attention), the mean share of attention on the image, and the
largest and mean cliff (see :func:`head_stats`)."""

SHADOW_FEATURES = ("shadow_wide_tv", "shadow_gaze_tv")
"""Features of the shadow comparison: the largest total-variation distance between a head's live
attention row and the same head's row in the observer's own unsteered forward, over the wide view
and over the gaze heads."""


@dataclass(frozen=True)
class HeadStats:
    """Per batch row and head, statistics of the attention on the image tokens (tensors (batch, heads))."""

    image_share: torch.Tensor
    focus: torch.Tensor
    cliff: torch.Tensor


def head_stats(probs: torch.Tensor, image_mask: torch.Tensor) -> HeadStats:
    """Statistics of `probs` (batch, heads, keys >= prompt) over the image positions of `image_mask`
    (batch, prompt) bool.

    * image_share: attention on the image tokens, of all attention;
    * focus: 1 - H(p) / log(n) for p the attention renormalised over the n image tokens
      (1: one token takes it all, 0: uniform over the image);
    * cliff: the largest gap, in nats, between consecutive sorted log-attention values of the
      image tokens. An additive logit bias of +B on one region and -B on the rest opens a gap of
      about 2B between the region and the rest; natural attention falls off gradually.
    """
    prompt = image_mask.shape[1]
    probs = probs[..., :prompt].float()
    mask = image_mask.to(probs.device)[:, None, :]  # (batch, 1, prompt)
    n_image = mask.sum(-1).clamp(min=1)  # (batch, 1)
    image = probs * mask
    share = image.sum(-1)
    p = image / share[..., None].clamp(min=FLOOR)
    entropy = -(p * p.clamp(min=FLOOR).log()).sum(-1)
    log_n = n_image.float().log()
    focus = torch.where(log_n > 0, 1 - entropy / log_n.clamp(min=1e-12), torch.ones_like(entropy))
    log_attention = probs.clamp(min=FLOOR).log().masked_fill(~mask, math.inf)  # text keys sort last
    ordered = log_attention.sort(-1).values
    gaps = ordered[..., 1:] - ordered[..., :-1]
    valid = torch.arange(prompt - 1, device=probs.device) < (n_image - 1)[..., None]  # (batch, 1, prompt-1)
    cliff = gaps.masked_fill(~valid, 0.0).amax(-1) if prompt > 1 else torch.zeros_like(share)
    return HeadStats(share, focus, cliff)


def total_variation(live: torch.Tensor, shadow: torch.Tensor) -> torch.Tensor:
    """Half the L1 distance between two attention rows over their last axis (0: equal, 1: disjoint)."""
    return 0.5 * (live.float() - shadow.float()).abs().sum(-1)
