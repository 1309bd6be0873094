"""Comic strips: N panels stitched left to right into the one image a VLM sees.

The published stitching (docs/method.md section 1): the target height is rounded to a multiple
of 32 (Python `round`, at least 32); each panel is resized with LANCZOS, keeping its aspect
ratio, to width `round_to_32(int(w * H / h))` (at least 32); panels are pasted edge to edge,
so the strip is exactly the sum of the panel widths; for a gap g > 0 a white band g px wide
is painted over each inner boundary x, from `x - g//2` to `x + (g - g//2) - 1`, on the
panels' own pixels. Every panel edge then lies on a 32-px boundary (one merged Qwen3-VL
token), so no token mixes two panels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from ..layout import MAX_PANEL_PIXELS, MAX_STRIP_PIXELS, StripLayout, round_to

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
Box = tuple[int, int, int, int]
WHITE = (255, 255, 255)


@dataclass
class Strip:
    """A stitched strip and where each panel sits in it (pixel boxes, left to right).

    `digest` identifies the panels' pixels independently of how they were stitched (it is how
    a ranking recognises its discovery strips in an evaluation set).
    """

    image: Image.Image
    panel_boxes: list[Box]
    comic_id: str = ""
    captions: list[str] | None = None
    meta: dict = field(default_factory=dict)
    digest: str = ""

    @property
    def n_panels(self) -> int:
        return len(self.panel_boxes)


def panels_digest(panels: Sequence[Image.Image]) -> str:
    """sha1 over the panels' sizes and RGB pixels."""
    digest = hashlib.sha1()
    for panel in panels:
        rgb = panel if panel.mode == "RGB" else panel.convert("RGB")
        digest.update(f"{rgb.size}".encode())
        digest.update(rgb.tobytes())
    return digest.hexdigest()[:20]


def panel_widths(sizes: Sequence[tuple[int, int]], height: int, multiple: int = 32) -> list[int]:
    """Widths of panels of these (width, height) sizes at strip height `height` (already rounded)."""
    return [round_to(int(w * height / h), multiple) for w, h in sizes]


def stitch(
    panels: Sequence[Image.Image],
    layout: StripLayout | None = None,
    *,
    comic_id: str = "",
    captions: list[str] | None = None,
) -> Strip:
    """Stitch `panels` into one strip with the published rules (see the module docstring)."""
    layout = layout or StripLayout()
    if not panels:
        raise DataError("No panels to stitch.", "Give at least one panel image.")
    if captions is not None and len(captions) != len(panels):
        raise DataError(
            f"{len(captions)} captions for {len(panels)} panels.", "Give exactly one caption per panel."
        )
    for k, panel in enumerate(panels, start=1):
        if not isinstance(panel, Image.Image) or panel.width == 0 or panel.height == 0:
            raise DataError(f"Panel {k} is not a non-empty PIL image: {panel!r}.", "Pass PIL images with pixels.")
    height = layout.rounded_height
    widths = panel_widths([p.size for p in panels], height, layout.multiple)
    total = sum(widths)
    if total * height > MAX_STRIP_PIXELS:
        raise DataError(
            f"The stitched strip would be {total} x {height} px ({total * height / 1e6:.0f} MP), over the "
            f"{MAX_STRIP_PIXELS / 1e6:.0f} MP budget: a panel is very wide for its height (panel widths {widths}).",
            "Crop or split the wide panels, or stitch at a smaller height.",
        )
    canvas = Image.new("RGB", (total, height), WHITE)
    boxes: list[Box] = []
    x = 0
    for panel, width in zip(panels, widths):
        rgb = panel.convert("RGB")
        if rgb.size != (width, height):
            rgb = rgb.resize((width, height), Image.Resampling.LANCZOS)
        canvas.paste(rgb, (x, 0))
        boxes.append((x, 0, x + width, height))
        x += width
    if layout.gap:
        band = Image.new("RGB", (layout.gap, height), WHITE)
        for _, _, edge, _ in boxes[:-1]:
            canvas.paste(band, (edge - layout.gap // 2, 0))
    return Strip(canvas, boxes, comic_id=comic_id, captions=captions, digest=panels_digest(panels))


def open_image(path: str | Path, *, max_pixels: int = MAX_PANEL_PIXELS) -> Image.Image:
    """Open an image as RGB, or raise a DataError naming the file.

    The size is checked from the file's header before any pixel is decoded, so an oversized
    image (or a decompression bomb) is refused without using its memory.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder, not an image.", "Give an image file (PNG, JPEG, WebP or BMP).")
    try:
        with Image.open(path) as img:
            check_pixels(img.size, str(path), max_pixels)
            img.load()
            return img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"Image not found: {path}", "Check the path.") from None
    except Image.DecompressionBombError:
        raise DataError(f"{path} declares more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP, over the "
                        f"{max_pixels / 1e6:.0f} MP budget for one image (a decompression bomb's shape).", _SHRINK) \
            from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(
            f"Cannot read image {path}: {exc}", "Replace it with a valid PNG, JPEG, WebP or BMP file."
        ) from None


_SHRINK = "Shrink the image (e.g. to at most 4096 px on its longest side) and try again."


def check_image_header(path: str | Path, max_pixels: int = MAX_PANEL_PIXELS) -> None:
    """Read only the header of an image file and refuse it now if it is over the pixel budget."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            check_pixels(img.size, str(path), max_pixels)
    except Image.DecompressionBombError:
        open_image(path, max_pixels=max_pixels)  # raises the same DataError as reading it would
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"Cannot read image {path}: {exc}", "Replace it with a valid PNG, JPEG, WebP or BMP file.") \
            from None


def check_pixels(size: tuple[int, int], what: str, max_pixels: int = MAX_PANEL_PIXELS) -> None:
    """A DataError when an image of `size` (width, height) exceeds the pixel budget."""
    width, height = size
    if width * height > max_pixels:
        raise DataError(
            f"{what} is {width} x {height} px ({width * height / 1e6:.0f} MP), over the {max_pixels / 1e6:.0f} MP "
            "budget for one image.", _SHRINK)


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
