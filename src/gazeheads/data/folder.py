"""Comic folders on disk: `ROOT/<comic>/p1.png .. pN.png` (+ optional `captions.json`).

`captions.json`, when present, is a JSON list of N strings, one per panel, left to right.
The comic id of a strip is the name of its folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from PIL import Image

from ..errors import DataError
from ..layout import StripLayout
from .strips import Strip, check_image_header, open_image, panel_files, panel_index, stitch
from .stripset import StripSet

CAPTIONS_FILE = "captions.json"


def layout_hint(n_panels: int) -> str:
    """The expected on-disk layout, for error messages."""
    return f"ROOT/<comic>/p1.png .. p{n_panels}.png (any of .png .jpg .jpeg .webp .bmp), optional captions.json"


def natural_key(name: str) -> list[Any]:
    """Sort key that orders 'comic2' before 'comic10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def read_captions(folder: str | Path, n_panels: int = 6) -> list[str] | None:
    """The captions in `folder/captions.json`, or None when the file is absent."""
    path = Path(folder) / CAPTIONS_FILE
    if not path.is_file():
        return None
    try:
        captions = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"Cannot parse {path}: {exc}", f'Write a JSON list of {n_panels} strings, e.g. ["panel 1 ...", ...].'
        ) from None
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise DataError(
            f"{path} must hold a JSON list of strings, found {type(captions).__name__}: {str(captions)[:80]}",
            f"Write a JSON list of {n_panels} strings, one per panel.",
        )
    if len(captions) != n_panels:
        raise DataError(
            f"{path} has {len(captions)} captions for {n_panels} panels.",
            "Give exactly one caption per panel, left to right.",
        )
    return captions


def load_strip(folder: str | Path, layout: StripLayout | None = None) -> Strip:
    """Read p1..pN (+ captions.json) from `folder` and stitch them into one Strip with `layout`."""
    layout = layout or StripLayout()
    folder = Path(folder)
    panels = [open_image(path) for path in panel_files(folder, layout.n_panels)]
    captions = read_captions(folder, layout.n_panels)
    strip = stitch(panels, layout, comic_id=folder.name, captions=captions)
    strip.meta.update(source="folder", folder=str(folder))
    return strip


def _has_panels(folder: Path) -> bool:
    return any(panel_index(path) is not None for path in folder.iterdir() if path.is_file())


def list_comics(root: str | Path, n_panels: int = 6) -> list[Path]:
    """Subfolders of `root` that hold panel images, in natural order (comic2 before comic10)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Comics folder not found: {root}", f"Give a folder laid out as {layout_hint(n_panels)}.")
    comics = [
        sub for sub in root.iterdir() if sub.is_dir() and not sub.name.startswith(".") and _has_panels(sub)
    ]
    if not comics:
        hint = " It holds panel images itself: pass its parent folder." if _has_panels(root) else ""
        raise DataError(
            f"No comic folders with panel images under {root}.{hint}",
            f"Lay the comics out as {layout_hint(n_panels)}.",
        )
    return sorted(comics, key=lambda path: natural_key(path.name))


def folder_strip_set(root: str | Path, start: int, stop: int | None, layout: StripLayout, *, source: str):
    """The comics under `root` (or `root` itself when it holds panels), rows [start:stop], read on demand."""
    root = Path(root)
    folders = [root] if _has_panels(root) else list_comics(root, layout.n_panels)
    chosen = folders[start:stop]
    if not chosen:
        raise DataError(f"{root} holds {len(folders)} comic(s); the slice [{start}:{stop}] selects none.",
                        f"Choose rows below {len(folders)}.")
    for folder in chosen:  # missing, extra, unreadable or oversized panels fail now, before any work
        for path in panel_files(folder, layout.n_panels):
            check_image_header(path)
    return StripSet([f.name for f in chosen], lambda i: load_strip(chosen[i], layout), source)


def _check_captions(captions: Sequence[str] | None, n_panels: int) -> list[str] | None:
    if captions is None:
        return None
    captions = list(captions)
    if len(captions) != n_panels or not all(isinstance(c, str) for c in captions):
        raise DataError(
            f"Expected {n_panels} caption strings, got {len(captions)}: {str(captions)[:80]}",
            "Give exactly one string per panel, or None.",
        )
    return captions


def _png_ready(panel: Image.Image) -> Image.Image:
    return panel if panel.mode in ("1", "L", "LA", "P", "RGB", "RGBA") else panel.convert("RGB")


def save_strip_folder(
    folder: str | Path, panels: Sequence[Image.Image], captions: Sequence[str] | None = None
) -> Path:
    """Write `panels` as folder/p1.png .. pN.png (+ captions.json, removed when captions is None).

    Existing p1..pN PNG files are overwritten; any other panel file (p3.jpg, p9.png) is an error,
    because load_strip would then see duplicate or extra panels.
    """
    folder = Path(folder)
    if not panels or not all(isinstance(p, Image.Image) for p in panels):
        raise DataError("save_strip_folder needs a non-empty list of PIL images.", "Pass PIL.Image panels.")
    captions = _check_captions(captions, len(panels))
    wanted = {f"p{k}.png" for k in range(1, len(panels) + 1)}
    if folder.is_dir():
        clashes = sorted(p.name for p in folder.iterdir() if panel_index(p) is not None and p.name not in wanted)
        if clashes:
            raise DataError(
                f"{folder} already holds other panel files: {', '.join(clashes)}.",
                "Remove them or write to an empty folder.",
            )
    folder.mkdir(parents=True, exist_ok=True)
    for k, panel in enumerate(panels, start=1):
        _png_ready(panel).save(folder / f"p{k}.png")
    caption_path = folder / CAPTIONS_FILE
    if captions is None:
        caption_path.unlink(missing_ok=True)
    else:
        caption_path.write_text(json.dumps(captions, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return folder
