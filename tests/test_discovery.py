"""Discovery: gaze scores as defined, prefix sharing exact, rankings as files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import gazeheads as gh
from gazeheads.discovery import strip_matrices, strip_matrices_per_question
from gazeheads import prompts
from gazeheads.heads import HeadSet

from conftest import draw_strip, model_pair
from factories import make_qwen


def eager_matrices(gm, eager, strip):
    """Reference computation: eager attention, output_attentions=True, one forward per question."""
    n = strip.n_panels
    out = np.zeros((gm.shape.n_layers, gm.shape.n_heads, n, n))
    for k in range(1, n + 1):
        encoded = gm.encode(strip, prompts.discovery_question(k, n))
        with torch.no_grad():
            attentions = eager(**encoded.inputs, output_attentions=True).attentions
        geometry = encoded.geometries[0]
        for j in range(1, n + 1):
            positions = geometry.positions_of(gh.Panel(j))
            for layer, att in enumerate(attentions):
                out[layer, :, k - 1, j - 1] = att[0, :, -1, positions].sum(-1).numpy()
    return out


@pytest.mark.parametrize("kv_heads", [4, 2], ids=["mha", "gqa"])
def test_prefix_shared_discovery_equals_one_forward_per_question(family, kv_heads, strip):
    gm, eager = model_pair(family, kv_heads=kv_heads)
    shared = strip_matrices(gm, strip)
    separate = strip_matrices_per_question(gm, strip)
    reference = eager_matrices(gm, eager, strip)
    assert shared.shape == (gm.shape.n_layers, gm.shape.n_heads, 6, 6)
    assert np.abs(shared - separate).max() <= 1e-5
    assert np.abs(shared - reference).max() <= 1e-5


def test_gaze_score_is_the_mean_diagonal_over_strips():
    gm, _ = model_pair("qwen3_vl")
    strips = [draw_strip(seed=s) for s in range(3)]
    ranking = gh.discover(gm, strips, progress=False)
    per_strip = np.stack([strip_matrices(gm, s) for s in strips])
    assert np.abs(ranking.matrices - per_strip.mean(0)).max() <= 1e-6
    expected = np.diagonal(per_strip.mean(0), axis1=-2, axis2=-1).mean(-1)
    assert np.abs(ranking.scores - expected).max() <= 1e-6
    best = ranking.top(3)
    flat = expected.reshape(-1)
    assert sorted(flat[[l * gm.shape.n_heads + h for l, h in best]].tolist()) == sorted(np.sort(flat)[-3:].tolist())


def test_ranking_round_trip_and_shape_check(tmp_path):
    gm, _ = model_pair("qwen3_vl")
    ranking = gh.discover(gm, [draw_strip(seed=1), draw_strip(seed=2)], progress=False, source="noise")
    path = ranking.save(tmp_path / "ranking.json")
    meta = json.loads(path.read_text())
    assert meta["model"]["n_layers"] == 2 and meta["model"]["n_heads"] == 4 and meta["model"]["n_kv_heads"] == 2
    assert meta["model"]["fingerprint"] == gm.fingerprint()
    strips = meta["data"].pop("strips")
    assert meta["data"] == {"source": "noise", "n_strips": 2, "n_panels": 6, "strip_ids": ["noise-1", "noise-2"]}
    assert [s["comic_id"] for s in strips] == ["noise-1", "noise-2"]
    assert strips[0]["digest"] == draw_strip(seed=1).digest != strips[1]["digest"]
    assert meta["prompts"][2] == prompts.discovery_question(3, 6)
    loaded = gh.Ranking.load(path)
    assert np.allclose(loaded.scores, ranking.scores, atol=1e-7)
    assert loaded.per_strip.shape == (2, 2, 4, 6, 6)
    assert loaded.top(3) == ranking.top(3)
    loaded.check_compatible(gm)
    other, _ = model_pair("qwen3_vl", kv_heads=4)
    with pytest.raises(gh.ModelError, match="Run `gazeheads discover` on this model"):
        loaded.check_compatible(other)
    with pytest.raises(gh.ModelError, match="another shape|shape"):
        with gh.steer(other, loaded.top(2), gh.Panel(1), other.encode(draw_strip(), prompts.VQA_QUESTION)):
            pass


def test_discovery_resumes_from_its_checkpoint(tmp_path):
    gm, _ = model_pair("qwen3_vl")
    strips = [draw_strip(seed=s) for s in range(3)]
    full = gh.discover(gm, strips, progress=False)
    gh.discover(gm, strips[:2], progress=False, checkpoint_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2
    calls = []
    original = gh.discovery.strip_matrices

    def counting(model, strip):
        calls.append(strip.comic_id)
        return original(model, strip)

    gh.discovery.strip_matrices = counting
    try:
        resumed = gh.discover(gm, strips, progress=False, checkpoint_dir=tmp_path)
    finally:
        gh.discovery.strip_matrices = original
    assert calls == ["noise-2"]
    assert np.abs(resumed.scores - full.scores).max() <= 1e-6


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    gm, _ = model_pair("qwen3_vl", heads=4, layers=2)
    other = gh.GazeModel(*make_qwen("qwen3_vl", layers=2, heads=4, kv_heads=2, seed=7))  # same shape, other weights
    strips = [draw_strip()]
    gh.discover(gm, strips, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(gh.DataError, match="written for another model"):
        gh.discover(other, strips, progress=False, checkpoint_dir=tmp_path)


def test_head_selection_rules():
    gm, _ = model_pair("qwen3_vl", heads=4, layers=2)
    scores = np.arange(8, dtype=float).reshape(2, 4)  # head (1, 3) best, (0, 0) worst
    ranking = gh.Ranking("m", "f", gm.shape, np.zeros((2, 4, 2, 2)))
    ranking.matrices = np.stack([np.eye(2) * s for s in scores.reshape(-1)]).reshape(2, 4, 2, 2)
    assert list(ranking.top(2)) == [(1, 3), (1, 2)]
    control = ranking.random_control(2, seed=0, percentile=50)
    assert set(control) <= {(0, 0), (0, 1), (0, 2), (0, 3)}
    assert ranking.random_control(2, seed=0, percentile=50) == control
    with pytest.raises(gh.HeadSelectionError, match="K=9 heads asked of a model with 8 heads"):
        ranking.top(9)
    with pytest.raises(gh.HeadSelectionError, match="percentile"):
        ranking.random_control(3, percentile=5, widen=False)
    with pytest.warns(gh.GazeheadsWarning, match="at or below score percentile 5;"):  # widened: 3 lowest outside top-3
        widened = ranking.random_control(3, percentile=5)
    assert set(widened) == {(0, 0), (0, 1), (0, 2)} and "percentile <= 37.5" in widened.name
    with pytest.raises(gh.HeadSelectionError, match="percentile"):  # 3 heads outside the top-5: nothing to widen to
        ranking.random_control(5, percentile=5)
    assert len(ranking.all_heads()) == 8
    with pytest.raises(gh.HeadSelectionError, match="does not exist"):
        HeadSet.of([(2, 0)], gm.shape)


def test_mixed_panel_counts_and_empty_input_are_errors():
    gm, _ = model_pair("qwen3_vl")
    with pytest.raises(gh.DataError, match="has 3 panels, the first strip 6"):
        gh.discover(gm, [draw_strip(), draw_strip(widths=(64, 64, 64))], progress=False)
    with pytest.raises(gh.DataError, match="No strips"):
        gh.discover(gm, [], progress=False)
