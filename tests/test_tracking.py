"""Tracking: per-step region attention of a head set, raw, normalised and value-weighted."""

from __future__ import annotations

import numpy as np
import torch

import gazeheads as gh
from gazeheads import hook, prompts
from gazeheads.heads import HeadSet

from conftest import model_pair


def test_tracking_follows_a_steered_schedule(strip):
    gm, _ = model_pair("qwen3_vl")
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    heads = HeadSet.of([(1, 0), (1, 2)], gm.shape)
    schedule = gh.Schedule([(0, gh.Panel(2)), (2, gh.Panel(5)), (4, gh.Panel(3))])
    with gh.steer(gm, heads, schedule, encoded), gh.track(gm, heads, encoded) as tracker:
        gm.generate_ids(encoded, max_new_tokens=6)
    trace = tracker.trace()
    assert trace.normalised.shape == (1, 6, 6)
    assert trace.focus()[0].tolist() == [1, 1, 4, 4, 2, 2]
    assert np.allclose(trace.normalised.sum(-1), 1.0, atol=1e-5)  # panels partition the image tokens
    assert trace.normalised.max(-1).min() >= 0.99


def test_one_region_list_per_row_or_a_clear_error(strip):
    import pytest

    gm, _ = model_pair("qwen3_vl")
    encoded = gm.encode([strip, strip], prompts.NARRATION_QUESTION)
    heads = HeadSet.of([(1, 0)], gm.shape)
    for lists in ([[gh.Panel(1)]], [[gh.Panel(1)]] * 3):
        with pytest.raises(gh.GazeheadsError, match=f"{len(lists)} region lists for a batch of 2"):
            with gh.track(gm, heads, encoded, regions=lists):
                pass


def test_raw_and_value_weighted_masses_match_a_direct_computation(strip):
    gm, _ = model_pair("qwen3_vl")
    encoded = gm.encode(strip, prompts.VQA_QUESTION)
    heads = HeadSet.of([(0, 1), (0, 2), (1, 3)], gm.shape)
    seen = {}
    request = hook.CaptureRequest(frozenset({0, 1}), lambda l, p, v: seen.__setitem__(l, (p, v)))
    with gh.track(gm, heads, encoded, value_weighted=False) as plain, gh.track(gm, heads, encoded) as weighted:
        with hook.attach_plan(gm.attention_modules()) as plan, torch.no_grad():
            plan.captures.append(request)
            gm.model(**encoded.inputs)
    geometry = encoded.geometries[0]
    panel3 = geometry.positions_of(gh.Panel(3))
    rows, weighted_rows = [], []
    for layer, head in heads:
        probs, value = seen[layer]
        rows.append(probs[0, head])
        norms = value[0].float().norm(dim=-1).repeat_interleave(2, 0)[head]
        w = probs[0, head] * norms
        weighted_rows.append(w / w.sum())
    expected_raw = np.mean([float(r[panel3].sum()) for r in rows])
    expected_weighted = np.mean([float(r[panel3].sum()) for r in weighted_rows])
    assert abs(plain.trace().raw[0, 0, 2] - expected_raw) < 1e-6
    assert abs(weighted.trace().raw[0, 0, 2] - expected_weighted) < 1e-6
    image = np.mean([float(r[geometry.positions].sum()) for r in rows])
    assert abs(plain.trace().normalised[0, 0, 2] - expected_raw / image) < 1e-5
