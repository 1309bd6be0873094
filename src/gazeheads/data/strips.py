"""Comic strips: N panels stitched left to right into the one image a VLM sees.

DESIGN.md section 2: panels are resized to one height (rounded to a multiple of 32 so
panel edges fall on token-grid edges), widths keep the aspect ratio (rounded to a multiple
of 32), and a thin white gap separates neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image, UnidentifiedImageError

from ..errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
Box = tuple[int, int, int, int]


@dataclass
class Strip:
    """A stitched strip and where each panel sits in it (pixel boxes, left to right)."""

    image: Image.Image
    panel_boxes: list[Box]
    comic_id: str = ""
    captions: list[str] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_panels(self) -> int:
        return len(self.panel_boxes)


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def stitch(
    panels: Sequence[Image.Image],
    *,
    height: int = 256,
    gap: int = 6,
    multiple: int = 32,
    comic_id: str = "",
    captions: list[str] | None = None,
) -> Strip:
    """Resize `panels` to a common height and concatenate them with white gaps."""
    if not panels:
        raise DataError("No panels to stitch.", "Give at least one panel image.")
    if captions is not None and len(captions) != len(panels):
        raise DataError(
            f"{len(captions)} captions for {len(panels)} panels.", "Give exactly one caption per panel."
        )
    if height <= 0 or gap < 0 or multiple <= 0:
        raise DataError(
            f"Bad strip geometry: height={height}, gap={gap}, multiple={multiple}.",
            "Use height > 0, gap >= 0 and multiple > 0.",
        )
    for k, panel in enumerate(panels, start=1):
        if not isinstance(panel, Image.Image) or panel.width == 0 or panel.height == 0:
            raise DataError(f"Panel {k} is not a non-empty PIL image: {panel!r}.", "Pass PIL images with pixels.")
    target_h = _round_to(height, multiple)
    resized = []
    for panel in panels:
        w, h = panel.size
        target_w = _round_to(w * target_h / h, multiple)
        resized.append(panel.convert("RGB").resize((target_w, target_h), Image.Resampling.BICUBIC))
    total_w = sum(p.width for p in resized) + gap * (len(resized) - 1)
    canvas = Image.new("RGB", (total_w, target_h), (255, 255, 255))
    boxes: list[Box] = []
    x = 0
    for panel in resized:
        canvas.paste(panel, (x, 0))
        boxes.append((x, 0, x + panel.width, target_h))
        x += panel.width + gap
    return Strip(canvas, boxes, comic_id=comic_id, captions=captions)


def open_image(path: str | Path) -> Image.Image:
    """Open an image as RGB, or raise a DataError naming the file."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"Image not found: {path}", "Check the path.") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(
            f"Cannot read image {path}: {exc}", "Replace it with a valid PNG, JPEG, WebP or BMP file."
        ) from None


def panel_index(path: str | Path) -> int | None:
    """The panel number k of a file named pK.<image suffix> (p1.png -> 1), else None."""
    path = Path(path)
    stem, suffix = path.stem, path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES or not stem.startswith("p") or not stem[1:].isdigit():
        return None
    return int(stem[1:])


def panel_files(folder: str | Path, n_panels: int = 6) -> list[Path]:
    """The files p1..pN of a comic folder, checked for missing and extra panels."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"Comic folder not found: {folder}", "Give a folder holding p1.png .. pN.png.")
    found: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        index = panel_index(path)
        if index is None:
            continue
        if index in found:
            raise DataError(
                f"Panel {index} appears twice in {folder}: {found[index].name} and {path.name}.",
                "Keep one image per panel.",
            )
        found[index] = path
    missing = [k for k in range(1, n_panels + 1) if k not in found]
    extra = sorted(k for k in found if k > n_panels or k < 1)
    if missing:
        names = ", ".join(f"p{k}" for k in missing)
        raise DataError(
            f"{folder} is missing panel(s) {names} (expected p1..p{n_panels}).",
            f"Add the missing images, or pass n_panels to match the {len(found)} panels present.",
        )
    if extra:
        names = ", ".join(found[k].name for k in extra)
        raise DataError(
            f"{folder} has extra panel(s) {names} beyond p{n_panels}.",
            f"Remove them, or pass n_panels={max(found)}.",
        )
    return [found[k] for k in range(1, n_panels + 1)]
