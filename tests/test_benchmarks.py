"""The benchmark compares like with like: its reference path and gazeheads agree.

Tests never assert on time; they check that the reference method as the benchmark runs it
(eager attention, output_attentions, mask-editing pre-hook) computes what gazeheads computes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gazeheads as gh
from gazeheads.discovery import strip_matrices, strip_matrices_per_question
from gazeheads import hook, prompts

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root holds `benchmarks`

from benchmarks import run as bench_run  # noqa: E402
from benchmarks.models import ModelSpec, build_model, draw_strip, spread_heads  # noqa: E402
from gazeheads.reference import eager_steer, reference_strip_matrices  # noqa: E402

SMALL_WIDTHS = (64, 96, 64, 32, 64, 128)


@pytest.fixture(scope="module")
def gm():
    return build_model(ModelSpec.tiny(layers=3), seed=1)


@pytest.fixture(scope="module")
def small_strip():
    return draw_strip(widths=SMALL_WIDTHS, height=64, seed=3)


def test_reference_discovery_gives_the_gazeheads_scores(gm, small_strip):
    reference = reference_strip_matrices(gm, small_strip)
    ours = strip_matrices(gm, small_strip)
    assert reference.shape == ours.shape == (3, 4, 6, 6)
    assert np.abs(reference - ours).max() <= 1e-5
    assert reference.sum() > 0
    # the reference switched the model to eager attention and back
    assert gm.model.config.text_config._attn_implementation == hook.ATTENTION_NAME
    assert gm.model.config.vision_config._attn_implementation == "sdpa"


def test_floor_runs_the_same_prefix_and_suffixes(gm, small_strip):
    prepared = bench_run.floor_inputs(gm, small_strip)
    full = gm.encode(small_strip, prompts.discovery_question(1))
    assert prepared["prefix_len"] > int(full.geometries[0].positions.max())
    assert prepared["prompt_len"] == full.prompt_len
    bench_run.floor_forward(gm, prepared)  # runs without a capture plan


def _gazeheads_last_rows(gm, heads, target, encoded):
    rows = {}
    request = hook.CaptureRequest(frozenset(range(gm.shape.n_layers)), lambda layer, probs, value: rows.setdefault(layer, probs))
    with hook.attach_plan(gm.attention_modules()) as plan, gh.steer(gm, heads, target, encoded), torch.no_grad():
        plan.captures.append(request)
        gm.model(**encoded.inputs)
    return rows


def test_eager_steering_gives_the_gazeheads_steered_attention(gm, small_strip):
    heads = spread_heads(gm.shape, 4)
    encoded = gm.encode(small_strip, prompts.VQA_QUESTION)
    ours = _gazeheads_last_rows(gm, heads, gh.Panel(2), encoded)
    with eager_steer(gm, heads, gh.Panel(2), encoded), torch.no_grad():
        attentions = gm.model(**encoded.inputs, output_attentions=True).attentions
    target = encoded.geometries[0].positions_of(gh.Panel(2))
    for layer in range(gm.shape.n_layers):
        assert torch.allclose(attentions[layer][:, :, -1].float(), ours[layer], atol=1e-5, rtol=0)
    for layer, head in heads:  # the steering took effect: the chosen heads look at the target
        assert float(attentions[layer][0, head, -1, target].sum()) >= 0.99
    assert gm.model.config.text_config._attn_implementation == hook.ATTENTION_NAME


def _greedy(gm, encoded, context, tokens=6):
    with context, torch.no_grad():
        out = gm.model.generate(**encoded.inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                output_logits=True, return_dict_in_generate=True)
    return out.sequences[:, encoded.prompt_len:], torch.stack(out.logits, 1)


@pytest.mark.parametrize("per_row", [False, True], ids=["one-target", "per-row-targets"])
def test_eager_steering_gives_the_gazeheads_greedy_tokens(gm, small_strip, per_row):
    heads = spread_heads(gm.shape, 4)
    if per_row:
        encoded = gm.encode(small_strip, [prompts.VQA_QUESTION] * 6)
        targets = [gh.Panel(k) for k in range(1, 7)]
    else:
        encoded = gm.encode(small_strip, prompts.VQA_QUESTION)
        targets = gh.Panel(5)
    ids, logits = _greedy(gm, encoded, gh.steer(gm, heads, targets, encoded))
    eager_ids, eager_logits = _greedy(gm, encoded, eager_steer(gm, heads, targets, encoded))
    _, plain_logits = _greedy(gm, encoded, torch.no_grad())
    assert torch.equal(ids, eager_ids)
    assert (logits - eager_logits).abs().max() <= 1e-4
    assert (logits - plain_logits).abs().max() > 1e-3  # steering changed the model's output
    if per_row:  # row k of the batch equals steering target k alone
        one = gm.encode(small_strip, prompts.VQA_QUESTION)
        for row, target in enumerate(targets):
            alone_ids, alone_logits = _greedy(gm, one, gh.steer(gm, heads, target, one))
            assert torch.equal(alone_ids[0], ids[row])
            assert (alone_logits[0] - logits[row]).abs().max() <= 1e-4


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_quick_benchmark_writes_its_report(tmp_path, capsys, dtype):
    """bfloat16 is the GPU run's dtype: running it here keeps that path working without a GPU."""
    out = tmp_path / "quick.json"
    threads = torch.get_num_threads()
    try:
        assert bench_run.main(["--quick", "--threads", "1", "--dtype", dtype, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads(out.read_text())
    assert report["machine"]["dtype"] == dtype
    if dtype == "float32":
        assert report["discovery"]["max_abs_score_diff"] <= 1e-5
    else:  # the score goal is stated in fp32: a bf16 run re-checks it after casting the model up
        assert report["discovery"]["fp32_max_abs_score_diff"] <= 1e-5
    assert set(report["discovery"]["methods"]) == {"reference", "gazeheads", "floor", "plain_inference",
                                                   "encode_6_prompts"}
    assert report["generation"]["greedy_tokens_equal_gazeheads_vs_eager"]
    assert report["evaluation"]["greedy_tokens_equal_batched_vs_one_at_a_time"]
    assert {"cpu", "torch", "transformers", "device", "dtype"} <= set(report["machine"])
    assert len(report["goals"]) == 7
    assert "discovery" in capsys.readouterr().out
