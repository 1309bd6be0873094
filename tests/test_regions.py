"""Region-to-token mapping on the Qwen grid, checked against hand-computed token indices."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import gazeheads as gh
from gazeheads import prompts
from gazeheads.data import stitch
from gazeheads.layout import StripLayout
from gazeheads.regions import ImageGeometry

from conftest import model_pair


def flat_strip(widths, height, gap=0):
    panels = [Image.new("RGB", (w, height), (40 * i, 90, 200 - 30 * i)) for i, w in enumerate(widths)]
    return stitch(panels, StripLayout(height=height, gap=gap, n_panels=len(widths), multiple=height // 2))


@pytest.mark.parametrize("family,cell", [("qwen3_vl", 32), ("qwen2_5_vl", 28), ("qwen2_vl", 28)])
def test_panels_of_unequal_width_own_their_token_columns(family, cell):
    gm, _ = model_pair(family)
    strip = flat_strip([2 * cell, 4 * cell, cell, 3 * cell], height=2 * cell)
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    geometry = encoded.geometries[0]
    assert (geometry.rows, geometry.cols) == (2, 10)
    start = int(geometry.positions[0])
    assert geometry.positions.tolist() == list(range(start, start + 20))
    expected_columns = {1: [0, 1], 2: [2, 3, 4, 5], 3: [6], 4: [7, 8, 9]}
    for panel, columns in expected_columns.items():
        expected = sorted(start + r * 10 + c for r in range(2) for c in columns)
        assert geometry.positions_of(gh.Panel(panel)).tolist() == expected
    # A box owns the cells whose centre lies inside it: columns 1..3 of row 0.
    box = gh.Box(1.2 * cell, 0, 4.1 * cell, 0.9 * cell)
    assert geometry.positions_of(box).tolist() == [start + 1, start + 2, start + 3]
    ids = encoded.inputs["input_ids"][0]
    assert bool((ids[geometry.positions] == gm.model.config.image_token_id).all())


def test_panels_own_token_columns_proportional_to_their_width():
    """The published rule when the grid does not line up with the panels: boundaries round(cols * edge / width)
    (Python round, halves to even), forced strictly increasing; gaps between boxes split at their middle."""
    geometry = ImageGeometry(torch.arange(100, 115), rows=1, cols=15, image_size=(478, 64),
                             panel_boxes=[(0, 0, 64, 64), (70, 0, 166, 64), (172, 0, 236, 64),
                                          (242, 0, 274, 64), (280, 0, 344, 64), (350, 0, 478, 64)])
    # Span edges 67, 169, 239, 277, 347 of 478 px; 15 * edge / 478 = 2.10, 5.30, 7.50, 8.69, 10.89
    # -> boundaries 2, 5, 8 (7.5 rounds to even), 9, 11.
    owners = [geometry.cell_mask(gh.Panel(k)).nonzero().flatten().tolist() for k in range(1, 7)]
    assert owners == [[0, 1], [2, 3, 4], [5, 6, 7], [8], [9, 10], [11, 12, 13, 14]]


def test_narrow_panels_still_get_a_column_each():
    """Forced strictly increasing: a panel whose rounded boundary equals its left neighbour's gets one column."""
    geometry = ImageGeometry(torch.arange(6), rows=1, cols=6, image_size=(600, 10),
                             panel_boxes=[(0, 0, 10, 10), (10, 0, 20, 10), (20, 0, 600, 10)])
    # edges 10 and 20 of 600 px -> round(0.1) = 0 -> 1, round(0.2) = 0 -> 2
    owners = [geometry.cell_mask(gh.Panel(k)).nonzero().flatten().tolist() for k in range(1, 4)]
    assert owners == [[0], [1], [2, 3, 4, 5]]


def test_region_errors_name_the_fix():
    geometry = ImageGeometry(torch.arange(4), rows=2, cols=2, image_size=(64, 64))
    with pytest.raises(gh.RegionError, match="needs the strip's panel layout"):
        geometry.positions_of(gh.Panel(1))
    with pytest.raises(gh.RegionError, match="covers no image token"):
        geometry.positions_of(gh.Box(0, 0, 10, 10))
    with pytest.raises(gh.RegionError, match="counted from 1"):
        gh.Panel(0)
    with pytest.raises(gh.RegionError, match="no area"):
        gh.Box(5, 5, 5, 9)
    strip_geometry = ImageGeometry(torch.arange(4), rows=1, cols=4, image_size=(128, 32),
                                   panel_boxes=[(0, 0, 64, 32), (64, 0, 128, 32)])
    with pytest.raises(gh.RegionError, match="Choose a panel from 1 to 2"):
        strip_geometry.positions_of(gh.Panel(3))


def test_prompt_without_image_tokens_is_an_error(strip):
    gm, _ = model_pair("qwen3_vl")
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    inputs = dict(encoded.inputs)
    inputs["input_ids"] = torch.where(inputs["input_ids"] == gm.model.config.image_token_id, 0, inputs["input_ids"])
    with pytest.raises(gh.RegionError, match="no image tokens"):
        gm.adapter.image_geometries(gm.model, inputs, [strip.image.size], [strip.panel_boxes])


def test_unsupported_architecture_is_named():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2))
    with pytest.raises(gh.ModelError, match="Unsupported architecture: LlamaForCausalLM"):
        gh.GazeModel(model, None)


def test_schedule_rules():
    schedule = gh.Schedule.every(4, [gh.Panel(2), gh.Panel(5), gh.Panel(1)])
    assert schedule.entries == ((0, gh.Panel(2)), (4, gh.Panel(5)), (8, gh.Panel(1)))
    with pytest.raises(gh.RegionError, match="Start the schedule at step 0"):
        gh.Schedule([(3, gh.Panel(1))])
