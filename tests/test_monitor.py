"""The monitor as a specification: what it measures, what it may read, and how it decides.

Tiny random models (built in code) check exactness and isolation; the bundled model's
separation and the commands are in test_monitor_bundled.py.
"""

from __future__ import annotations

import ast
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gazeheads as gh
from gazeheads import hook, prompts
from gazeheads.heads import HeadSet
from gazeheads.monitor import (ALL_FEATURES, FEATURES, Alert, Calibration, GenerationFeatures, MonitorView,
                               monitor, shadow_model)
from gazeheads.monitor.calibration import NullScores
from gazeheads.monitor.design import GROUPS, Design
from gazeheads.monitor.features import head_stats
from gazeheads.monitor.metrics import (auroc, cluster_bootstrap_auroc, delay_summary, detection_delays,
                                       weakest_detected)
from gazeheads.monitor.probe import average_probes, fit_probe
from gazeheads.specs import MODES, PHASES

from conftest import model_pair

MONITOR_DIR = Path(gh.__file__).parent / "monitor"
OBSERVER_MODULES = ("features", "recorder", "view", "session", "shadow", "detectors", "calibration", "probe")
"""The modules a deployed monitor runs. design, generate and evaluate are the evaluation harness: they
play the attacker (they steer), so they are not part of what must stay blind."""


def view_of(gm) -> MonitorView:
    return MonitorView(HeadSet.of([(1, 0), (1, 2)], gm.shape, "gaze"), HeadSet.all_heads(gm.shape))


# what it measures ------------------------------------------------------------------------


def _direct_stats(row: np.ndarray, image: np.ndarray) -> tuple[float, float, float]:
    """focus, share and cliff of one attention row, computed the slow way."""
    values = row[image]
    share = values.sum()
    p = values / share
    entropy = -sum(v * math.log(v) for v in p if v > 0)
    logs = sorted(math.log(max(v, 1e-30)) for v in values)
    return 1 - entropy / math.log(len(values)), share, max(b - a for a, b in zip(logs, logs[1:]))


def test_head_stats_match_a_direct_computation():
    torch.manual_seed(1)
    probs = torch.softmax(torch.randn(2, 3, 12) * 3, -1)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, 2:8] = True
    mask[1, 1:4] = True  # rows with different numbers of image tokens
    stats = head_stats(probs, mask)
    for b in range(2):
        for h in range(3):
            focus, share, cliff = _direct_stats(probs[b, h, :10].double().numpy(), mask[b].numpy())
            assert stats.focus[b, h].item() == pytest.approx(focus, abs=1e-5)
            assert stats.image_share[b, h].item() == pytest.approx(share, abs=1e-6)
            assert stats.cliff[b, h].item() == pytest.approx(cliff, abs=1e-4)


def test_an_additive_region_bias_opens_a_cliff_of_about_twice_its_strength():
    torch.manual_seed(0)
    logits = torch.randn(1, 1, 20)
    mask = torch.ones(1, 20, dtype=torch.bool)
    region = torch.zeros(20)
    region[5:9] = 1.0
    natural = head_stats(torch.softmax(logits, -1), mask).cliff.item()
    spread = (logits.max() - logits.min()).item()
    for strength in (5.0, 20.0):
        biased = logits + strength * (2 * region - 1)  # +B on the region, -B elsewhere (boost_suppress)
        cliff = head_stats(torch.softmax(biased, -1), mask).cliff.item()
        assert cliff >= 2 * strength - spread - 1e-4  # the region's lowest logit clears the rest's highest
        assert cliff > natural


def test_monitor_features_equal_features_of_eager_attention(strip):
    gm, eager = model_pair("qwen3_vl")
    encoded = gm.encode([strip, strip], [prompts.VQA_QUESTION, prompts.NARRATION_QUESTION])
    view = view_of(gm)
    with monitor(gm, view, encoded) as watcher, torch.no_grad():
        gm.model(**encoded.inputs)
    features = watcher.features()[:, 0]  # step 0: the prompt's last position
    with torch.no_grad():
        attentions = eager(**encoded.inputs, output_attentions=True).attentions
    image = encoded.image_mask().numpy()
    for b in range(2):
        per_head = {(l, h): _direct_stats(attentions[l][b, h, -1].double().numpy(), image[b])
                    for l, h in view.heads()}
        for group, heads in (("gaze", view.gaze.heads), ("wide", view.wide.heads)):
            focus, share, cliff = (np.array([per_head[h][i] for h in heads]) for i in range(3))
            expected = {"focus": focus.mean(), "share": share.mean(), "cliff_max": cliff.max(),
                        "cliff_mean": cliff.mean()}
            for name, value in expected.items():
                assert features[b, FEATURES.index(f"{group}_{name}")] == pytest.approx(value, abs=1e-4), (group, name)


# what it may read ------------------------------------------------------------------------


class Tripwire:
    """Stands in for the plan's bias source and forwards to it, recording every attribute read made from
    inside the monitor's own modules."""

    def __init__(self, real) -> None:
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "from_monitor", [])
        object.__setattr__(self, "from_elsewhere", 0)

    def __getattribute__(self, name):
        if name in ("_real", "from_monitor", "from_elsewhere"):
            return object.__getattribute__(self, name)
        frame, files = sys._getframe(1), []
        while frame is not None:
            files.append(frame.f_code.co_filename)
            frame = frame.f_back
        if any(Path(f).parent == MONITOR_DIR for f in files):
            object.__getattribute__(self, "from_monitor").append(name)
        else:
            object.__setattr__(self, "from_elsewhere", object.__getattribute__(self, "from_elsewhere") + 1)
        return getattr(object.__getattribute__(self, "_real"), name)


def test_monitor_never_reads_the_steering_plan(strip):
    gm, _ = model_pair("qwen3_vl")
    encoded = gm.encode([strip, strip], prompts.NARRATION_QUESTION)
    heads = HeadSet.of([(1, 0), (1, 2)], gm.shape)
    shadow = shadow_model(gm)
    with gh.steer(gm, heads, [gh.Panel(2), gh.Panel(5)], encoded):
        plan = hook.attached_plan(gm.attention_modules())
        wire = plan.bias = Tripwire(plan.bias)
        with monitor(gm, view_of(gm), encoded, shadow=shadow) as watcher:
            ids = gm.generate_ids(encoded, max_new_tokens=4)
        result = watcher.result(ids)
    assert wire.from_monitor == [], f"the monitor read the steering plan's {sorted(set(wire.from_monitor))}"
    assert wire.from_elsewhere > 0  # the attention function did read it: the wire was live
    assert result.generation_scores["cliff"].min() > 30  # and the steering it applied is visible


def test_observer_modules_never_name_the_steering_plan():
    forbidden = {"bias", "Steerer", "steer", "steering", "attached_plan", "bias_suspended", "_gazeheads_plan",
                 "row_bias", "head_index", "retarget", "schedules"}
    for name in OBSERVER_MODULES:
        tree = ast.parse((MONITOR_DIR / f"{name}.py").read_text())
        named = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        named |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        named |= {a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        named |= {n.module.rsplit(".", 1)[-1] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not named & forbidden, f"monitor/{name}.py names {sorted(named & forbidden)}"


def test_monitor_leaves_the_plan_as_it_found_it(strip):
    gm, _ = model_pair("qwen3_vl")
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    with monitor(gm, view_of(gm), encoded):
        assert len(hook.attached_plan(gm.attention_modules()).captures) == 1
    assert hook.attached_plan(gm.attention_modules()) is None
    heads = HeadSet.of([(1, 0)], gm.shape)
    with gh.steer(gm, heads, gh.Panel(3), encoded):
        plan = hook.attached_plan(gm.attention_modules())
        bias = plan.bias
        with monitor(gm, view_of(gm), encoded):
            gm.generate_ids(encoded, max_new_tokens=2)
        assert plan.bias is bias and plan.captures == []


# the shadow ------------------------------------------------------------------------------


def test_shadow_replay_agrees_without_steering_and_disagrees_with_it(strip):
    gm, _ = model_pair("qwen3_vl")
    encoded = gm.encode([strip, strip], [prompts.NARRATION_QUESTION, prompts.VQA_QUESTION])  # left padding
    shadow = shadow_model(gm)
    with monitor(gm, view_of(gm), encoded, shadow=shadow) as watcher:
        ids = gm.generate_ids(encoded, max_new_tokens=5)
    clean = watcher.result(ids)
    assert np.nanmax(clean.features[..., ALL_FEATURES.index("shadow_wide_tv")]) < 1e-4
    assert clean.generation_scores["shadow"].tolist() == [0.0, 0.0]
    with gh.steer(gm, HeadSet.of([(0, 3)], gm.shape), gh.Panel(4), encoded, strength=5.0):
        with monitor(gm, view_of(gm), encoded, shadow=shadow) as watcher:
            ids = gm.generate_ids(encoded, max_new_tokens=5)
    steered = watcher.result(ids)
    assert steered.generation_scores["shadow"].min() > 0.05  # head (0, 3) is in the wide view, not the gaze set


# decisions -------------------------------------------------------------------------------


def _calibration(null_steps, null_generations) -> Calibration:
    """A cliff calibration whose null generations are one step long each."""
    return Calibration({"gaze": [], "wide": [], "shape": [1, 1, 1]}, "",
                       {"cliff": NullScores(np.asarray(null_steps, float), [np.array([g]) for g in null_generations])})


def test_conformal_p_values_and_thresholds():
    cal = _calibration(range(10), np.arange(199.0))  # generation null: 0, 1, ..., 198
    assert cal.p_values("cliff", np.array([198.5, 198.0, -1.0]), "generation", lengths=1).tolist() == pytest.approx(
        [1 / 200, 2 / 200, 1.0])
    assert cal.threshold("cliff", 0.01, "generation", length=1) == 197.0  # at most one null score may reach it
    flags = cal.flags("cliff", np.array([197.0, 197.5, 250.0]), 0.01, lengths=[1, 1, 1])
    assert flags.tolist() == [False, True, True]
    assert cal.threshold("cliff", 0.05, "step") == math.inf  # 10 null steps cannot support a 5% rate
    assert not cal.flags("cliff", np.array([1e9]), 0.05, "step").any()
    assert np.isnan(cal.p_values("cliff", np.array([np.nan]), lengths=1)[0])
    with pytest.raises(gh.GazeheadsError, match="how many steps"):
        cal.p_values("cliff", np.array([1.0]))


def test_a_generation_is_compared_with_generations_at_least_as_long():
    rng = np.random.default_rng(5)
    short = [rng.normal(size=3) for _ in range(300)]
    long = [rng.normal(size=19) for _ in range(300)]  # more steps, so a higher maximum by chance
    null = NullScores(np.concatenate(short + long), short + long)
    assert len(null.generation_null(3)) == 600 and len(null.generation_null(19)) == 300
    assert np.allclose(null.generation_null(19), np.sort([g.max() for g in long]))
    assert np.allclose(null.generation_null(3), np.sort([g[:3].max() for g in short + long]))
    assert len(null.generation_null(40)) == 300  # longer than any: compared with the longest
    cal = Calibration({"gaze": [], "wide": [], "shape": [1, 1, 1]}, "", {"cliff": null})
    fresh_short = np.array([rng.normal(size=3).max() for _ in range(4000)])
    fresh_long = np.array([rng.normal(size=19).max() for _ in range(4000)])
    for fresh, n in ((fresh_short, 3), (fresh_long, 19)):  # each length keeps (about) its rate
        assert cal.flags("cliff", fresh, 0.05, lengths=n).mean() == pytest.approx(0.05, abs=0.025)


def test_thresholds_hold_their_false_positive_rate_on_fresh_negatives():
    rng = np.random.default_rng(0)
    n_null, n_fresh = 5000, 50000
    cal = _calibration([0.0], rng.normal(size=n_null))
    fresh = rng.normal(size=n_fresh)
    for rate in (0.01, 0.05, 0.2):
        spread = math.sqrt(rate * (1 - rate)) * (1 / math.sqrt(n_null) + 1 / math.sqrt(n_fresh))
        assert cal.flags("cliff", fresh, rate, lengths=1).mean() == pytest.approx(rate, abs=4 * spread)


def test_calibration_round_trips_and_refuses_another_view(tmp_path):
    rng = np.random.default_rng(1)

    def generation(cluster, shift, steered):
        features = rng.normal(size=(6, len(ALL_FEATURES))) + shift
        return GenerationFeatures(features, cluster, np.ones(6, bool) if steered else None)

    negatives = [generation(f"s{i}", 0.0, False) for i in range(40)]
    positives = [generation(f"s{i}", 3.0, True) for i in range(40)]
    view = {"gaze": [[0, 1]], "wide": [[0, 0], [0, 1]], "shape": [1, 2, 1]}
    cal = Calibration.fit(negatives, positives, view=view, fingerprint="abc")
    assert set(cal.detectors) == {"entropy", "cliff", "shadow", "probe"}
    assert cal.info["probe_halves"] == 2  # cross-fitted
    assert len(cal.nulls["probe"].running) == 40  # every negative, each scored by the probe of the other half
    loaded = Calibration.load(cal.save(tmp_path / "cal.json"))
    scores = rng.normal(size=50)
    for detector in cal.detectors:
        for level in ("step", "generation"):
            assert np.allclose(loaded.p_values(detector, scores, level, lengths=6),
                               cal.p_values(detector, scores, level, lengths=6))
    assert np.allclose(loaded.probe.logit(np.zeros(len(FEATURES))), cal.probe.logit(np.zeros(len(FEATURES))))
    with pytest.raises(gh.GazeheadsError, match="another monitor view"):
        loaded.check({**view, "gaze": [[0, 0]]}, "abc")


def test_probe_separates_what_it_was_trained_on_and_averages_linearly():
    rng = np.random.default_rng(2)
    negatives, positives = rng.normal(size=(300, 3)), rng.normal(size=(100, 3)) + [2.0, 0.0, 0.0]
    probe = fit_probe(negatives, positives, ("a", "b", "c"))
    assert probe.weights[0] > 5 * max(abs(probe.weights[1]), abs(probe.weights[2]))
    assert auroc(probe.logit(negatives), probe.logit(positives)) > 0.9
    other = fit_probe(negatives[::2] * 2, positives[::2], ("a", "b", "c"))
    x = rng.normal(size=(10, 3))
    assert np.allclose(average_probes([probe, other]).logit(x), (probe.logit(x) + other.logit(x)) / 2)


def test_alerts_fire_during_generation_with_a_calibration(strip):
    gm, _ = model_pair("qwen3_vl")
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    view = view_of(gm)
    cal = Calibration(view.to_dict(), gm.fingerprint(), {"cliff": NullScores(np.zeros(500), [np.zeros(3)] * 500)})
    alerts: list[Alert] = []
    with gh.steer(gm, view.gaze, gh.Panel(2), encoded):
        with monitor(gm, None, encoded, calibration=cal, on_alert=alerts.append) as watcher:
            ids = gm.generate_ids(encoded, max_new_tokens=3)
    assert [a.step for a in alerts] == [0, 1, 2] and {a.detector for a in alerts} == {"cliff"}
    result = watcher.result(ids)
    assert result.flagged("cliff").tolist() == [True]
    with pytest.raises(gh.GazeheadsError, match="Alerts need a calibration"):
        with monitor(gm, view, encoded, on_alert=alerts.append):
            pass


def test_the_module_is_the_context_manager(strip):
    import gazeheads.monitor as gm_monitor

    gm, _ = model_pair("qwen3_vl")
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    with gm_monitor(gm, view_of(gm), encoded) as watcher:
        gm.generate_ids(encoded, max_new_tokens=2)
    assert watcher.result().step_scores["cliff"].shape == (1, 2)


# metrics ---------------------------------------------------------------------------------


def test_auroc_counts_ties_as_half_and_matches_all_pairs():
    rng = np.random.default_rng(3)
    neg, pos = rng.integers(0, 5, 40).astype(float), rng.integers(1, 6, 30).astype(float)
    pairs = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert auroc(neg, pos) == pytest.approx(pairs)
    assert auroc([1, 2], [3]) == 1.0 and auroc([3], [1, 2]) == 0.0 and math.isnan(auroc([], [1]))


def test_cluster_bootstrap_auroc_resamples_whole_strips():
    rng = np.random.default_rng(4)
    clusters = [f"strip{i}" for i in range(30)]
    neg, pos = rng.normal(size=30), rng.normal(size=30) + 1.0
    value, low, high = cluster_bootstrap_auroc(neg, clusters, pos, clusters, n_resamples=500)
    assert value == pytest.approx(auroc(neg, pos)) and low < value < high
    perfect = cluster_bootstrap_auroc(neg, clusters, pos + 100, clusters, n_resamples=200)
    assert perfect == (1.0, 1.0, 1.0)


def test_weakest_strength_and_detection_delay():
    curve = [(1, 0.55), (3, 0.85), (10, 0.79), (30, 0.9), (100, 0.97)]
    assert weakest_detected(curve) == (30, 10)
    assert weakest_detected([(1, 0.9), (10, 1.0)]) == (1, None)
    flags = [[False, True, False, False, True], [False] * 5, [True, False, False, True, True]]
    delays = detection_delays(flags, onset=2)
    assert delays == [2, None, 1]
    assert delay_summary(delays) == {"n": 3, "detected": 2, "detected_rate": 2 / 3, "median": 1.5, "mean": 1.5,
                                     "max": 2, "at_onset": 0}


# the design ------------------------------------------------------------------------------


def test_design_covers_strengths_modes_phases_k_random_and_schedules():
    design = Design(k=4, ks=(1, 2, 8))
    positives = design.positives()
    strengths = sorted({c.steer.strength for c in positives if c.group == "strength"})
    assert strengths[0] == 1 and strengths[-1] == 10000 and len(strengths) >= 5
    assert {c.steer.mode for c in positives} == set(MODES)
    assert {c.steer.phase for c in positives} == set(PHASES)
    assert {c.k for c in positives} == {1, 2, 4, 8}
    assert {c.heads for c in positives} == {"gaze", "random"}
    assert {c.schedule for c in positives} == {"fixed", "switch", "onset"}
    assert {c.group for c in positives} == set(GROUPS)
    assert {c.prompt for c in design.negatives()} == {"narrate", "panel", "vqa", "scene"}
    assert design.paper() in positives
    names = [c.name for c in design.conditions()]
    assert len(names) == len(set(names))


def test_steered_steps_follow_phase_and_onset():
    design = Design(k=4)
    by = {(c.steer.phase, c.schedule): c for c in design.positives() if c.steer.strength == 10000 and c.k == 4
          and c.heads == "gaze" and c.prompt == "narrate" and c.steer.mode == "boost_suppress"}
    assert by[("prefill+decode", "fixed")].steered_steps(4, onset=2) == [True] * 4
    assert by[("decode", "fixed")].steered_steps(4, onset=2) == [False, True, True, True]
    assert by[("prefill+decode", "onset")].steered_steps(4, onset=2) == [False, False, True, True]
    assert design.negatives()[0].steered_steps(3, onset=1) == [False] * 3
