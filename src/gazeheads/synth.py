"""Seeded synthetic data: comic strips of coloured objects and COCO-style scenes, drawn with PIL.

Every panel shows one object with attributes from a closed vocabulary (colour, shape,
background, placement); its caption is ``"<colour> <shape>"``, e.g. ``"red circle"``. The
caption starts with the colour on purpose: the first answer word depends on the panel asked
about, so a model answering the per-panel question has to look at that panel from the last
prompt token on. Within a strip the colours are all different, so a caption (and even its
first word) names exactly one panel.

Scenes place 3-4 objects of different shapes and colours on a plain background (a loose 3 x 3
grid, the largest object over a 2 x 2 block of cells) and record their boxes COCO-style; the tiny model answers "What is in this picture?" with the caption of
the largest object.

Everything is deterministic for a given seed: an integer seed maps to its own
``random.Random`` stream, and training draws from a separate, string-seeded stream
(:func:`training_rng`), so integer-seeded strips are never training strips.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from .data.strips import Strip, stitch
from .files import write_text
from .layout import StripLayout

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 150, 40),
    "blue": (30, 70, 225),
    "yellow": (245, 215, 0),
    "purple": (130, 40, 170),
    "orange": (250, 135, 0),
    "pink": (255, 120, 200),
    "brown": (120, 70, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "sky": (205, 228, 250),
    "grass": (212, 240, 200),
    "sand": (250, 240, 205),
    "stone": (226, 226, 226),
}

PANEL_SIZE = 64  # pixels, square; one panel is 2 x 2 language-model tokens at 32 px a token
STRIP_HEIGHT = 64  # the stitch() settings the bundled tiny model was trained on
STRIP_GAP = 0
SCENE_SIZE = 192  # pixels, square: 6 x 6 language-model tokens
BORDER = 2  # black panel frame, pixels

Seed = int | random.Random


def _rng(seed: Seed, kind: str) -> random.Random:
    """A private stream: an int seed maps to its own stream per kind of item."""
    if isinstance(seed, random.Random):
        return seed
    return random.Random(f"gazeheads-{kind}-{int(seed)}")


def training_rng(seed: int) -> random.Random:
    """The stream training draws from; disjoint from every integer-seeded strip or scene."""
    return random.Random(f"gazeheads-train-stream-{int(seed)}")


def caption(colour: str, shape: str) -> str:
    """The ground-truth caption of one object: colour first, no article."""
    return f"{colour} {shape}"


# --------------------------------------------------------------------------- drawing


def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "triangle":
        return [(cx, cy - r), (cx + r * 0.95, cy + r * 0.8), (cx - r * 0.95, cy + r * 0.8)]
    if shape == "star":
        points = []
        for i in range(10):
            radius = r if i % 2 == 0 else r * 0.42
            angle = -math.pi / 2 + i * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    if shape == "cross":
        t = r * 0.36
        return [
            (cx - t, cy - r), (cx + t, cy - r), (cx + t, cy - t), (cx + r, cy - t),
            (cx + r, cy + t), (cx + t, cy + t), (cx + t, cy + r), (cx - t, cy + r),
            (cx - t, cy + t), (cx - r, cy + t), (cx - r, cy - t), (cx - t, cy - t),
        ]  # fmt: skip
    raise ValueError(shape)


def draw_object(
    draw: ImageDraw.ImageDraw, shape: str, colour: str | int, cx: float, cy: float, r: float
) -> None:
    """Draw one object of radius `r` (half its extent) centred at (cx, cy).

    `colour` is a name from COLOURS, or an ink value as such (e.g. 255 on an "L" mask).
    """
    fill = COLOURS[colour] if isinstance(colour, str) else colour
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        s = r * 0.88
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(3, int(round(r * 0.42))))
    else:
        draw.polygon(_shape_polygon(shape, cx, cy, r), fill=fill)


def draw_panel(attrs: dict, size: int = PANEL_SIZE) -> Image.Image:
    """Render one panel from its attribute dict (colour, shape, background, cx, cy, r)."""
    img = Image.new("RGB", (size, size), BACKGROUNDS[attrs["background"]])
    draw = ImageDraw.Draw(img)
    draw_object(draw, attrs["shape"], attrs["colour"], attrs["cx"], attrs["cy"], attrs["r"])
    draw.rectangle([0, 0, size - 1, size - 1], outline=(0, 0, 0), width=BORDER)
    return img


# --------------------------------------------------------------------------- strips


def sample_panel_attributes(rng: random.Random, n_panels: int = 6, size: int = PANEL_SIZE) -> list[dict]:
    """Attributes of `n_panels` panels: distinct colours (while the palette lasts), any shapes."""
    if n_panels <= len(COLOURS):
        colours = rng.sample(list(COLOURS), n_panels)
    else:
        colours = [rng.choice(list(COLOURS)) for _ in range(n_panels)]
    attrs = []
    for colour in colours:
        r = rng.uniform(0.27, 0.36) * size
        jitter = size * 0.07
        attrs.append(
            {
                "colour": colour,
                "shape": rng.choice(SHAPES),
                "background": rng.choice(list(BACKGROUNDS)),
                "cx": round(size / 2 + rng.uniform(-jitter, jitter), 2),
                "cy": round(size / 2 + rng.uniform(-jitter, jitter), 2),
                "r": round(r, 2),
            }
        )
    return attrs


def make_strip_panels(seed: Seed, n_panels: int = 6) -> tuple[list[Image.Image], list[str], list[dict]]:
    """Panels, captions and attributes of one synthetic strip.

    `seed` is an int (its own deterministic stream) or a `random.Random` to draw from.
    """
    rng = _rng(seed, "strip")
    attrs = sample_panel_attributes(rng, n_panels)
    panels = [draw_panel(a) for a in attrs]
    captions = [caption(a["colour"], a["shape"]) for a in attrs]
    return panels, captions, attrs


def make_strip(seed: Seed, n_panels: int = 6, *, comic_id: str = "", layout: StripLayout | None = None) -> Strip:
    """A stitched synthetic strip, in the layout the bundled tiny model was trained on unless `layout` says
    otherwise (`layout.n_panels` then wins over `n_panels`).

    `strip.captions` holds the per-panel captions and `strip.meta["attributes"]` the attributes.
    """
    layout = layout or StripLayout(height=STRIP_HEIGHT, gap=STRIP_GAP, n_panels=n_panels)
    panels, captions, attrs = make_strip_panels(seed, layout.n_panels)
    strip = stitch(panels, layout, comic_id=comic_id, captions=captions)
    strip.meta["attributes"] = attrs
    return strip


def write_synthetic_comics(root: str | Path, n_strips: int, seed: int = 0, n_panels: int = 6) -> list[Path]:
    """Write `n_strips` strips as ROOT/<comic_id>/p1.png..pN.png + captions.json + attributes.json.

    Strip i uses the integer seed `seed + i`, so `make_strip_panels(seed + i)` redraws it.
    Returns the comic folders in order.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    folders = []
    for i in range(n_strips):
        strip_seed = seed + i
        panels, captions, attrs = make_strip_panels(strip_seed, n_panels)
        folder = root / f"synth_{strip_seed:06d}"
        folder.mkdir(exist_ok=True)
        for k, panel in enumerate(panels, start=1):
            panel.save(folder / f"p{k}.png")
        write_text(folder / "captions.json", json.dumps(captions, indent=1) + "\n")
        write_text(folder / "attributes.json", json.dumps(attrs, indent=1) + "\n")
        folders.append(folder)
    return folders


# --------------------------------------------------------------------------- scenes


@dataclass
class SceneObject:
    """One object of a scene: what it is and its pixel box (x, y, w, h) and mask area."""

    colour: str
    shape: str
    bbox: tuple[int, int, int, int]
    area: int

    @property
    def caption(self) -> str:
        return caption(self.colour, self.shape)


def make_scene(seed: Seed, size: int = SCENE_SIZE) -> tuple[Image.Image, list[SceneObject]]:
    """One scene: 3-4 objects of different shapes and colours on a loose 3 x 3 grid.

    The scene is cut into 3 x 3 cells (64 px, i.e. 2 x 2 language-model tokens, at the default
    size). The largest object fills a random 2 x 2 block of cells; 2-3 smaller ones sit in
    other cells, drawn like strip panels (radius 27-36% of the cell, centre jittered by 7%).
    The objects come back largest first (by box area); the largest is at least 1.5 times the
    radius of any other, so "the largest object" is never a close call.
    """
    rng = _rng(seed, "scene")
    n = rng.randint(3, 4)
    colours = rng.sample(list(COLOURS), n)
    shapes = rng.sample(list(SHAPES), n)
    background = rng.choice(list(BACKGROUNDS))
    cell = size / 3
    row, col = rng.randrange(2), rng.randrange(2)  # top-left cell of the large object's block
    block = {(row + i, col + j) for i in (0, 1) for j in (0, 1)}
    free = [(i, j) for i in range(3) for j in range(3) if (i, j) not in block]
    spots = [((col + 1) * cell, (row + 1) * cell, 2 * cell)]  # (centre x, centre y, extent)
    spots += [((j + 0.5) * cell, (i + 0.5) * cell, cell) for i, j in rng.sample(free, n - 1)]
    placed: list[tuple[float, float, float]] = []
    for cx, cy, extent in spots:
        jitter = 0.07 * extent
        placed.append((cx + rng.uniform(-jitter, jitter), cy + rng.uniform(-jitter, jitter),
                       rng.uniform(0.27, 0.36) * extent))
    img = Image.new("RGB", (size, size), BACKGROUNDS[background])
    objects = []
    for (cx, cy, r), colour, shape in zip(placed, colours, shapes):
        mask = Image.new("L", (size, size), 0)
        draw_object(ImageDraw.Draw(mask), shape, 255, cx, cy, r)
        bbox = mask.getbbox()
        if bbox is None:
            continue
        area = mask.width * mask.height - mask.histogram()[0]  # drawn pixels
        draw_object(ImageDraw.Draw(img), shape, colour, cx, cy, r)
        x0, y0, x1, y1 = bbox
        objects.append(SceneObject(colour, shape, (x0, y0, x1 - x0, y1 - y0), area))
    objects.sort(key=lambda o: -o.bbox[2] * o.bbox[3])
    return img, objects


def scene_answer(objects: Sequence[SceneObject]) -> str:
    """The answer to "What is in this picture?": the caption of the largest object (box area)."""
    return max(objects, key=lambda o: o.bbox[2] * o.bbox[3]).caption


def write_synthetic_scenes(root: str | Path, n_images: int, seed: int = 0, size: int = SCENE_SIZE) -> Path:
    """Write `n_images` scenes to ROOT/images/*.png and a COCO-style ROOT/instances.json.

    Image i uses the integer seed `seed + i`. Categories are the shapes; each annotation also
    carries its `colour` and `caption`. Returns the path of instances.json.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    categories = [{"id": i + 1, "name": shape, "supercategory": "shape"} for i, shape in enumerate(SHAPES)]
    cat_id = {c["name"]: c["id"] for c in categories}
    images, annotations = [], []
    for i in range(n_images):
        img, objects = make_scene(seed + i, size)
        name = f"scene_{seed + i:06d}.png"
        img.save(root / "images" / name)
        image_id = i + 1
        images.append({"id": image_id, "file_name": f"images/{name}", "width": size, "height": size})
        for obj in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat_id[obj.shape],
                    "bbox": list(obj.bbox),
                    "area": obj.area,
                    "iscrowd": 0,
                    "colour": obj.colour,
                    "caption": obj.caption,
                }
            )
    instances = {
        "info": {"description": "gazeheads synthetic scenes", "seed": seed},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    path = root / "instances.json"
    write_text(path, json.dumps(instances, indent=1) + "\n")
    return path
