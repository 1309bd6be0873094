"""Every adapter, proven on a tiny random model of its family built in code.

Geometry: with a vision tower whose patches exchange no information, changing the pixels
inside a region changes exactly the language-model input embeddings the adapter assigns to
that region (plus boundary cells that the resampling or pooling touches, which are counted),
in every view that sees the region. Then the shared machinery runs on each adapter: captured
attention rows equal eager attention, the bias moves exactly the chosen heads onto the
target, prefix-shared discovery equals one forward per question, tracking sums the right rows.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import gazeheads as gh
from gazeheads.discovery import strip_matrices, strip_matrices_per_question
from gazeheads import adapters, hook, prompts
from gazeheads.heads import HeadSet
from gazeheads.regions import UnseenPixelsWarning

from conftest import draw_strip
from factories_families import FAMILIES, isolate_patches, make_family, vision_tower

ADAPTER_OF = {
    "llava": adapters.LlavaAdapter, "llava_next": adapters.LlavaNextAdapter,
    "llava_onevision": adapters.LlavaOnevisionAdapter, "internvl": adapters.InternVLAdapter,
    "gemma3": adapters.Gemma3Adapter, "idefics3": adapters.Idefics3Adapter, "smolvlm": adapters.Idefics3Adapter,
}

# helpers ----------------------------------------------------------------------------------------

_MODELS: dict = {}


def gaze_model(family: str, **options) -> gh.GazeModel:
    key = (family, "isolated", tuple(sorted(options.items())))
    if key not in _MODELS:
        model, processor = make_family(family, seed=1, **options)
        assert isolate_patches(model) >= 1
        _MODELS[key] = gh.GazeModel(model, processor)
    return _MODELS[key]


def model_pair(family: str):
    """(GazeModel, eager twin with identical weights)."""
    key = (family, "pair")
    if key not in _MODELS:
        model, processor = make_family(family, seed=2)
        eager = copy.deepcopy(model)
        eager.set_attn_implementation("eager")
        _MODELS[key] = (gh.GazeModel(model, processor), eager)
    return _MODELS[key]


class _Stop(Exception):
    pass


def language_inputs(gm: gh.GazeModel, encoded: gh.Encoded) -> torch.Tensor:
    """The embeddings the language model receives (text and image tokens), (batch, prompt, hidden)."""
    seen = {}

    def grab(module, args, kwargs):
        seen["embeds"] = kwargs["inputs_embeds"].detach().clone()
        raise _Stop

    handle = gm.adapter.language_model(gm.model).register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            gm.model(**encoded.inputs)
    except _Stop:
        pass
    finally:
        handle.remove()
    return seen["embeds"]


def noise(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def repaint(image: Image.Image, rect: tuple[float, float, float, float], seed: int) -> Image.Image:
    """`image` with fresh noise on the pixels whose centre lies inside `rect` (nothing else changes)."""
    array = np.array(image)
    x0, y0, x1, y1 = rect
    xs, ys = np.arange(array.shape[1]) + 0.5, np.arange(array.shape[0]) + 0.5
    cols = np.nonzero((xs > x0) & (xs < x1))[0]
    rows = np.nonzero((ys > y0) & (ys < y1))[0]
    rng = np.random.default_rng(seed)
    block = array[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    array[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = (block.astype(int) + rng.integers(60, 196, block.shape)) % 256
    return Image.fromarray(array)


# How far (in cells) a pixel change may spread beyond its cell: one bicubic/bilinear resize spreads it by a
# few pixels; Idefics3/SmolVLM resize twice with Lanczos (longest edge, then to whole tiles).
MARGIN = {"idefics3": 1.0}


def _overlap(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def prove_region(gm, image, region, *, panel_boxes=None, margin=None):
    """Change the pixels of `region` and compare language-model inputs; returns (assigned, boundary) counts."""
    if margin is None:
        margin = MARGIN.get(gm.adapter.family, 0.3)
    strip = gh.data.Strip(image, panel_boxes) if panel_boxes else image
    before = gm.encode(strip, prompts.SCENE_QUESTION)
    geometry = before.geometries[0]
    rect = geometry.region_box(region)
    changed_image = repaint(image, rect, seed=99)
    after = gm.encode(gh.data.Strip(changed_image, panel_boxes) if panel_boxes else changed_image,
                      prompts.SCENE_QUESTION)
    assert torch.equal(before.inputs["input_ids"], after.inputs["input_ids"])
    diff = (language_inputs(gm, before) - language_inputs(gm, after))[0].abs().amax(-1)
    changed = set((diff > 1e-6).nonzero().flatten().tolist())
    assigned = set(geometry.positions_of(region).tolist())
    image_positions = geometry.positions.tolist()
    index = {p: i for i, p in enumerate(image_positions)}
    # 1. every token assigned to the region changes
    assert assigned <= changed, f"assigned but unchanged: {sorted(assigned - changed)}"
    # 2. nothing but image tokens changes (text, newline and marker tokens stay)
    assert changed <= set(image_positions), f"non-image positions changed: {sorted(changed - set(image_positions))}"
    # 3. the other changed tokens are boundary cells: their cell, widened by `margin` cells, touches the region
    cells = geometry.cell_boxes()
    boundary = changed - assigned
    for position in boundary:
        x0, y0, x1, y1 = cells[index[position]].tolist()
        dx, dy = margin * (x1 - x0) + 1, margin * (y1 - y0) + 1
        assert x0 - dx < rect[2] and x1 + dx > rect[0] and y0 - dy < rect[3] and y1 + dy > rect[1], \
            f"token {position} (cell {x0:.1f},{y0:.1f},{x1:.1f},{y1:.1f}) changed far from {region}"
    # 4. the region has tokens in every view that shows (at least half of) it, and only in views that show it
    views = geometry.view_of_token()
    owning = {int(views[index[p]]) for p in assigned}
    shown = [_overlap(view.box, rect) for view in geometry.views]
    area = _overlap(rect, (0, 0, *image.size))
    assert {i for i, a in enumerate(shown) if a >= 0.5 * area} <= owning <= {i for i, a in enumerate(shown) if a > 0}
    return len(assigned), len(boundary)


# the registry -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_gets_its_adapter(family):
    gm = gaze_model(family)
    assert type(gm.adapter) is ADAPTER_OF[family]
    assert type(gm.model).__name__ in adapters.supported_classes()
    assert gm.adapter.attention_implementation(gm.model) == hook.ATTENTION_NAME
    assert len(gm.attention_modules()) == gm.shape.n_layers == 2
    # the vision tower is left alone: it still runs its own attention
    assert all(not hasattr(m, "layer_idx") or m not in gm.attention_modules() for m in vision_tower(gm.model).modules())


@pytest.mark.parametrize("family", FAMILIES)
def test_load_from_a_saved_folder_picks_the_adapter(family, tmp_path):
    """`gazeheads.load` (and so every CLI command) works on a model folder of each family."""
    model, processor = make_family(family, seed=4)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    gm = gh.load(tmp_path, device="cpu")
    assert type(gm.adapter) is ADAPTER_OF[family]
    strip = draw_strip(widths=STRIP_WIDTHS)
    loaded = gm.encode(strip, prompts.SCENE_QUESTION)
    original = gh.GazeModel(model, processor).encode(strip, prompts.SCENE_QUESTION)
    assert torch.equal(loaded.inputs["input_ids"], original.inputs["input_ids"])
    assert torch.equal(loaded.geometries[0].positions, original.geometries[0].positions)


# geometry ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_isolated_vision_tower_mixes_no_patches(family):
    """The premise of the geometry proofs: one patch's pixels change that patch's features only."""
    gm = gaze_model(family)
    vision = gm.model.config.vision_config
    size = vision.image_size if isinstance(vision.image_size, int) else vision.image_size[0]
    patch = vision.patch_size if isinstance(vision.patch_size, int) else vision.patch_size[0]
    side = size // patch
    pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    moved = pixels.clone()
    row, col = 1, 2
    moved[..., row * patch:(row + 1) * patch, col * patch:(col + 1) * patch] += 1.0
    tower = vision_tower(gm.model)
    with torch.no_grad():
        a = tower(pixel_values=pixels).last_hidden_state[0]
        b = tower(pixel_values=moved).last_hidden_state[0]
    changed = ((a - b).abs().amax(-1) > 1e-6).nonzero().flatten().tolist()
    extra = a.shape[0] - side * side  # a CLS token first, where the tower has one
    assert changed == [extra + row * side + col]


BOX = gh.Box(30.3, 10.7, 97.1, 50.2)
STRIP_WIDTHS = (64, 64, 64)


@pytest.mark.parametrize("family", FAMILIES)
def test_pixels_of_a_region_change_exactly_its_tokens(family):
    gm = gaze_model(family)
    strip = draw_strip(widths=STRIP_WIDTHS, seed=4)
    for region in (BOX, gh.Panel(2), gh.Panel(3)):
        assigned, boundary = prove_region(gm, strip.image, region, panel_boxes=strip.panel_boxes)
        assert assigned > 0


@pytest.mark.parametrize("family,size", [("llava_next", (200, 40)), ("llava_onevision", (200, 40)),
                                         ("llava_next", (40, 150)), ("idefics3", (166, 64)),
                                         ("internvl", (60, 150))])
def test_geometry_holds_for_other_aspect_ratios(family, size):
    """Unpadding (LLaVA-NeXT/OneVision drop feature rows or columns of pure padding), tall images, 2-D tilings."""
    gm = gaze_model(family)
    image = noise(*size, seed=5)
    width, height = size
    box = gh.Box(width * 0.3, height * 0.2, width * 0.7, height * 0.75)
    assert prove_region(gm, image, box)[0] > 0


def test_llava_next_unpadding_drops_padding_rows():
    gm = gaze_model("llava_next")
    geometry = gm.encode(noise(200, 40, 1), prompts.SCENE_QUESTION).geometries[0]
    base, tiles = geometry.views
    assert (base.rows, base.cols) == (4, 4) and base.box == (0.0, 0.0, 200.0, 40.0)
    # best pinpoint 32x96 (3 tiles of 4x4 features): 4 feature rows, of which unpadding keeps the middle 2
    assert (tiles.rows, tiles.cols) == (2, 12)
    # the tiles hold the image at 96x20 px, padded to 96x32 (6 px on top); feature rows are 8 px: rows 1-2 are
    # kept, which show image pixels y = (8 - 6) * 2 to (24 - 6) * 2; the base view still sees the rest
    assert tiles.box == (0.0, 4.0, 200.0, 36.0)
    ids = gm.encode(noise(200, 40, 1), prompts.SCENE_QUESTION).inputs["input_ids"][0]
    image_ids = (ids == gm.model.config.image_token_id).nonzero().flatten()
    assert len(image_ids) == 16 + 2 * 13 and geometry.n_tokens == 16 + 24  # two newline tokens, in no region
    assert geometry.unseen() == []


def test_llava_onevision_interpolated_grid_keeps_its_pixels():
    """With 'anyres_max_1' the unpadded 4x12 tile grid is shrunk to 2x6 by bilinear interpolation."""
    gm = gaze_model("llava_onevision", aspect_ratio="anyres_max_1")
    strip = draw_strip(widths=STRIP_WIDTHS, seed=6)
    geometry = gm.encode(strip, prompts.SCENE_QUESTION).geometries[0]
    assert [(v.rows, v.cols) for v in geometry.views] == [(4, 4), (2, 6)]
    # interpolation mixes neighbouring cells: boundary cells may lie a full cell away
    assert prove_region(gm, strip.image, gh.Panel(1), panel_boxes=strip.panel_boxes, margin=1.0)[0] > 0


# Base images and tiles of 46 px read with 8-px patches: 5 patches a side cover their first 40 px and the last 6 px
# are read by no patch, as SigLIP at 384 px with 14-px patches reads 27 patches = 378 px (LLaVA-OneVision).
UNEVEN = dict(tile=46, pinpoints=((46, 46), (46, 92), (92, 46), (92, 92), (46, 138), (138, 46)))


@pytest.mark.parametrize("family", ["llava_next", "llava_onevision"])
def test_patches_that_do_not_fill_a_tile_leave_its_last_pixels_unseen(family):
    """With image_size not a multiple of patch_size, each tile's features cover its first g * patch px: a token's
    pixels restart at every tile, so the tiles are one view each, and the pixels no patch reads map to no token."""
    gm = gaze_model(family, **UNEVEN)
    image = noise(92, 46, 7)  # the 46x92 pinpoint exactly: two tiles side by side, no padding, nothing unpadded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnseenPixelsWarning)  # the far edge and the panels reach unseen pixels
        # regions across the gap between the tiles (there only the base view sees them) and at the far edge
        for box in (gh.Box(38, 8, 48, 30), gh.Box(27.6, 9.2, 64.4, 34.5), gh.Box(60.5, 20.5, 88.2, 38.7)):
            assert prove_region(gm, image, box)[0] > 0
        strip = draw_strip(widths=STRIP_WIDTHS, seed=4)
        for region in (BOX, gh.Panel(1), gh.Panel(2), gh.Panel(3)):
            assert prove_region(gm, strip.image, region, panel_boxes=strip.panel_boxes)[0] > 0
    encoded = gm.encode(image, prompts.SCENE_QUESTION)
    geometry = encoded.geometries[0]
    # the base image is the image stretched to 46x46 px (x / 2), of which the patches read 40x40 px
    assert [(v.name, v.rows, v.cols, v.box) for v in geometry.views] == [
        ("base", 5, 5, (0.0, 0.0, 80.0, 40.0)),
        ("tile r1c1", 5, 5, (0.0, 0.0, 40.0, 40.0)), ("tile r1c2", 5, 5, (46.0, 0.0, 86.0, 40.0))]
    assert [tuple(b) for b in geometry.views[2].cell_boxes()[:2].tolist()] == [(46, 0, 54, 8), (54, 0, 62, 8)]
    # the tile grid is 5 rows of 10 features, each row followed by a newline: each tile holds half of every row
    ids = encoded.inputs["input_ids"][0]
    rows = (ids == gm.model.config.image_token_id).nonzero().flatten()[25:].reshape(5, 11)
    assert torch.equal(geometry.views[1].positions, rows[:, :5].reshape(-1))
    assert torch.equal(geometry.views[2].positions, rows[:, 5:10].reshape(-1))
    assert geometry.unseen() == [(86.0, 0.0, 92.0, 40.0), (0.0, 40.0, 92.0, 46.0)]
    # the unseen pixels really are unseen: repainting them changes no embedding at all
    before = language_inputs(gm, encoded)
    for rect in geometry.unseen():
        assert torch.equal(before, language_inputs(gm, gm.encode(repaint(image, rect, 1), prompts.SCENE_QUESTION)))
    with pytest.raises(gh.RegionError, match="covers no image token"):
        geometry.positions_of(gh.Box(87, 2, 92, 38))


@pytest.mark.parametrize("family", ["llava_next", "llava_onevision"])
@pytest.mark.parametrize("size,tiles", [((70, 92), [(5, 4)] * 4), ((200, 40), [(3, 5)] * 3)])
def test_unpadding_that_starts_inside_a_tile_with_uneven_patches(family, size, tiles):
    """70x92 px: 2x2 tiles, unpadding keeps feature columns 1-8 of 10 (4 of each tile's 5); 200x40 px: 3 tiles in a
    row, unpadding keeps feature rows 1-3 of 5."""
    gm = gaze_model(family, **UNEVEN)
    image = noise(*size, seed=5)
    width, height = size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnseenPixelsWarning)
        for box in (gh.Box(width * 0.3, height * 0.2, width * 0.7, height * 0.75), gh.Box(2, 3, width - 2, 20)):
            assert prove_region(gm, image, box)[0] > 0
    geometry = gm.encode(image, prompts.SCENE_QUESTION).geometries[0]
    assert [(v.rows, v.cols) for v in geometry.views[1:]] == tiles


def test_llava_onevision_interpolated_grid_over_uneven_tiles_spans_the_pixels_read():
    """Shrunk by interpolation, the tile grid maps to pixels approximately: one uniform grid from the first kept
    feature's pixels to the last one's (here 0-86 px: the two tiles' 40 px and the 6-px gap between them)."""
    gm = gaze_model("llava_onevision", aspect_ratio="anyres_max_1", **UNEVEN)
    image = noise(92, 46, 7)
    geometry = gm.encode(image, prompts.SCENE_QUESTION).geometries[0]
    assert [(v.name, v.rows, v.cols, v.box) for v in geometry.views] == [
        ("base", 5, 5, (0.0, 0.0, 80.0, 40.0)), ("tiles", 3, 7, (0.0, 0.0, 86.0, 40.0))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnseenPixelsWarning)
        assert prove_region(gm, image, gh.Box(27.6, 9.2, 64.4, 34.5), margin=1.0)[0] > 0


def test_gemma3_pan_and_scan_crops_are_views():
    gm = gaze_model("gemma3", pan_and_scan=True)
    strip = draw_strip(widths=STRIP_WIDTHS, seed=7)
    geometry = gm.encode(strip, prompts.SCENE_QUESTION).geometries[0]
    assert [v.name for v in geometry.views] == ["image", "crop 1", "crop 2", "crop 3"]
    assert [v.box for v in geometry.views[1:]] == [(0.0, 0.0, 64.0, 64.0), (64.0, 0.0, 128.0, 64.0),
                                                   (128.0, 0.0, 192.0, 64.0)]
    for region in (gh.Panel(2), BOX):
        assert prove_region(gm, strip.image, region, panel_boxes=strip.panel_boxes)[0] > 0


def test_idefics3_tiles_and_global_image_skip_marker_tokens():
    gm = gaze_model("idefics3")
    encoded = gm.encode(noise(166, 64, 2), prompts.SCENE_QUESTION)
    geometry = encoded.geometries[0]
    assert [v.name for v in geometry.views] == ["tile r1c1", "tile r1c2", "tile r1c3",
                                                "tile r2c1", "tile r2c2", "tile r2c3", "global"]
    tokens = gm.tokenizer.convert_ids_to_tokens(encoded.inputs["input_ids"][0])
    assert {tokens[p] for p in geometry.positions.tolist()} == {"<image>"}
    assert "<row_2_col_3>" in tokens and "<global-img>" in tokens


def test_llava_crop_is_reported_and_never_mapped():
    """LLaVA-1.5 center-crops: pixels outside the crop change nothing, and are reported, not mapped."""
    gm = gaze_model("llava", pad_to_square=False)
    image = noise(204, 64, 3)
    with pytest.warns(UnseenPixelsWarning, match="crops this 204x64"):
        encoded = gm.encode(image, prompts.SCENE_QUESTION)
    geometry = encoded.geometries[0]
    assert geometry.views[0].box == (70.0, 0.0, 134.0, 64.0)
    assert geometry.unseen() == [(0.0, 0.0, 70.0, 64.0), (134.0, 0.0, 204.0, 64.0)]
    assert geometry.unseen_fraction() == pytest.approx(140 / 204)
    with pytest.raises(gh.RegionError, match="crops away"):
        geometry.positions_of(gh.Box(5, 5, 60, 60))
    with pytest.warns(UnseenPixelsWarning, match="never sees"):
        partly = geometry.positions_of(gh.Box(40, 8, 90, 40))
    assert len(partly) > 0
    # the cropped pixels really are unseen: repainting them changes no embedding at all
    before = language_inputs(gm, encoded)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnseenPixelsWarning)
        after = language_inputs(gm, gm.encode(repaint(image, (0, 0, 70, 64), 1), prompts.SCENE_QUESTION))
    assert torch.equal(before, after)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnseenPixelsWarning)
        assert prove_region(gm, image, gh.Box(75, 5, 120, 50))[0] > 0


# the shared machinery on every adapter ----------------------------------------------------------


def capture_rows(gm, encoded):
    rows = {}
    request = hook.CaptureRequest(frozenset(range(gm.shape.n_layers)),
                                  lambda layer, probs, value: rows.__setitem__(layer, probs))
    with hook.attach_plan(gm.attention_modules()) as plan, torch.no_grad():
        plan.captures.append(request)
        gm.model(**encoded.inputs)
    return rows


@pytest.mark.parametrize("family", FAMILIES)
def test_capture_equals_eager_attention(family):
    gm, eager = model_pair(family)
    strips = [draw_strip(widths=STRIP_WIDTHS, seed=8), draw_strip(widths=(64, 96), seed=9)]
    encoded = gm.encode(strips, [prompts.VQA_QUESTION, prompts.SCENE_QUESTION])
    assert not bool(encoded.inputs["attention_mask"].all()), "the batch should contain left padding"
    rows = capture_rows(gm, encoded)
    with torch.no_grad():
        reference = eager(**encoded.inputs, output_attentions=True).attentions
    for layer in range(gm.shape.n_layers):
        expected = reference[layer][:, :, -1, :].float()
        assert rows[layer].shape == expected.shape
        assert (rows[layer] - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_bias_moves_exactly_the_chosen_heads_onto_the_target(family):
    gm, _ = model_pair(family)
    strip = draw_strip(widths=STRIP_WIDTHS, seed=10)
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    chosen = HeadSet.of([(0, 1), (0, 3), (1, 2)], gm.shape)
    plain = capture_rows(gm, encoded)
    with gh.steer(gm, chosen, gh.Panel(2), encoded):
        steered = capture_rows(gm, encoded)
    changed = ((plain[0][0] - steered[0][0]).abs().amax(-1) > 1e-4).tolist()
    assert changed == [False, True, False, True]
    assert torch.equal(plain[0][0, [0, 2]], steered[0][0, [0, 2]])
    geometry = encoded.geometries[0]
    target = geometry.positions_of(gh.Panel(2))
    for layer, head in chosen:
        probs = steered[layer][0, head]
        assert probs[target].sum() / probs[geometry.positions].sum() >= 0.99


@pytest.mark.parametrize("family", FAMILIES)
def test_discovery_shares_the_prefix_exactly(family, monkeypatch):
    gm, eager = model_pair(family)
    strip = draw_strip(widths=STRIP_WIDTHS, seed=11)
    separate = strip_matrices_per_question(gm, strip)

    def no_fallback(*args):
        raise AssertionError("strip_matrices fell back to one forward per question")

    monkeypatch.setattr(gh.discovery, "strip_matrices_per_question", no_fallback)
    shared = strip_matrices(gm, strip)
    assert shared.shape == (2, 4, 3, 3)
    assert np.abs(shared - separate).max() <= 1e-5
    # and both equal the definition, computed from eager attention
    encoded = gm.encode(strip, prompts.discovery_question(2, 3))
    with torch.no_grad():
        attentions = eager(**encoded.inputs, output_attentions=True).attentions
    geometry = encoded.geometries[0]
    for j in range(3):
        positions = geometry.positions_of(gh.Panel(j + 1))
        for layer in range(2):
            expected = attentions[layer][0, :, -1, positions].sum(-1).numpy()
            assert np.abs(separate[layer, :, 1, j] - expected).max() <= 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_tracking_sums_the_attention_of_each_region(family):
    gm, eager = model_pair(family)
    strip = draw_strip(widths=STRIP_WIDTHS, seed=12)
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    heads = HeadSet.of([(0, 0), (1, 3)], gm.shape)
    with gh.track(gm, heads, encoded, value_weighted=False) as tracker:
        gm.generate_ids(encoded, max_new_tokens=3)
    trace = tracker.trace()
    assert trace.raw.shape == (1, 3, 3)
    with torch.no_grad():
        attentions = eager(**encoded.inputs, output_attentions=True).attentions
    geometry = encoded.geometries[0]
    for r in range(3):
        positions = geometry.positions_of(gh.Panel(r + 1))
        expected = np.mean([float(attentions[layer][0, head, -1, positions].sum()) for layer, head in heads])
        assert abs(trace.raw[0, 0, r] - expected) <= 1e-5
    assert np.all(trace.raw.sum(-1) <= trace.image + 1e-6)


# the generic adapter ----------------------------------------------------------------------------


def _stretching_llava():
    """A LLaVA model whose processor stretches every image to 64x64: an 8x8 grid over the whole image."""
    import transformers as tf

    model, processor = make_family("llava", seed=3)
    processor.image_processor = tf.LlavaImageProcessor(size={"height": 64, "width": 64}, do_center_crop=False)
    isolate_patches(model)
    return model, processor


def test_generic_adapter_with_a_grid_rule_proves_its_geometry():
    model, processor = _stretching_llava()
    adapter = adapters.GenericAdapter(model.config.image_token_id, [adapters.Grid(8, 8)])
    gm = gh.GazeModel(model, processor, adapter=adapter)
    assert gm.adapter is adapter and adapter.processor is processor
    assert gm.adapter.attention_implementation(gm.model) == hook.ATTENTION_NAME
    assert gm.attention_modules() == [layer.self_attn for layer in model.model.language_model.layers]
    strip = draw_strip(widths=STRIP_WIDTHS, seed=13)
    for region in (BOX, gh.Panel(1)):
        assert prove_region(gm, strip.image, region, panel_boxes=strip.panel_boxes)[0] > 0
    # steering and capture run on it like on any adapter
    encoded = gm.encode(strip, prompts.NARRATION_QUESTION)
    heads = HeadSet.of([(1, 1)], gm.shape)
    with gh.steer(gm, heads, gh.Panel(3), encoded):
        probs = capture_rows(gm, encoded)[1][0, 1]
    geometry = encoded.geometries[0]
    assert probs[geometry.positions_of(gh.Panel(3))].sum() / probs[geometry.positions].sum() >= 0.99
    # naming the language model explicitly finds the same layers
    named = adapters.GenericAdapter(model.config.image_token_id, [adapters.Grid(8, 8)],
                                    language_model="model.language_model")
    assert named.attention_modules(model) == gm.attention_modules()


def test_generic_adapter_describes_tiles_thumbnails_and_newlines():
    """Written as grid rules, InternVL's tiles + thumbnail and LLaVA-NeXT's newline rows give the native geometry."""
    strip = draw_strip(widths=STRIP_WIDTHS, seed=14)
    native = gaze_model("internvl")
    thirds = [adapters.Grid(4, 4, box=(k / 3, 0, (k + 1) / 3, 1)) for k in range(3)]
    generic = gh.GazeModel(native.model, native.processor,
                           adapter=adapters.GenericAdapter(native.model.config.image_token_id,
                                                           lambda size, n: thirds + [adapters.Grid(4, 4)]))
    for a, b in zip(native.encode(strip, prompts.SCENE_QUESTION).geometries[0].views,
                    generic.encode(strip, prompts.SCENE_QUESTION).geometries[0].views):
        assert torch.equal(a.positions, b.positions) and (a.rows, a.cols) == (b.rows, b.cols)
        assert np.allclose(a.box, b.box)
    native = gaze_model("llava_next")
    grids = [adapters.Grid(4, 4), adapters.Grid(4, 12, box=(0, 0, 1, 66.064516 / 64), newline=True)]
    generic = gh.GazeModel(native.model, native.processor,
                           adapter=adapters.GenericAdapter(native.model.config.image_token_id, grids))
    a = native.encode(strip, prompts.SCENE_QUESTION).geometries[0]
    b = generic.encode(strip, prompts.SCENE_QUESTION).geometries[0]
    assert torch.equal(a.positions, b.positions)
    for k in (1, 2, 3):
        assert torch.equal(a.positions_of(gh.Panel(k)), b.positions_of(gh.Panel(k)))


def test_generic_adapter_errors_name_the_fix():
    model, processor = _stretching_llava()
    wrong = gh.GazeModel(model, processor, adapter=adapters.GenericAdapter(model.config.image_token_id,
                                                                           [adapters.Grid(6, 6)]))
    with pytest.raises(gh.RegionError, match="grid rule describes 36"):
        wrong.encode(draw_strip(widths=STRIP_WIDTHS), prompts.SCENE_QUESTION)
    with pytest.raises(gh.ModelError, match="no attribute path"):
        adapters.GenericAdapter(1, [adapters.Grid(1, 1)], language_model="model.nowhere").attention_modules(model)
    assert not adapters.GenericAdapter.matches(model)


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_sharing_an_image_encode_it_once_with_identical_results(family):
    """Per-row steering targets on repeated images: the vision tower embeds each distinct image
    (or tile) once; logits and steered greedy tokens equal those of encoding every row."""
    gm, _ = model_pair(family)
    images = [draw_strip(widths=STRIP_WIDTHS, seed=12)] * 2 + [draw_strip(widths=STRIP_WIDTHS, seed=13)] * 2
    shared = gm.encode(images, prompts.NARRATION_QUESTION)
    assert shared.image_groups == [0, 0, 2, 2]
    separate = gm.encode(images, prompts.NARRATION_QUESTION)
    separate.images = None

    items = []
    handle = vision_tower(gm.model).embeddings.register_forward_pre_hook(
        lambda module, args, kwargs: items.append((args[0] if args else kwargs["pixel_values"]).shape[0]),
        with_kwargs=True)
    try:
        with torch.no_grad(), gm.adapter.shared_images(gm.model, shared.image_groups):
            logits = gm.model(**shared.inputs).logits
        with torch.no_grad():
            reference = gm.model(**separate.inputs).logits
        assert len(items) == 2 and items[0] * 2 == items[1]  # half the images (tiles) embedded
        torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)

        heads = HeadSet.of([(0, 1), (1, 2)], gm.shape)
        targets = [gh.Panel(1), gh.Panel(3), gh.Panel(2), gh.Panel(1)]
        with gh.steer(gm, heads, targets, shared):
            ids = gm.generate_ids(shared, max_new_tokens=5)
        with gh.steer(gm, heads, targets, separate):
            expected = gm.generate_ids(separate, max_new_tokens=5)
        assert torch.equal(ids, expected)
    finally:
        handle.remove()
    assert "forward" not in vars(vision_tower(gm.model))  # the tower is restored


@pytest.mark.parametrize("family", FAMILIES)
def test_decode_phase_rows_share_one_prompt_prefill(family):
    """phase="decode" on one strip and several targets: the prompt is prefilled once for all
    rows, and the steered tokens equal those of every row prefilling its own prompt."""
    gm, _ = model_pair(family)
    encoded = gm.encode(draw_strip(widths=STRIP_WIDTHS, seed=14), [prompts.NARRATION_QUESTION] * 3)
    heads = HeadSet.of([(0, 1), (1, 2)], gm.shape)
    targets = [gh.Panel(1), gh.Panel(2), gh.Panel(3)]
    calls = []
    handle = gm.adapter.language_model(gm.model).register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(tuple(kwargs["inputs_embeds"].shape[:2])), with_kwargs=True)
    try:
        with gh.steer(gm, heads, targets, encoded, phase="decode"):
            shared = gm.generate_ids(encoded, max_new_tokens=5, min_new_tokens=5)
        with gh.steer(gm, heads, targets, encoded, phase="decode"):
            full = gm.generate_ids(encoded, max_new_tokens=5, min_new_tokens=5, share_prompt=False)
    finally:
        handle.remove()
    assert calls[0] == (1, encoded.prompt_len - 1) and calls[1] == (3, 1)
    assert calls[6] == (3, encoded.prompt_len)
    assert torch.equal(shared, full)
