"""Exactness checks: captured rows equal eager rows, the bias moves exactly the chosen heads, and
prefix-shared discovery equals one forward per question.

Bounds are per dtype. In float32 the paths agree to float rounding. In bfloat16 and float16
eager attention rounds logits and probabilities to the dtype (8 or 11 mantissa bits) while the
captured rows are float32 softmaxes of the same query and key states, so rows may differ by a
few units in the dtype's last place.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..discovery import strip_matrices, strip_matrices_per_question
from ..data.strips import Strip
from ..model import GazeModel
from .observe import Observation
from .result import CheckResult, failed, judged, skipped

ROW_TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 5e-3}
"""Largest |captured - eager| of an attention probability."""
OUTPUT_TOL = {torch.float32: 1e-3, torch.bfloat16: 5e-2, torch.float16: 1e-2}
"""Largest relative difference of one head's attention output, gazeheads vs the eager reference. A
steered head's scores carry +-B = 1e4, where float32 values are 1e-3 apart, so two correct
implementations that round the scores in another order differ by up to about that much."""
MOVED = 0.05
"""A head counts as moved by the bias when its attention output changes by more than this (relative)."""
MOVED_ROWS = 0.1
"""... or its attention row by more than this in total variation (sum of |change| over keys)."""
TARGET_SHARE = 0.99
"""Least share of a steered head's image attention that must land on the target."""


def row_tolerance(dtype: torch.dtype) -> float:
    return ROW_TOL.get(dtype, ROW_TOL[torch.bfloat16])


def output_tolerance(dtype: torch.dtype) -> float:
    return OUTPUT_TOL.get(dtype, OUTPUT_TOL[torch.bfloat16])


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _missing(observed: Observation, layers: list[int]) -> list[int]:
    return [layer for layer in layers if layer not in observed.rows]


def capture_check(name: str, captured: Observation, eager: Observation, layers: list[int],
                  dtype: torch.dtype) -> CheckResult:
    """Every head of every sampled layer: gazeheads' captured row vs eager `output_attentions`."""
    tol = row_tolerance(dtype)
    bound = f"<= {tol:g}"
    missing = _missing(captured, layers)
    if missing:
        return failed(name, f"no attention rows were captured at layers {missing}: the language model's attention "
                            "does not run gazeheads' attention function", bound)
    errors = {}
    for layer in layers:
        ours, reference = captured.rows[layer], eager.rows[layer]
        if ours.shape != reference.shape:
            return failed(name, f"layer {layer}: captured rows {tuple(ours.shape)} vs eager {tuple(reference.shape)}",
                          bound)
        errors[layer] = float((ours - reference).abs().max())
    worst = max(errors.values())
    heads = captured.rows[layers[0]].shape[0]
    return judged(name, worst <= tol, f"max |captured - eager| {worst:.1e} (all {heads} heads of layers {layers})",
                  bound, per_layer=errors)


def _relative(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per head (first dim): ||a - b|| / ||b||."""
    diff = (a - b).flatten(1).norm(dim=1)
    return diff / b.flatten(1).norm(dim=1).clamp_min(1e-30)


def bias_check(name: str, *, plain: Observation, steered: Observation, eager_steered: Observation,
               layers: list[int], steer_layer: int, chosen: list[int], target: torch.Tensor, image: torch.Tensor,
               dtype: torch.dtype) -> CheckResult:
    """The bias on `chosen` heads of `steer_layer`: moves exactly those heads (their rows and their
    outputs), leaves the layers before untouched, equals the eager steering reference, and puts at
    least TARGET_SHARE of each steered head's image attention on the target positions."""
    tol, out_tol = row_tolerance(dtype), output_tolerance(dtype)
    bound = f"rows <= {tol:g}; moved heads = chosen; outputs <= {out_tol:g} rel.; target share >= {TARGET_SHARE}"
    missing = _missing(steered, layers)
    if missing:
        return failed(name, f"no attention rows were captured at layers {missing} while steering", bound)
    problems = []
    rows_vs_eager = max(float((steered.rows[l] - eager_steered.rows[l]).abs().max()) for l in layers)
    if not rows_vs_eager <= tol:
        problems.append(f"rows differ from eager steering by {rows_vs_eager:.1e}")
    before = [l for l in layers if l < steer_layer]
    untouched = max([float((steered.rows[l] - plain.rows[l]).abs().max()) for l in before], default=0.0)
    if not untouched <= tol:
        problems.append(f"layers {before} before the steered one changed by {untouched:.1e}")
    tv = (steered.rows[steer_layer] - plain.rows[steer_layer]).abs().sum(-1)
    moved_rows = sorted(int(h) for h in (tv > MOVED_ROWS).nonzero().flatten())
    if moved_rows != sorted(chosen):
        problems.append(f"attention rows moved at heads {moved_rows}")
    moved_out, out_vs_eager = None, float("nan")
    per_head = steered.head_outputs is not None and steered.head_outputs.shape[0] == plain.rows[steer_layer].shape[0]
    if per_head:
        change = _relative(steered.head_outputs, plain.head_outputs)
        moved_out = sorted(int(h) for h in (change > MOVED).nonzero().flatten())
        if moved_out != sorted(chosen):
            problems.append(f"attention outputs moved at heads {moved_out}")
        out_vs_eager = float(_relative(steered.head_outputs, eager_steered.head_outputs).max())
    elif steered.head_outputs is not None:  # one projected output: it must follow the eager steering
        out_vs_eager = float(_relative(steered.head_outputs, eager_steered.head_outputs).max())
        if not float(_relative(steered.head_outputs, plain.head_outputs).max()) > out_tol:
            problems.append("the attention output did not change")
    if not out_vs_eager <= out_tol and not math.isnan(out_vs_eager):
        problems.append(f"outputs differ from eager steering by {out_vs_eager:.1e} (relative)")
    shares = []
    for observed in (steered, eager_steered):
        row = observed.rows[steer_layer][chosen]
        shares.append((row[:, target].sum(-1) / row[:, image].sum(-1).clamp_min(1e-30)).min().item())
    share = min(shares)
    if not share >= TARGET_SHARE:
        problems.append(f"a steered head puts only {share:.3f} of its image attention on the target")
    heads = ", ".join(f"{steer_layer}:{h}" for h in chosen)
    if problems:
        measured = "; ".join(problems) + f" (chosen {heads})"
    else:
        measured = (f"rows vs eager steering {rows_vs_eager:.1e}; moved heads = chosen ({heads}); "
                    f"outputs vs eager {out_vs_eager:.1e}; target share >= {share:.4f}")
    return judged(name, not problems, measured, bound, rows_vs_eager=rows_vs_eager, untouched=untouched,
                  moved_rows=moved_rows, moved_outputs=moved_out, outputs_vs_eager=out_vs_eager, target_share=share,
                  chosen=[[steer_layer, h] for h in chosen])


def prefix_check(name: str, gm: GazeModel, strip: Strip, dtype: torch.dtype, shared: bool) -> CheckResult:
    """Discovery's shared-prefix path (one prefix forward, the N questions as one batch on its cache)
    against one full forward per question, on one strip: every head's N x N panel matrix."""
    tol = row_tolerance(dtype)
    bound = f"<= {tol:g}"
    if not shared:
        return skipped(name, "the panel questions share no prefix past the image here, so discovery runs one "
                             "forward per question already (nothing to compare)", bound)
    with torch.inference_mode():
        together = strip_matrices(gm, strip)
        separate = strip_matrices_per_question(gm, strip)
    error = float(np.abs(together - separate).max())
    layers, heads = together.shape[:2]
    return judged(name, error <= tol, f"max |shared - per question| {error:.1e} ({layers} layers x {heads} heads x "
                                      f"{strip.n_panels}x{strip.n_panels} panel masses)", bound)
