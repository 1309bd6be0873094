"""Plots: narration transitions, titles that never overlap, top-K ticks at the K values, one colour
scale for the panel matrices, the histogram's chance line, distinct names in the presence table."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gazeheads import plots
from gazeheads.adapters import HeadShape
from gazeheads.presence import presence_plot, presence_table, presence_test
from gazeheads.ranking import Ranking
from gazeheads.regions import Panel
from gazeheads.tracking import Trace

# -- narration transitions --------------------------------------------------------------------


def test_transitions_are_the_tokens_where_panel_k_begins():
    tokens = ["Panel", "Ġ1", ":", "Ġa", "Ġdog", ".", "Ċ", "**", "Panel", "Ġ2", ":**", "Ġa", "Ġcat", "Ġlike",
              "Ġin", "Ġpanel", "Ġ1", ".", "Ġ", "Panel", "Ġ3", ":", "Ġrain"]
    assert plots.narration_transitions(tokens, 6) == [(0, 1), (8, 2), (19, 3)]


def test_transitions_find_panel_marks_split_inside_tokens_and_ignore_panels_beyond_n():
    # "Panel 1:" is one token for some tokenizers, and a mark can start mid-token ("\nPanel")
    tokens = ["▁Panel▁1:", "▁sun", "\nPanel", "▁2", ":", "▁moon", "▁Panel", "▁9", ":", "▁x"]
    assert plots.narration_transitions(tokens, 6) == [(0, 1), (2, 2)]


def test_transitions_without_panel_marks_are_none():
    assert plots.narration_transitions(["a", "Ġdog", "Ġruns", "."], 6) == []
    assert plots.narration_transitions([], 6) == []


def test_separator_transitions_follow_the_bundled_models_captions():
    tokens = ["brown", "triangle", ".", "blue", "star", ".", "purple", "ring", "."]
    assert plots.narration_transitions(tokens, 6, separator=".") == [(0, 1), (3, 2), (6, 3)]
    # never more panels than the strip has, and no transition after the last token
    assert plots.narration_transitions(tokens, 2, separator=".") == [(0, 1), (3, 2)]


# -- figures, captured before they are saved ----------------------------------------------------


@pytest.fixture
def captured(monkeypatch):
    """The matplotlib figures the plot functions draw, drawn (laid out) just before saving."""
    figures = []
    original = plots._save

    def keep(fig, path):
        fig.canvas.draw()
        figures.append(fig)
        boxes = _text_boxes(fig)
        result = original(fig, path)
        figures[-1] = (fig, boxes)
        return result

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def _text_boxes(fig) -> list[tuple[str, str, object]]:
    """(kind, text, window extent) of every visible title, tick label and axis label."""
    renderer = fig.canvas.get_renderer()
    texts = []
    if fig._suptitle is not None and fig._suptitle.get_text():
        texts.append(("title", fig._suptitle))
    for ax in fig.axes:
        for title in (ax.title, ax._left_title, ax._right_title):
            if title.get_text():
                texts.append(("title", title))
        texts += [("label", t) for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text() and t.get_visible()]
        texts += [("label", t) for t in (ax.xaxis.label, ax.yaxis.label) if t.get_text()]
    return [(kind, t.get_text(), t.get_window_extent(renderer)) for kind, t in texts]


def _overlapping_titles(boxes) -> list[tuple[str, str]]:
    clashes = []
    for (k1, t1, b1), (k2, t2, b2) in itertools.combinations(boxes, 2):
        if "title" in (k1, k2) and b1.overlaps(b2) and b1.width > 0 and b2.width > 0:
            clashes.append((t1, t2))
    return clashes


def _ranking(model_id: str = "some-org/" + "a-rather-long-model-name-" * 3, layers=6, heads=8, n=6,
             seed=0) -> Ranking:
    rng = np.random.default_rng(seed)
    per_strip = rng.uniform(0, 0.02, (5, layers, heads, n, n))
    per_strip[:, 1, 2] += 0.9 * np.eye(n)  # one gaze head
    per_strip[:, 2, 5] += 0.6 * np.eye(n)
    return Ranking(model_id=model_id, fingerprint="f", shape=HeadShape(layers, heads, heads // 2),
                   matrices=per_strip.mean(0), per_strip=per_strip)


def test_panel_matrices_share_one_colour_scale_and_titles_do_not_overlap(tmp_path, captured):
    ranking = _ranking()
    plots.panel_matrices(ranking, tmp_path / "m.png")
    fig, boxes = captured[0]
    images = [im for ax in fig.axes for im in ax.images]
    assert len(images) == 8
    assert len({im.get_clim() for im in images}) == 1  # a 0.003 head cannot look like a 0.97 one
    assert images[0].get_clim()[1] == pytest.approx(ranking.matrices.max())
    assert len(fig.axes) == 9  # eight matrices and one colour bar
    assert not _overlapping_titles(boxes)


def test_histogram_marks_chance_and_the_top_k_cut(tmp_path, captured):
    ranking = _ranking()
    plots.score_histogram(ranking, tmp_path / "h.png", top_k=2)
    fig, boxes = captured[0]
    lines = {line.get_label(): line.get_xdata()[0] for line in fig.axes[0].lines}
    chance = next(x for label, x in lines.items() if label.startswith("chance"))
    cut = next(x for label, x in lines.items() if label.startswith("top-2"))
    assert chance == pytest.approx(1 / 6) and cut == pytest.approx(np.sort(ranking.scores.ravel())[-2])
    assert "/" not in fig.axes[0].get_title().split(":")[0] or "\n" in fig.axes[0].get_title()
    assert not _overlapping_titles(boxes)


def test_score_map_outlines_the_top_k_heads(tmp_path, captured):
    plots.score_map(_ranking(), tmp_path / "s.png", top_k=2)
    fig, _ = captured[0]
    outlined = sorted((int(p.get_y() + 0.5), int(p.get_x() + 0.5)) for p in fig.axes[0].patches)
    assert outlined == [(1, 2), (2, 5)]


def test_topk_curve_ticks_are_the_k_values(tmp_path, captured):
    ks = [1, 2, 5, 10, 20, 48]
    rows = [{"condition": c, "k": k, "accuracy": 0.5, "ci_low": 0.4, "ci_high": 0.6, "chance": 1 / 6}
            for c in ("gaze", "random") for k in ks]
    plots.topk_curve(rows, tmp_path / "t.png", unsteered=1 / 6)
    fig, boxes = captured[0]
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == ks
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in ks]
    assert not ax.xaxis.get_minorticklocs().size
    assert {"chance (0.167)", "unsteered"} <= {line.get_label() for line in ax.lines}


def _trace(steps: int, seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    normalised = rng.dirichlet(np.ones(6), (1, steps))
    return Trace(raw=normalised * 0.5, normalised=normalised, image=np.full((1, steps), 0.5),
                 regions=[[Panel(k) for k in range(1, 7)]], value_weighted=True)


def test_tracking_pair_marks_transitions_on_both_sides_without_overlapping_titles(tmp_path, captured):
    tokens = ["brown", "triangle", ".", "blue", "star", ".", "red", "ring", "."]
    transitions = plots.narration_transitions(tokens, 6, separator=".")
    plots.tracking_pair(_trace(9, 0), _trace(9, 1), tmp_path / "p.png", tokens=tokens, transitions=transitions,
                        labels=("gaze top-4", "random non-gaze 4 (score percentile <= 50) " * 2),
                        title="Unsteered narration of a strip with a long name " * 3)
    fig, boxes = captured[0]
    heat = [ax for ax in fig.axes if ax.images]
    assert len(heat) == 2 and len({ax.images[0].get_clim() for ax in heat}) == 1
    for ax in heat:
        dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
        assert sorted(line.get_xdata()[0] for line in dashed) == [2.5, 5.5]  # before "blue" and "red"
        assert [t.get_text() for t in ax.texts] == ["P1", "P2", "P3"]
    assert not _overlapping_titles(boxes)


def test_steered_staircase_outlines_the_schedule(tmp_path, captured):
    from gazeheads.regions import Schedule

    schedule = Schedule.every(3, [Panel(4), Panel(1), Panel(2)])
    plots.tracking_staircase(_trace(9, 2), tmp_path / "s.png", scheduled=plots.scheduled_regions(schedule, 9),
                             title="STEERED narration")
    fig, boxes = captured[0]
    cells = sorted((int(p.get_x() + 0.5), int(p.get_y() + 0.5)) for p in fig.axes[0].patches)
    assert cells == [(s, [3, 0, 1][s // 3]) for s in range(9)]
    assert not _overlapping_titles(boxes)


def test_presence_plot_and_table_keep_long_and_repeated_names_apart(tmp_path, captured):
    rng = np.random.default_rng(0)
    matrices = rng.uniform(0, 1, (6, 2, 4, 3, 3))
    name = "Qwen/Qwen3-VL-8B-Instruct-with-a-very-long-fine-tune-suffix"
    results = [presence_test(matrices, k=2, n_permutations=50, model_id=name),
               presence_test(matrices[:4], k=2, n_permutations=50, model_id=name),
               presence_test(matrices, k=3, n_permutations=50, model_id="other")]
    presence_plot(results, tmp_path / "presence.png")
    fig, boxes = captured[0]
    assert not _overlapping_titles(boxes)
    table = presence_table(results).splitlines()
    assert f"{name} (6 strips, K=2)" in table[1] and f"{name} (4 strips, K=2)" in table[2]
    assert table[3].startswith("other ")
    assert all("e-0" in line or "e+0" in line for line in table[1:])  # p in scientific notation
