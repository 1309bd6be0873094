"""The bundled tiny model end to end: gaze steering redirects it, random heads do not,
all heads break it, and `gazeheads run --quick` writes its report."""

from __future__ import annotations

import json

import pytest

import gazeheads as gh
from gazeheads import cli, prompts
from gazeheads.specs import HeadSpec, default_k
from gazeheads.evaluation.judges import make_judge
from gazeheads.evaluation.runner import EvalSettings, evaluate_strips
from gazeheads.evaluation.session import ProcessInfo, finish, open_store
from gazeheads.synth import make_strip


@pytest.fixture(scope="module")
def bundled():
    gm = gh.load()
    ranking = gh.discover(gm, [make_strip(300_000 + i) for i in range(8)], progress=False)
    return gm, ranking


def steered_accuracy(gm, heads, strips):
    """Share of (strip, target) pairs whose ambiguous-question answer is the target's caption."""
    hits = total = 0
    for strip in strips:
        encoded = gm.encode(strip, [prompts.NARRATION_QUESTION] * strip.n_panels)
        with gh.steer(gm, heads, [gh.Panel(k) for k in range(1, strip.n_panels + 1)], encoded):
            answers = gm.generate(encoded, max_new_tokens=4)
        for k, answer in enumerate(answers):
            hits += answer.split(".")[0].strip() == strip.captions[k]
            total += 1
    return hits / total


def test_gaze_heads_redirect_and_random_heads_do_not(bundled):
    gm, ranking = bundled
    strips = [make_strip(100_000 + i) for i in range(4)]
    k = default_k(gm.shape.total)
    unsteered = gm.generate(gm.encode(strips[0], prompts.NARRATION_QUESTION), max_new_tokens=4)[0]
    assert unsteered.startswith(strips[0].captions[0])  # unsteered: the first panel
    gaze = steered_accuracy(gm, ranking.top(k), strips)
    random = steered_accuracy(gm, ranking.random_control(k, seed=0, percentile=50), strips)
    assert gaze >= 0.8, gaze
    assert random <= 0.35, random


def box_accuracy(gm, heads, seeds):
    """Share of scene objects whose shape the answer names when the heads are steered to its box."""
    from gazeheads.synth import make_scene

    hits = total = 0
    for seed in seeds:
        image, objects = make_scene(seed)
        encoded = gm.encode(image, [prompts.SCENE_QUESTION] * len(objects))
        boxes = [gh.Box(x, y, x + w, y + h) for x, y, w, h in (o.bbox for o in objects)]
        with gh.steer(gm, heads, boxes, encoded):
            answers = gm.generate(encoded, max_new_tokens=4)
        hits += sum(o.shape in answer.split() for o, answer in zip(objects, answers))
        total += len(objects)
    return hits / total


def test_box_steering_names_the_boxed_object(bundled):
    gm, ranking = bundled
    seeds = range(200_000, 200_006)  # held-out scenes
    k = default_k(gm.shape.total)
    gaze = box_accuracy(gm, ranking.top(k), seeds)
    random = box_accuracy(gm, ranking.random_control(k, seed=0, percentile=50), seeds)
    assert gaze >= 0.7, gaze
    assert gaze >= 2 * random, (gaze, random)


def test_all_heads_break_generation(bundled):
    gm, ranking = bundled
    strips = [make_strip(100_000 + i) for i in range(2)]
    assert steered_accuracy(gm, ranking.all_heads(), strips) <= 0.35


def test_every_protocol_runs_on_the_bundled_model(bundled, tmp_path):
    gm, ranking = bundled
    strips = [make_strip(100_000 + i, comic_id=f"synth_{100_000 + i:06d}") for i in range(2)]
    k = default_k(gm.shape.total)
    common = dict(heads=HeadSpec(k=k, percentile=50), strips_per_batch=2)
    store = open_store(tmp_path, ProcessInfo(), resume=True)
    runs = [
        EvalSettings(protocol="narration", max_new_tokens=4, **common),
        EvalSettings(protocol="vqa", max_new_tokens=4, **common),
        EvalSettings(protocol="dynamic", question="Narrate this comic strip panel by panel.", segment_tokens=3,
                     **common),
        EvalSettings(protocol="topk", topk=(2, 4), max_new_tokens=4, **common),
    ]
    for settings in runs:
        evaluate_strips(gm, ranking, strips, settings, make_judge("truth"), store, progress=False)
    rows = finish(tmp_path, ProcessInfo(), title="bundled", settings={}, echo=False)
    by = {(r["protocol"], r["condition"], r["k"]): r for r in rows}
    assert by[("narration", "gaze", k)]["accuracy"] > by[("narration", "random", k)]["accuracy"]
    assert {("topk", "gaze", 2), ("topk", "gaze", 4), ("topk", "random", 4)} <= set(by)
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert (tmp_path / "topk_curve.png").exists() and (tmp_path / "dynamic_schedules.png").exists()


def test_run_quick_writes_its_report_and_prints_no_dependency_warning(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "gazeheads", "run", "--quick", "--out-root", str(tmp_path),
                           "--discover-strips", "4", "--n-strips", "2", "--scenes", "3"],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    noise = [line for line in done.stderr.splitlines()
             if "Warning" in line or "warn(" in line or "Loading weights" in line or "deprecated" in line]
    assert noise == [], noise  # dependencies' warnings and loading bars only with --verbose
    assert "narration" in done.stdout and "wrote " in done.stdout
    out = tmp_path / "quick"
    for name in ("ranking.json", "generations.jsonl", "summary.json", "report.html", "tracking_unsteered.png",
                 "tracking_steered.png", "tracking.json", "discovery_score_map.png"):
        assert (out / name).exists(), name
    protocols = {row["protocol"] for row in json.loads((out / "summary.json").read_text())["results"]}
    assert protocols == {"narration", "vqa", "dynamic", "coco"}

    # the model card's steering section is generated from this run, and replaced (not repeated) on rerun
    import shutil

    from gazeheads.tiny import card, model_path

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(model_path() / "MODEL_CARD.md", model_dir / "MODEL_CARD.md")
    card.update_card(out, model_dir)
    text = card.update_card(out, model_dir).read_text()
    assert text.count(card.SECTION) == 1 and text.startswith("# tiny-qwen3vl")
    rows = json.loads((out / "summary.json").read_text())["results"]
    coco_all = next(r for r in rows if r["protocol"] == "coco" and r["condition"] == "gaze" and r["size_class"] == "all")
    assert f"| all | {coco_all['n']} | {100 * coco_all['accuracy']:.1f}%" in text
    assert (model_dir / "README.md").read_text() == text
