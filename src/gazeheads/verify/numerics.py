"""The bias in the model's dtype: it must neither overflow nor vanish.

The biased masks are built by the attention function's own code (both numerics) for a row that
holds every kind of key: text, target, other image, and masked keys under +B and -B. Overflow:
an entry turns inf or NaN, or a masked key comes out less masked than a suppressed one (fp16's
`finfo.min + B`). Vanishing: after rounding to the dtype, the gap between target and suppressed
keys must exceed the spread of the model's own attention logits by ln(1e4), so a suppressed key
keeps less than 1e-4 of a target key's weight whatever the scores. The steered forward itself
must produce no inf or NaN.
"""

from __future__ import annotations

import math

import torch

from .. import hook
from ..specs import SteerSpec
from .observe import Observation
from .result import CheckResult, judged

NUMERICS = "bias numerics"
SUPPRESSION = math.log(1e4)


def logit_spread(observed: Observation) -> float:
    """The widest log-ratio between two attended keys of any captured row (from float32 probabilities)."""
    spread = 0.0
    for rows in observed.rows.values():
        positive = torch.where(rows > 0, rows, torch.full_like(rows, float("nan")))
        high = torch.log(rows.amax(-1))
        low = torch.log(torch.nan_to_num(positive, nan=float("inf")).amin(-1))
        spread = max(spread, float((high - low).max()))
    return spread


def biased_masks(spec: SteerSpec, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The masks the attention function adds for keys [text, target, other image, masked(+B), masked(-B)]."""
    low = torch.finfo(torch.float32).min
    strength = spec.strength
    target = strength if spec.mode == "boost_suppress" else 0.0
    base = torch.tensor([0.0, 0.0, 0.0, low, low]).reshape(1, 1, 1, 5)
    rows = torch.tensor([0.0, target, -strength, target, -strength]).reshape(1, 1, 5)
    bias = hook.HeadBias(torch.tensor([0]), rows, spec.numerics)
    return {"reference": hook._reference_mask(base, bias, 1, dtype).float().flatten(),
            "exact": hook._exact_mask(base, bias, 1, dtype).float().flatten()}


def numerics_check(spec: SteerSpec, dtype: torch.dtype, plain: Observation, steered: Observation) -> CheckResult:
    spread = logit_spread(plain)
    bound = f"finite; masked keys stay masked; target-suppressed gap >= logit spread + {SUPPRESSION:.1f}; 0 inf/NaN"
    problems, gaps = [], {}
    for name, mask in biased_masks(spec, dtype).items():
        if not bool(torch.isfinite(mask).all()):
            problems.append(f"{name} mask holds inf/NaN: {mask.tolist()}")
            continue
        if not float(mask[3:].max()) <= float(mask[2]):
            problems.append(f"{name} mask: a masked key ({float(mask[3:].max()):g}) is less masked than a "
                            f"suppressed one ({float(mask[2]):g})")
        gaps[name] = float(mask[1] - mask[2])
    gap = min(gaps.values(), default=float("nan"))
    if gaps and not gap >= spread + SUPPRESSION:
        problems.append(f"the bias gap {gap:g} does not clear the logit spread {spread:.1f}")
    if steered.nonfinite:
        problems.append(f"{steered.nonfinite} inf/NaN values in the steered forward")
    name = str(dtype).removeprefix("torch.")
    measured = (f"{name}: B = {spec.strength:g} -> gap {gap:g} vs logit spread {spread:.1f}; masked keys stay masked; "
                f"{steered.nonfinite} inf/NaN when steered")
    if problems:
        measured = f"{name}: " + "; ".join(problems)
    return judged(NUMERICS, not problems, measured, bound, gap=gap, logit_spread=spread, nonfinite=steered.nonfinite)
