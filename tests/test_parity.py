"""Parity with the published method on the inputs and settings the paper used (issue 13).

Each reference below is written from the published facts, not from gazeheads' code:

* stitching: height rounded to a multiple of 32 (Python round, at least 32); each panel resized
  with LANCZOS to width round_to_32(int(w * H / h)) (at least 32); pasted edge to edge; for a
  gap g > 0, a white band painted over each inner boundary x from x - g//2 to x + (g - g//2) - 1;
* decode-only steering: only forwards with a single query position are steered, so the first
  generated token (computed at the prompt's last position in the prefill) is not;
* numerics: the bias is added to eager attention scores in the model's dtype (bf16 here).
"""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from PIL import Image

import gazeheads as gh
from gazeheads import hook, prompts
from gazeheads.data import stitch
from gazeheads.heads import HeadSet
from gazeheads.layout import StripLayout
from gazeheads.reference import EagerSteering, eager_everywhere

from conftest import model_pair

MERGED_TOKEN_PX = 32  # Qwen3-VL: patch 16, spatial merge 2


# --- stitching --------------------------------------------------------------------------------------


def published_round_to_32(value: float) -> int:
    return max(32, round(value / 32) * 32)


def published_stitch(panels: list[Image.Image], height: int, gap: int) -> tuple[Image.Image, list[int]]:
    target_h = published_round_to_32(height)
    resized = []
    for panel in panels:
        w, h = panel.size
        resized.append(panel.convert("RGB").resize((published_round_to_32(int(w * target_h / h)), target_h),
                                                   Image.LANCZOS))
    widths = [p.width for p in resized]
    canvas = Image.new("RGB", (sum(widths), target_h), (255, 255, 255))
    x = 0
    boundaries = []
    for p in resized:
        canvas.paste(p, (x, 0))
        x += p.width
        boundaries.append(x)
    if gap > 0:
        pixels = np.array(canvas)
        for x in boundaries[:-1]:
            pixels[:, x - gap // 2: x + (gap - gap // 2) - 1 + 1] = 255  # inclusive end, as published
        canvas = Image.fromarray(pixels)
    return canvas, widths


def random_panels(rng: random.Random, n: int) -> list[Image.Image]:
    panels = []
    for _ in range(n):
        w = rng.choice([rng.randint(5, 31), rng.randint(32, 400), rng.randint(400, 900)])  # narrow, usual, wide
        h = rng.choice([rng.randint(5, 60), rng.randint(60, 500)])  # including odd aspect ratios
        noise = np.random.default_rng(rng.randint(0, 10**6)).integers(0, 255, (h, w, 3), dtype=np.uint8)
        panels.append(Image.fromarray(noise))
    return panels


@pytest.mark.parametrize("seed", range(12))
def test_stitching_is_pixel_identical_to_the_published_rules(seed):
    rng = random.Random(seed)
    panels = random_panels(rng, rng.randint(1, 7))
    height = rng.choice([20, 48, 64, 100, 200, 256, 300])
    gap = rng.choice([0, 1, 6, 7, 12])
    strip = stitch(panels, StripLayout(height=height, gap=gap, n_panels=len(panels)))
    expected, widths = published_stitch(panels, height, gap)
    assert [x1 - x0 for x0, _, x1, _ in strip.panel_boxes] == widths
    assert strip.image.size == expected.size
    assert np.array_equal(np.array(strip.image), np.array(expected))


def test_a_194x107_panel_is_448_px_wide_at_height_256():
    """int(194 * 256 / 107) = 464 -> 448: the published truncation, not round(464.1) -> 480."""
    strip = stitch([Image.new("RGB", (194, 107))], StripLayout(height=256, gap=0, n_panels=1))
    assert strip.panel_boxes == [(0, 0, 448, 256)]


@pytest.mark.parametrize("seed", range(6))
def test_no_merged_token_holds_pixels_of_two_panels(seed):
    """On Qwen3-VL every panel edge lies on a 32-px token boundary, and each panel owns exactly its columns."""
    gm, _ = model_pair("qwen3_vl")
    rng = random.Random(100 + seed)
    panels = random_panels(rng, 6)
    strip = stitch(panels, StripLayout(height=64, gap=6))
    geometry = gm.encode(strip, prompts.NARRATION_QUESTION).geometries[0]
    assert geometry.cols * MERGED_TOKEN_PX == strip.image.width  # the processor did not resize the strip
    column = torch.arange(geometry.rows * geometry.cols) % geometry.cols
    for k, (x0, _, x1, _) in enumerate(strip.panel_boxes, start=1):
        assert x0 % MERGED_TOKEN_PX == 0 and x1 % MERGED_TOKEN_PX == 0
        owned = geometry.cell_mask(gh.Panel(k))
        assert torch.equal(owned, (column >= x0 // MERGED_TOKEN_PX) & (column < x1 // MERGED_TOKEN_PX))


# --- decode-only steering ------------------------------------------------------------------------------


def greedy_logits(gm, encoded, steering, n_new=4):
    with steering, torch.no_grad():
        out = gm.model.generate(**encoded.inputs, max_new_tokens=n_new, do_sample=False, output_logits=True,
                                return_dict_in_generate=True, pad_token_id=gm.tokenizer.pad_token_id)
    return out.sequences[:, encoded.prompt_len:], torch.stack(out.logits, 1).float()


@pytest.mark.parametrize("target", [2, 5])
def test_decode_phase_leaves_the_first_token_unsteered_and_then_equals_the_eager_reference(target):
    import contextlib

    gm, _ = model_pair("qwen3_vl", kv_heads=2)
    strip = gh.data.resolve_comics("synth:5", StripLayout(height=64, gap=0), limit=1)[0]
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    heads = HeadSet.of([(0, 1), (1, 0), (1, 3)], gm.shape)
    _, plain = greedy_logits(gm, encoded, contextlib.nullcontext())
    ids, ours = greedy_logits(gm, encoded, gh.steer(gm, heads, gh.Panel(target), encoded, phase="decode"))
    with eager_everywhere(gm):
        ref_ids, reference = greedy_logits(gm, encoded, EagerSteering(gm, heads, gh.Panel(target), encoded,
                                                                      phase="decode"))
    assert (ours[:, 0] - plain[:, 0]).abs().max() <= 1e-5  # the first generated token: unsteered
    assert torch.equal(ids, ref_ids)
    assert (ours - reference).abs().max() <= 1e-4  # SDPA vs eager for the unsteered heads: float rounding
    assert (ours[:, 1:] - plain[:, 1:]).abs().max() > 1e-2  # and later steps are steered


# --- bf16 numerics ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bf16_pair():
    gm32, _ = model_pair("qwen3_vl", kv_heads=2)
    model = copy.deepcopy(gm32.model).to(torch.bfloat16)
    return gm32, gh.GazeModel(model, gm32.processor, name="bf16")


def test_reference_numerics_in_bf16_equal_the_eager_bf16_reference(bf16_pair):
    _, gm = bf16_pair
    strip = gh.data.resolve_comics("synth:9", StripLayout(height=64, gap=0), limit=1)[0]
    encoded = gm.encode([strip, strip], prompts.NARRATION_QUESTION)
    heads = HeadSet.of([(0, 0), (0, 3), (1, 2)], gm.shape)
    targets = [gh.Panel(2), gh.Panel(6)]
    ids, ours = greedy_logits(gm, encoded, gh.steer(gm, heads, targets, encoded, numerics="reference"))
    with eager_everywhere(gm):
        ref_ids, reference = greedy_logits(gm, encoded, EagerSteering(gm, heads, targets, encoded))
    assert torch.equal(ids, ref_ids)
    bf16_step = float(reference.abs().max()) * 2 ** -7  # one bf16 rounding step at the logits' scale
    assert (ours - reference).abs().max() <= 4 * bf16_step


def test_exact_numerics_stay_within_bf16_noise_of_float32(bf16_pair):
    import contextlib

    gm32, gm16 = bf16_pair
    strip = gh.data.resolve_comics("synth:9", StripLayout(height=64, gap=0), limit=1)[0]
    heads = HeadSet.of([(0, 0), (0, 3), (1, 2)], gm32.shape)
    enc32 = gm32.encode(strip, prompts.NARRATION_QUESTION)
    enc16 = gm16.encode(strip, prompts.NARRATION_QUESTION)
    _, plain32 = greedy_logits(gm32, enc32, contextlib.nullcontext(), n_new=1)
    _, plain16 = greedy_logits(gm16, enc16, contextlib.nullcontext(), n_new=1)
    noise = float((plain16 - plain32).abs().median())  # what bf16 alone does to these logits
    _, exact32 = greedy_logits(gm32, enc32, gh.steer(gm32, heads, gh.Panel(4), enc32, numerics="exact"), n_new=1)
    _, exact16 = greedy_logits(gm16, enc16, gh.steer(gm16, heads, gh.Panel(4), enc16, numerics="exact"), n_new=1)
    _, ref16 = greedy_logits(gm16, enc16, gh.steer(gm16, heads, gh.Panel(4), enc16, numerics="reference"), n_new=1)
    assert float((exact16 - exact32).abs().median()) <= 2 * noise + 1e-3
    # the published bf16 path is a different computation (uniform attention inside the target)
    assert float((ref16 - exact32).abs().max()) > float((exact16 - exact32).abs().max())


def test_reference_bf16_steered_heads_attend_uniformly_inside_the_target(bf16_pair):
    _, gm = bf16_pair
    strip = gh.data.resolve_comics("synth:9", StripLayout(height=64, gap=0), limit=1)[0]
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    heads = HeadSet.of([(1, 2)], gm.shape)
    rows = {}
    for numerics in ("reference", "exact"):
        captured = []
        request = hook.CaptureRequest(frozenset({1}), lambda layer, probs, value: captured.append(probs))
        with gh.steer(gm, heads, gh.Panel(3), encoded, numerics=numerics), \
                hook.requesting(gm.attention_modules(), capture=request), torch.no_grad():
            gm.model(**encoded.inputs)
        target = encoded.geometries[0].positions_of(gh.Panel(3))
        rows[numerics] = captured[0][0, 2, target]
    reference, exact = rows["reference"], rows["exact"]
    assert float(reference.sum()) >= 0.99 and float(exact.sum()) >= 0.99
    assert float(reference.max() - reference.min()) <= 1e-3  # uniform
    assert float(exact.max() - exact.min()) > 1e-3  # the model's own preferences inside the target
