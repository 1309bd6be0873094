"""The attention hook: captures equal eager attention, an empty plan is plain SDPA."""

from __future__ import annotations

import copy

import pytest
import torch

import gazeheads as gh
from gazeheads import hook, prompts

from conftest import draw_strip, model_pair


def capture_all_layers(gm, encoded, query_index=None):
    """Run one forward and return {layer: (batch, heads, keys)} captured rows."""
    rows = {}
    request = hook.CaptureRequest(
        frozenset(range(gm.shape.n_layers)), lambda layer, probs, value: rows.__setitem__(layer, probs),
        query_index=query_index,
    )
    with hook.attach_plan(gm.attention_modules()) as plan, torch.no_grad():
        plan.captures.append(request)
        logits = gm.model(**encoded.inputs).logits
    return rows, logits


@pytest.mark.parametrize("kv_heads", [4, 2], ids=["mha", "gqa"])
def test_captured_rows_equal_eager_output_attentions(family, kv_heads, strip):
    gm, eager = model_pair(family, kv_heads=kv_heads)
    # Two prompts of different lengths: left padding shifts row positions.
    encoded = gm.encode([strip, draw_strip(seed=3)], [prompts.VQA_QUESTION, prompts.discovery_question(4)])
    assert not bool(encoded.inputs["attention_mask"].all()), "the batch should contain left padding"
    rows, _ = capture_all_layers(gm, encoded)
    with torch.no_grad():
        reference = eager(**encoded.inputs, output_attentions=True).attentions
    assert len(rows) == gm.shape.n_layers
    for layer in range(gm.shape.n_layers):
        expected = reference[layer][:, :, -1, :].float()
        assert rows[layer].dtype == torch.float32
        assert rows[layer].shape == expected.shape
        assert (rows[layer] - expected).abs().max() <= 1e-5


def test_capture_at_chosen_query_rows_equals_eager(strip):
    gm, eager = model_pair("qwen3_vl")
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    index = torch.tensor([encoded.prompt_len - 5])
    rows, _ = capture_all_layers(gm, encoded, query_index=index)
    with torch.no_grad():
        reference = eager(**encoded.inputs, output_attentions=True).attentions
    for layer in range(gm.shape.n_layers):
        assert (rows[layer][0] - reference[layer][0, :, index[0], :]).abs().max() <= 1e-5


def test_empty_plan_logits_equal_plain_sdpa(family, strip):
    gm, _ = model_pair(family)
    plain = copy.deepcopy(gm.model)
    plain.set_attn_implementation({"text_config": "sdpa"})
    assert gm.adapter.attention_implementation(gm.model) == hook.ATTENTION_NAME
    encoded = gm.encode([strip, draw_strip(seed=5)], [prompts.VQA_QUESTION, prompts.NARRATION_QUESTION])
    with torch.no_grad():
        ours = gm.model(**encoded.inputs).logits
        # An attached but empty plan must not change anything either.
        with hook.attach_plan(gm.attention_modules()):
            attached = gm.model(**encoded.inputs).logits
        reference = plain(**encoded.inputs).logits
    assert (ours - reference).abs().max() <= 1e-5
    assert (attached - reference).abs().max() <= 1e-5


def test_capture_and_generate_use_the_kv_cache(strip):
    """During generate() every step's captured row equals an eager full forward at that step."""
    gm, eager = model_pair("qwen3_vl")
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    captured = []
    request = hook.CaptureRequest(frozenset({1}), lambda layer, probs, value: captured.append(probs))
    with hook.attach_plan(gm.attention_modules()) as plan:
        plan.captures.append(request)
        new = gm.generate_ids(encoded, max_new_tokens=3)
    assert len(captured) == 3
    full = torch.cat([encoded.inputs["input_ids"], new[:, :2]], 1)
    inputs = dict(encoded.inputs, input_ids=full,
                  attention_mask=torch.ones_like(full), mm_token_type_ids=torch.nn.functional.pad(
                      encoded.inputs["mm_token_type_ids"], (0, 2)))
    with torch.no_grad():
        reference = eager(**inputs, output_attentions=True).attentions[1]
    for step in range(3):
        keys = encoded.prompt_len + step
        expected = reference[0, :, keys - 1, :keys]
        assert (captured[step][0] - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("kind", ["none", "bool", "additive"])
def test_mask_forms_give_the_same_capture(kind):
    """The function accepts a None, boolean or additive mask and treats them alike."""
    torch.manual_seed(0)
    batch, heads, kv, q_len, dim = 2, 4, 2, 5, 8
    query, key = torch.randn(batch, heads, q_len, dim), torch.randn(batch, kv, q_len, dim)
    causal = torch.ones(q_len, q_len, dtype=torch.bool).tril()[None, None].expand(batch, 1, -1, -1)
    mask = {"none": None, "bool": causal,
            "additive": torch.zeros(causal.shape).masked_fill(~causal, torch.finfo(torch.float32).min)}[kind]
    base = hook._additive_mask(mask, q_len, q_len, query.device)
    got = hook._captured_rows(query, key, base, None, dim ** -0.5, torch.tensor([2, 4]))
    full = (query @ key.repeat_interleave(2, 1).transpose(-1, -2)) * dim ** -0.5
    full = full.masked_fill(~causal, float("-inf")).softmax(-1)
    expected = torch.stack([full[0, :, 2], full[1, :, 4]])
    assert (got - expected).abs().max() <= 1e-6


@pytest.mark.parametrize("numerics", ["reference", "exact"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_bias_beyond_the_dtype_range_saturates_instead_of_overflowing(dtype, numerics):
    """+-1e5 does not fit in fp16 (max 65504): the mask is clamped, not turned into inf/NaN."""
    import types

    torch.manual_seed(0)
    module = types.SimpleNamespace(num_key_value_groups=2, is_causal=True, layer_idx=0)
    q, k, v = torch.randn(1, 2, 1, 16), torch.randn(1, 1, 40, 16), torch.randn(1, 1, 40, 16)
    rows = torch.zeros(1, 1, 40)
    rows[..., 5:10], rows[..., 10:] = 1e5, -1e5
    bias = hook.HeadBias(torch.tensor([0]), rows, numerics)
    exact = hook._steered_output(module, q, k, v, None, None, bias, 0.25, 0.0)
    low = hook._steered_output(module, q.to(dtype), k.to(dtype), v.to(dtype), None, None, bias, 0.25, 0.0)
    assert torch.isfinite(low).all()
    if numerics == "reference":  # the bias is added in the low dtype: the target's scores round to one value,
        exact[:, :, 0] = v[:, 0, 5:10].mean(1)  # so steered head 0 attends uniformly to the target's keys
    assert (low.float() - exact).abs().max() <= 0.03
