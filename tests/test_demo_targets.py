"""The demo's spotlight and box targets own the same tokens as the library's regions."""

from __future__ import annotations

import gazeheads as gh
from gazeheads import prompts
from gazeheads.demo.targets import Circle, cells_of, region_membership, tint_regions

from conftest import draw_strip
from factories_families import make_family


def geometry(family: str, **kwargs):
    gm = gh.GazeModel(*make_family(family, seed=1, **kwargs))
    strip = draw_strip(widths=(320, 330, 310, 340, 300, 330), height=256, seed=1)
    return gm.encode(strip, prompts.SCENE_QUESTION).geometries[0]


def test_a_spotlight_at_the_edge_never_owns_padding_cells():
    g = geometry("llava")  # pad-to-square: the view reaches far above and below the strip
    padding = ~g.in_image()
    assert bool(padding.any())
    for circle in (Circle(500, 10, 300), Circle(500, 2, 1)):
        cells = cells_of(g, circle)
        assert bool(cells.any()) and not bool((cells & padding).any())


def test_boxes_and_tints_use_the_library_cell_rule_and_circles_reach_coarse_views():
    g = geometry("internvl")  # tiles plus a thumbnail
    box = gh.Box(400, 40, 700, 220)
    assert bool((cells_of(g, box) == g.cell_mask(box)).all())
    views = g.view_of_token()
    thumbnail = int(views.max())
    assert thumbnail in views[g.cell_mask(box)].tolist()
    circle = Circle(550, 130, 100)  # no thumbnail cell centre lies inside it, but the thumbnail shows it
    xs, ys = g.cell_centres()
    assert not bool((((xs - 550) ** 2 + (ys - 130) ** 2 <= 100**2) & (views == thumbnail)).any())
    assert thumbnail in views[cells_of(g, circle)].tolist()
    regions, membership = region_membership(g, tint_regions(g))
    for (_, region), row in zip(regions, membership):
        assert bool((row.bool() == g.cell_mask(region)).all())
