"""`gazeheads presence`: a permutation test that tells a planted gaze-head set from none."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

import gazeheads as gh
from gazeheads.adapters import HeadShape
from gazeheads.ranking import StripIdentity
from gazeheads.presence import presence_plot, presence_test, ranking_presence

SHAPE = (16, 3, 8, 4)  # strips, layers, heads, panels
PLANTED = [(1, 2), (2, 5), (0, 7)]


def discovery_matrices(seed: int, signal: float = 0.0) -> np.ndarray:
    """Per-strip (queried x attended) panel masses of random heads; `signal` adds a gaze pattern to 3 heads.

    Each head spends a random share of its attention on the image (half of it for the three
    candidate heads), spread over the panels without regard to the question; a gaze head
    moves `signal` of that share onto the queried panel.
    """
    strips, layers, heads, n = SHAPE
    rng = np.random.default_rng(seed)
    image_share = rng.uniform(0.05, 0.6, (1, layers, heads, 1, 1))
    for layer, head in PLANTED:
        image_share[0, layer, head] = 0.5
    spread = rng.dirichlet(np.ones(n), (strips, layers, heads, n))
    matrices = image_share * spread
    for layer, head in PLANTED:
        matrices[:, layer, head] = (1 - signal) * matrices[:, layer, head] + signal * 0.5 * np.eye(n)
    return matrices


def test_planted_gaze_heads_are_found_and_none_are_not():
    planted = presence_test(discovery_matrices(0, signal=0.3), k=3, n_permutations=400, seed=1)
    none = presence_test(discovery_matrices(0, signal=0.0), k=3, n_permutations=400, seed=1)
    assert planted.p_value == pytest.approx(1 / 401)  # no permutation reaches the observed statistic
    assert planted.present and planted.effect_size > 5 and planted.ratio > 1.5
    assert {(l, h) for l, h, _ in planted.top_heads} == set(PLANTED)
    assert none.p_value > 0.2 and not none.present and abs(none.effect_size) < 2
    assert "gaze heads present" in planted.verdict() and "no evidence" in none.verdict()


def test_the_null_controls_false_positives():
    """Without gaze heads, p < 0.1 in about 10% of data sets (the selection of the top K is part of the null)."""
    p_values = [presence_test(discovery_matrices(seed), k=3, n_permutations=99, seed=seed).p_value
                for seed in range(40)]
    assert 0.0 <= np.mean(np.array(p_values) < 0.1) <= 0.25
    assert 0.3 <= np.mean(p_values) <= 0.7


def test_results_are_seeded():
    matrices = discovery_matrices(3, signal=0.05)
    a = presence_test(matrices, k=2, n_permutations=200, seed=7)
    b = presence_test(matrices, k=2, n_permutations=200, seed=7)
    c = presence_test(matrices, k=2, n_permutations=200, seed=8)
    assert a.to_dict() == b.to_dict() and np.array_equal(a.null, b.null)
    assert a.observed == c.observed and not np.array_equal(a.null, c.null)


def test_statistic_is_the_top_k_gaze_score_of_the_ranking(tmp_path):
    matrices = discovery_matrices(4, signal=0.3)
    ranking = gh.Ranking("tiny/model", "f", HeadShape(3, 8, 8), matrices.mean(0), per_strip=matrices,
                         strips=[StripIdentity("synth", f"s{i}", "") for i in range(SHAPE[0])])
    result = ranking_presence(ranking, 3, n_permutations=50)
    assert result.observed == pytest.approx(np.sort(ranking.scores.reshape(-1))[-3:].mean())
    assert [(l, h) for l, h, _ in result.top_heads] == list(ranking.top(3))
    assert result.model_id == "tiny/model" and result.n_strips == 16 and result.n_panels == 4
    with pytest.raises(gh.HeadSelectionError):
        presence_test(matrices, k=25)
    with pytest.raises(gh.DataError, match="per-strip"):
        ranking_presence(gh.Ranking("m", "f", HeadShape(3, 8, 8), matrices.mean(0)))


def test_plot_and_command_write_their_files(tmp_path):
    results = [presence_test(discovery_matrices(5, signal=s), k=3, n_permutations=100, model_id=name)
               for name, s in (("with gaze heads", 0.3), ("frozen encoder", 0.0))]
    png = presence_plot(results, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    paths = []
    for name, signal in (("qwen-like", 0.3), ("llava-like", 0.0)):
        matrices = discovery_matrices(6, signal=signal)
        from gazeheads.ranking import StripIdentity

        ranking = gh.Ranking(name, "f", HeadShape(3, 8, 8), matrices.mean(0), per_strip=matrices,
                             strips=[StripIdentity("synth", f"s{i}", "") for i in range(SHAPE[0])])
        paths.append(str(ranking.save(tmp_path / name / "ranking.json")))
    from gazeheads.cli import build_parser

    parser = build_parser()
    out = tmp_path / "presence"
    args = parser.parse_args(["presence", "--ranking", paths[0], "--ranking", paths[1], "-k", "3",
                              "--permutations", "200", "--out", str(out)])
    assert args.run(args) == 0
    report = json.loads((out / "presence.json").read_text())
    assert [r["model_id"] for r in report] == ["qwen-like", "llava-like"]
    assert report[0]["present"] and not report[1]["present"]
    assert {"p_value", "effect_size", "observed", "null_mean", "k", "verdict"} <= set(report[0])
    assert (out / "presence.png").read_bytes()[:4] == b"\x89PNG"
    empty = parser.parse_args(["presence", "--out", str(tmp_path / "empty")])
    with pytest.raises(gh.DataError, match="Nothing to test"):
        empty.run(empty)


def test_command_runs_discovery_first_for_a_model_folder(tmp_path):
    """--model FOLDER --comics ROOT: discover on the strips, then test (here a tiny LLaVA-NeXT)."""
    from factories_families import make_family
    from gazeheads.cli import build_parser
    from gazeheads.synth import write_synthetic_comics

    model, processor = make_family("llava_next")
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    write_synthetic_comics(tmp_path / "comics", 3, seed=0, n_panels=3)
    parser = build_parser()
    out = tmp_path / "out"
    args = parser.parse_args(["presence", "--model", str(tmp_path / "model"), "--device", "cpu",
                              "--comics", str(tmp_path / "comics"), "--n-strips", "3", "--n-panels", "3",
                              "--strip-height", "64", "--permutations", "50", "--out", str(out)])
    assert args.run(args) == 0
    ranking = gh.Ranking.load(out / "ranking.json")
    assert ranking.model_class == "LlavaNextForConditionalGeneration" and ranking.per_strip.shape[0] == 3
    report = json.loads((out / "presence.json").read_text())
    assert report[0]["n_strips"] == 3 and report[0]["n_panels"] == 3 and 0 < report[0]["p_value"] <= 1
    assert (out / "presence.png").exists()
