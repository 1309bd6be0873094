"""Live re-steering and per-token heat maps: the two core features the browser demo relies on.

`Steering.retarget` moves a row's target for the tokens not generated yet, from any thread,
while `generate()` runs; `Tracker(keep_image_attention=True)` keeps, per step, the tracked
heads' attention on every image token.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from transformers.generation.streamers import BaseStreamer

import gazeheads as gh
from gazeheads import prompts
from gazeheads.heads import HeadSet

from conftest import model_pair
from test_steering import image_share, run_with_capture

HEADS = [(0, 1), (1, 0), (1, 3)]


class _OnStep(BaseStreamer):
    """Calls `fn(step)` after each generated token (the first put is the prompt)."""

    def __init__(self, fn) -> None:
        self.fn, self.step, self.seen_prompt = fn, 0, False

    def put(self, value) -> None:
        if not self.seen_prompt:
            self.seen_prompt = True
            return
        self.fn(self.step)
        self.step += 1

    def end(self) -> None:
        pass


def _setup(strip):
    gm, _ = model_pair("qwen3_vl")
    return gm, gm.encode(strip, prompts.NARRATION_QUESTION), HeadSet.of(HEADS, gm.shape)


def _shares_per_step(gm, encoded, heads, run):
    """Run `run(steering)` inside steer()+capture; per step, the steered heads' share on each panel."""
    calls = []

    def record(layer, probs, value):
        if layer == 1:
            calls.append(probs)

    from gazeheads import hook

    with hook.attach_plan(gm.attention_modules()) as plan:
        plan.captures.append(hook.CaptureRequest(frozenset([1]), record))
        with gh.steer(gm, heads, gh.Panel(2), encoded) as steering:
            ids = run(steering)
    geometry = encoded.geometries[0]
    panels = []
    for probs in calls:
        shares = [float(image_share(probs[0, 3], geometry, gh.Panel(k))) for k in range(1, 7)]
        panels.append(int(np.argmax(shares)) + 1)
    return panels, ids


def test_retarget_before_generation_equals_a_schedule(strip):
    gm, encoded, heads = _setup(strip)
    schedule = gh.Schedule([(0, gh.Panel(2)), (3, gh.Panel(5))])
    _, expected = run_with_capture(gm, encoded, [1], steer_args=((heads, schedule), {}), generate=6)

    def run(steering):
        assert steering.retarget(0, gh.Panel(5), from_step=3) == 3
        return gm.generate_ids(encoded, max_new_tokens=6)

    panels, ids = _shares_per_step(gm, encoded, heads, run)
    assert panels == [2, 2, 2, 5, 5, 5]
    assert torch.equal(ids, expected)


def test_retarget_during_generation_applies_from_the_next_token(strip):
    gm, encoded, heads = _setup(strip)
    applied = {}

    def run(steering):
        def on_step(step):
            if step == 2:  # token 2 is out: the forwards of steps 0..2 are done
                applied["from"] = steering.retarget(0, gh.Panel(6))
        return gm.generate_ids(encoded, max_new_tokens=6, streamer=_OnStep(on_step))

    panels, ids = _shares_per_step(gm, encoded, heads, run)
    assert applied["from"] == 3
    assert panels == [2, 2, 2, 6, 6, 6]
    schedule = gh.Schedule([(0, gh.Panel(2)), (3, gh.Panel(6))])
    _, expected = run_with_capture(gm, encoded, [1], steer_args=((heads, schedule), {}), generate=6)
    assert torch.equal(ids, expected)


def test_retarget_never_rewrites_a_step_already_built(strip):
    gm, encoded, heads = _setup(strip)

    def run(steering):
        def on_step(step):
            if step == 3:
                # asked for step 1, but steps 0..3 already ran: the change starts at 4
                assert steering.retarget(0, gh.Panel(4), from_step=1) == 4
                assert steering.last_step == 3
        return gm.generate_ids(encoded, max_new_tokens=6, streamer=_OnStep(on_step))

    panels, _ = _shares_per_step(gm, encoded, heads, run)
    assert panels == [2, 2, 2, 2, 4, 4]


def test_retarget_from_another_thread_while_generate_runs(strip):
    """The demo's situation: the web thread moves the target while the model thread generates."""
    gm, encoded, heads = _setup(strip)
    token_out, moved = threading.Event(), threading.Event()
    result = {}

    def run(steering):
        def web_thread():
            token_out.wait(timeout=30)
            result["from"] = steering.retarget(0, gh.Panel(5))
            moved.set()

        thread = threading.Thread(target=web_thread)
        thread.start()

        def on_step(step):
            if step == 1:
                token_out.set()
                assert moved.wait(timeout=30)  # the generation thread waits for the web thread's move

        ids = gm.generate_ids(encoded, max_new_tokens=5, streamer=_OnStep(on_step))
        thread.join(timeout=30)
        return ids

    panels, _ = _shares_per_step(gm, encoded, heads, run)
    assert result["from"] == 2
    assert panels == [2, 2, 5, 5, 5]


def test_cell_mask_target_equals_the_same_cells_as_a_panel(strip):
    gm, encoded, heads = _setup(strip)
    geometry = encoded.geometries[0]
    cells = geometry.cell_mask(gh.Panel(3))
    with gh.steer(gm, heads, gh.Panel(3), encoded):
        by_panel = gm.generate_ids(encoded, max_new_tokens=4)
    with gh.steer(gm, heads, cells, encoded):
        by_cells = gm.generate_ids(encoded, max_new_tokens=4)
    assert torch.equal(by_panel, by_cells)

    def run(steering):
        steering.retarget(0, geometry.cell_mask(gh.Panel(6)), from_step=2)
        return gm.generate_ids(encoded, max_new_tokens=4)

    panels, _ = _shares_per_step(gm, encoded, heads, run)
    assert panels == [2, 2, 6, 6]


def test_retarget_to_a_union_of_regions(strip):
    gm, encoded, heads = _setup(strip)
    geometry = encoded.geometries[0]
    with gh.steer(gm, heads, gh.Panel(1), encoded) as steering:
        steering.retarget(0, [gh.Panel(2), gh.Panel(4)], from_step=0)
        mask = steering.target_mask(0)[0]
    expected = torch.zeros_like(mask)
    expected[geometry.positions_of(gh.Panel(2))] = True
    expected[geometry.positions_of(gh.Panel(4))] = True
    assert torch.equal(mask, expected)


def test_bad_retargets_are_clear_errors(strip):
    gm, encoded, heads = _setup(strip)
    with gh.steer(gm, heads, gh.Panel(1), encoded) as steering:
        with pytest.raises(gh.GazeheadsError, match="Row 1"):
            steering.retarget(1, gh.Panel(2))
        with pytest.raises(gh.GazeheadsError, match="cell mask of 3 entries"):
            steering.retarget(0, torch.tensor([True, False, True]))
        with pytest.raises(gh.GazeheadsError, match="at least one set"):
            steering.retarget(0, torch.zeros(encoded.geometries[0].positions.numel(), dtype=torch.bool))
        with pytest.raises(gh.GazeheadsError, match="Not a steering region"):
            steering.retarget(0, ["panel 2"])
        with pytest.raises(gh.RegionError, match="6-panel strip"):
            steering.retarget(0, gh.Panel(9))
        # a failed retarget changes nothing
        assert torch.equal(steering.target_mask(5)[0], steering.target_mask(0)[0])


def test_tracker_keeps_the_attention_on_every_image_token(strip):
    gm, encoded, heads = _setup(strip)
    with gh.track(gm, heads, encoded, keep_image_attention=True) as tracker:
        gm.generate_ids(encoded, max_new_tokens=3)
    trace = tracker.trace()
    geometry = encoded.geometries[0]
    assert tracker.steps() == [0, 1, 2]
    for step in tracker.steps():
        (heat,) = tracker.image_attention(step)
        assert heat.shape == (geometry.rows * geometry.cols,)
        assert heat.min() >= 0
        assert abs(heat.sum() - trace.image[0, step]) < 1e-5  # the same image share as the trace
        for k in range(1, 7):
            cells = geometry.cell_mask(gh.Panel(k)).numpy()
            assert abs(heat[cells].sum() - trace.raw[0, step, k - 1]) < 1e-5


def test_tracker_image_attention_under_steering_sits_on_the_target(strip):
    gm, encoded, heads = _setup(strip)
    with gh.steer(gm, heads, gh.Panel(4), encoded), \
            gh.track(gm, heads, encoded, keep_image_attention=True) as tracker:
        gm.generate_ids(encoded, max_new_tokens=2)
    cells = encoded.geometries[0].cell_mask(gh.Panel(4)).numpy()
    for step in tracker.steps():
        (heat,) = tracker.image_attention(step)
        assert heat[cells].sum() / heat.sum() > 0.999


def test_tracker_without_the_option_keeps_nothing_per_token(strip):
    gm, encoded, heads = _setup(strip)
    with gh.track(gm, heads, encoded, value_weighted=False) as tracker:
        gm.generate_ids(encoded, max_new_tokens=1)
    with pytest.raises(ValueError, match="keep_image_attention=True"):
        tracker.image_attention(0)
