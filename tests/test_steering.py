"""Steering: the bias moves exactly the chosen heads, onto the target, at the right steps."""

from __future__ import annotations

import pytest
import torch

import gazeheads as gh
from gazeheads import hook, prompts
from gazeheads.heads import HeadSet

from conftest import draw_strip, model_pair


def run_with_capture(gm, encoded, layers, *, steer_args=None, generate=0, query_index=None):
    """Forward (or generate) with captures on `layers`; returns list of {layer: probs} per call."""
    calls: list[dict] = []

    def record(layer, probs, value):
        if layer == min(layers):
            calls.append({})
        calls[-1][layer] = probs

    request = hook.CaptureRequest(frozenset(layers), record, query_index=query_index)
    with hook.attach_plan(gm.attention_modules()) as plan:
        plan.captures.append(request)
        if steer_args is not None:
            steering = gh.steer(gm, *steer_args[0], encoded, **steer_args[1])
        else:
            import contextlib
            steering = contextlib.nullcontext()
        with steering, torch.no_grad():
            if generate:
                ids = gm.generate_ids(encoded, max_new_tokens=generate)
            else:
                gm.model(**encoded.inputs)
                ids = None
    return calls, ids


def image_share(probs, geometry, region):
    """Share of the image attention that falls on `region`, per head."""
    image = probs[..., geometry.positions].sum(-1)
    return probs[..., geometry.positions_of(region)].sum(-1) / image


def test_bias_changes_exactly_the_chosen_heads(family, strip):
    gm, _ = model_pair(family)
    chosen = HeadSet.of([(0, 1), (0, 3), (1, 2)], gm.shape)
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    plain, _ = run_with_capture(gm, encoded, [0, 1])
    steered, _ = run_with_capture(gm, encoded, [0, 1], steer_args=((chosen, gh.Panel(4)), {}))
    before, after = plain[0][0][0], steered[0][0][0]
    changed = (before - after).abs().amax(-1) > 1e-4
    assert changed.tolist() == [False, True, False, True]
    assert torch.equal(before[[0, 2]], after[[0, 2]])
    geometry = encoded.geometries[0]
    for layer, head in chosen:
        share = image_share(steered[0][layer][0, head], geometry, gh.Panel(4))
        assert share >= 0.99


def test_steering_leaves_no_state_behind(strip):
    gm, _ = model_pair("qwen3_vl")
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    with torch.no_grad():
        before = gm.model(**encoded.inputs).logits
    with pytest.raises(RuntimeError, match="boom"):
        with gh.steer(gm, HeadSet.of([(0, 0)], gm.shape), gh.Panel(2), encoded):
            raise RuntimeError("boom")
    assert not any(hasattr(m, hook._PLAN_ATTR) for m in gm.attention_modules())
    with torch.no_grad():
        after = gm.model(**encoded.inputs).logits
    assert torch.equal(before, after)


@pytest.mark.parametrize("mode", ["suppress_image", "suppress_all", "max_suppress_all", "boost_suppress"])
def test_bias_modes_remove_exactly_what_they_name(mode, strip):
    gm, _ = model_pair("qwen3_vl")
    head = (1, 2)
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    calls, _ = run_with_capture(gm, encoded, [1], steer_args=((HeadSet.of([head], gm.shape), gh.Panel(3)),
                                                               {"mode": mode}), generate=3)
    geometry = encoded.geometries[0]
    target = geometry.positions_of(gh.Panel(3))
    image = encoded.image_mask()[0]
    other_image = image.clone()
    other_image[target] = False
    text = encoded.inputs["attention_mask"][0].bool() & ~image
    last = calls[-1][1][0, head[1]]  # step 2: keys = prompt + 2 generated
    prompt_len = encoded.prompt_len
    assert last[:prompt_len][other_image].sum() < 1e-6
    text_mass = float(last[:prompt_len][text].sum())
    generated_mass = float(last[prompt_len:].sum())
    target_mass = float(last[target].sum())
    if mode == "suppress_image":  # only -B on the other image tokens: text and generated keep weight
        assert text_mass > 1e-3 and generated_mass > 1e-4
    if mode == "suppress_all":  # also -B on the prompt text
        assert text_mass < 1e-6 and generated_mass > 1e-4
    if mode in ("max_suppress_all", "boost_suppress"):  # everything but the target vanishes
        assert abs(target_mass - 1.0) < 1e-5


def test_decode_phases_leave_prompt_rows_unsteered(strip):
    gm, _ = model_pair("qwen3_vl")
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    heads = HeadSet.of([(0, 1)], gm.shape)
    last_prompt = ((heads, gh.Panel(5)), {"phase": "last-prompt+decode"})
    inner = torch.tensor([encoded.prompt_len - 3])
    plain_inner, _ = run_with_capture(gm, encoded, [0], query_index=inner)
    steered_inner, _ = run_with_capture(gm, encoded, [0], steer_args=last_prompt, query_index=inner)
    assert torch.equal(plain_inner[0][0], steered_inner[0][0])
    steered_last, _ = run_with_capture(gm, encoded, [0], steer_args=last_prompt)
    assert image_share(steered_last[0][0][0, 1], encoded.geometries[0], gh.Panel(5)) >= 0.99
    # the published "decode": not even the prompt's last position (the first generated token) is steered
    plain_last, _ = run_with_capture(gm, encoded, [0])
    decode_last, _ = run_with_capture(gm, encoded, [0], steer_args=((heads, gh.Panel(5)), {"phase": "decode"}))
    assert torch.equal(plain_last[0][0], decode_last[0][0])


def test_schedule_switches_target_at_the_requested_step(strip):
    gm, _ = model_pair("qwen3_vl")
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    heads = HeadSet.of([(1, 0), (1, 3)], gm.shape)
    schedule = gh.Schedule([(0, gh.Panel(1)), (3, gh.Panel(4)), (5, gh.Panel(6))])
    calls, ids = run_with_capture(gm, encoded, [1], steer_args=((heads, schedule), {}), generate=7)
    assert len(calls) == 7
    geometry = encoded.geometries[0]
    expected = [1, 1, 1, 4, 4, 6, 6]
    for step, panel in enumerate(expected):
        for _, head in heads:
            assert image_share(calls[step][1][0, head], geometry, gh.Panel(panel)) >= 0.99, (step, panel)


@pytest.mark.parametrize("numerics", ["exact", "reference"])
def test_batch_with_different_targets_equals_rows_one_by_one(numerics):
    """A padded batch and its rows one by one give the same tokens and attention rows.

    With exact numerics the rows agree to float rounding (1e-5). With the published numerics the
    bias is added to the float32 scores, which rounds every biased logit to a multiple of ulp(B)
    (2**-10 at B = 1e4): the batch's padded SDPA and the single row's differ by ~1e-7 in q.k, which
    can move a logit across a rounding boundary, i.e. by one ulp(B). Softmax turns a shift of u in
    a logit into a relative change of at most e^(2u) - 1 ~ 2u in each probability, so the bound is
    2 * ulp(B) * (largest probability) -- measured up to 6e-5 on some CPUs, never more than ~2e-3.
    """
    gm, _ = model_pair("qwen3_vl", kv_heads=2)
    strips = [draw_strip(seed=11), draw_strip(widths=(96, 64, 64, 64, 32, 96), seed=12)]
    questions = [prompts.NARRATION_QUESTION, prompts.discovery_question(2)]
    heads = HeadSet.of([(0, 0), (1, 1), (1, 3)], gm.shape)
    targets = [gh.Panel(2), gh.Schedule([(0, gh.Panel(6)), (2, gh.Panel(3))])]
    batch = gm.encode(strips, questions)
    options = {"numerics": numerics}
    batch_calls, batch_ids = run_with_capture(gm, batch, [1], steer_args=((heads, targets), options), generate=4)
    ulp = float(torch.finfo(torch.float32).eps) * 2 ** 13  # spacing of float32 values in [8192, 16384)
    for row in range(2):
        single = gm.encode(strips[row], questions[row])
        calls, ids = run_with_capture(gm, single, [1], steer_args=((heads, targets[row]), options), generate=4)
        assert torch.equal(ids[0], batch_ids[row])
        pad = batch.prompt_len - single.prompt_len
        for step in range(4):
            ours, theirs = batch_calls[step][1][row, :, pad:], calls[step][1][0]
            bound = 1e-5 if numerics == "exact" else 2 * ulp * float(theirs.max()) + 1e-6
            assert (ours - theirs).abs().max() <= bound


def test_targets_must_match_the_batch(strip):
    gm, _ = model_pair("qwen3_vl")
    encoded = gm.encode([strip, strip], prompts.NARRATION_QUESTION)
    with pytest.raises(gh.GazeheadsError, match="2 prompts"):
        with gh.steer(gm, HeadSet.of([(0, 0)], gm.shape), [gh.Panel(1)] * 3, encoded):
            pass


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), 0.0, -5.0])
def test_a_strength_that_is_not_a_positive_number_is_refused(strip, strength):
    gm, _ = model_pair("qwen3_vl")
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    with pytest.raises(gh.GazeheadsError, match="positive finite number"):
        with gh.steer(gm, HeadSet.of([(0, 0)], gm.shape), gh.Panel(1), encoded, strength=strength):
            pass


def test_region_without_image_tokens_is_a_clear_error(strip):
    gm, _ = model_pair("qwen3_vl")
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    with pytest.raises(gh.RegionError, match="covers no image token"):
        with gh.steer(gm, HeadSet.of([(0, 0)], gm.shape), gh.Box(0, 0, 3, 3), encoded):
            pass


# --------------------------------------------------------------------------- shared images


def test_rows_sharing_an_image_run_the_vision_tower_once_with_identical_results(family, strip):
    """One strip steered to several panels and a second strip in the same batch: the vision
    tower sees each distinct image once; logits and steered tokens equal per-row encoding."""
    gm, _ = model_pair(family)
    images = [strip] * 3 + [draw_strip(seed=5)] * 2
    encoded = gm.encode(images, prompts.NARRATION_QUESTION)
    assert encoded.image_groups == [0, 0, 0, 3, 3]
    separate = gm.encode(images, prompts.NARRATION_QUESTION)
    separate.images = None  # every row runs its own image through the vision tower

    passes = []
    visual = gm.adapter.base_model(gm.model).visual
    handle = visual.register_forward_hook(lambda module, args, kwargs, out: passes.append(
        kwargs["grid_thw"].shape[0] if "grid_thw" in kwargs else args[1].shape[0]), with_kwargs=True)
    try:
        with torch.no_grad(), gm.adapter.shared_images(gm.model, encoded.image_groups):
            shared_logits = gm.model(**encoded.inputs).logits
        with torch.no_grad():
            reference_logits = gm.model(**separate.inputs).logits
        assert passes == [2, 5]
        torch.testing.assert_close(shared_logits, reference_logits, atol=1e-5, rtol=1e-5)

        heads = HeadSet(((0, 1), (1, 2)), gm.shape)
        targets = [gh.Panel(1), gh.Panel(4), gh.Panel(6), gh.Panel(2), gh.Panel(5)]
        passes.clear()
        with gh.steer(gm, heads, targets, encoded):
            shared = gm.generate_ids(encoded, max_new_tokens=6)
        with gh.steer(gm, heads, targets, separate):
            reference = gm.generate_ids(separate, max_new_tokens=6)
        assert passes == [2, 5]
        assert torch.equal(shared, reference)
    finally:
        handle.remove()


# --------------------------------------------------------------------------- shared prompt (decode phase)


def test_decode_phase_batches_prefill_the_shared_prompt_once(family, strip):
    """One strip steered to each panel with phase="decode": the unsteered prompt is prefilled
    once for all rows, and the tokens equal those of the full batched prefill."""
    gm, _ = model_pair(family)
    encoded = gm.encode(strip, [prompts.NARRATION_QUESTION] * 4)
    heads = HeadSet(((0, 1), (1, 2)), gm.shape)
    schedule = gh.Schedule([(0, gh.Panel(5)), (2, gh.Panel(1))])
    targets = [gh.Panel(1), gh.Panel(3), gh.Panel(6), schedule]
    calls = []
    language = gm.adapter.base_model(gm.model).language_model
    handle = language.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(tuple(kwargs["inputs_embeds"].shape[:2])), with_kwargs=True)
    try:
        with gh.steer(gm, heads, targets, encoded, phase="decode"):
            shared = gm.generate_ids(encoded, max_new_tokens=6, min_new_tokens=6)
        assert calls[0] == (1, encoded.prompt_len - 1) and calls[1] == (4, 1)  # one prefill, then the rows
        calls.clear()
        with gh.steer(gm, heads, targets, encoded, phase="decode"):
            full = gm.generate_ids(encoded, max_new_tokens=6, min_new_tokens=6, share_prompt=False)
        assert calls[0] == (4, encoded.prompt_len)
        with gh.steer(gm, heads, targets, encoded):  # prefill+decode: every row prefills its own prompt
            calls.clear()
            gm.generate_ids(encoded, max_new_tokens=2)
        assert calls[0] == (4, encoded.prompt_len)
    finally:
        handle.remove()
    assert torch.equal(shared, full)
    assert len({tuple(row.tolist()) for row in shared}) > 1  # the targets made the rows differ


def test_sliding_window_layers_keep_their_positions_when_the_cache_drops_keys():
    """Gemma 3's sliding layers hand attention only the last W keys once the sequence is longer.

    Steering and tracking must place the bias and the attention by absolute position: the
    same generation with a cache that keeps every key (the window then lives in the mask
    alone) is the reference.
    """
    from transformers import DynamicCache

    from factories_families import make_gemma3

    model, processor = make_gemma3(seed=1, sliding_window=24, layer_types=["sliding_attention", "full_attention"])
    gm = gh.GazeModel(model, processor)
    enc = gm.encode(draw_strip(widths=(64, 64)), prompts.VQA_QUESTION)
    assert enc.prompt_len > 24
    heads = HeadSet.of([(0, 1), (0, 3), (1, 0)], gm.shape)

    def run(cache):
        with gh.steer(gm, heads, gh.Panel(2), enc), gh.track(gm, heads, enc) as tracker, torch.inference_mode():
            out = gm.model.generate(**enc.inputs, max_new_tokens=5, do_sample=False, output_logits=True,
                                    return_dict_in_generate=True, cache=cache,
                                    pad_token_id=gm.tokenizer.pad_token_id)
        return out, tracker.trace()

    windowed, windowed_trace = run(DynamicCache(config=model.config.text_config))
    assert windowed.cache.layers[0].keys.shape[-2] < windowed.sequences.shape[1] - 1  # keys were dropped
    full, full_trace = run(DynamicCache())
    assert torch.equal(windowed.sequences, full.sequences)
    assert max((a - b).abs().max().item() for a, b in zip(windowed.logits, full.logits)) <= 1e-5
    assert abs(windowed_trace.raw - full_trace.raw).max() <= 1e-6
    with gh.steer(gm, heads, gh.Panel(1), enc), torch.inference_mode():  # and the bias still acts
        other = gm.model.generate(**enc.inputs, max_new_tokens=5, do_sample=False, output_logits=True,
                                  return_dict_in_generate=True, pad_token_id=gm.tokenizer.pad_token_id)
    assert (other.logits[0] - windowed.logits[0]).abs().max() > 1e-3


def test_sliding_window_discovery_shares_the_prefix_exactly():
    from factories_families import make_gemma3

    from gazeheads import discovery

    model, processor = make_gemma3(seed=1, sliding_window=30, layer_types=["sliding_attention", "full_attention"])
    gm = gh.GazeModel(model, processor)
    strip = draw_strip(widths=(64, 64))
    reference = discovery.strip_matrices_per_question(gm, strip)
    shared = discovery.strip_matrices(gm, strip)
    assert reference[0].max() > 0.01  # the sliding layer still sees image keys from the last prompt token
    assert abs(shared - reference).max() <= 1e-6
