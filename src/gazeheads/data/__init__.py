"""Comic-strip data: one spec grammar for folders, the Hugging Face hub, the COMICS corpus and
synthetic strips (:func:`resolve_comics`), and the published stitching (:func:`stitch`)."""

from __future__ import annotations

from .folder import list_comics, load_strip, save_strip_folder
from .hub import export_hub_to_folder
from .spec import DEFAULT_HUB_DATASET, FORMS, ComicsSpec, StripSet, disjoint_split, parse_comics, resolve_comics
from .strips import Strip, open_image, panel_files, stitch

__all__ = [
    "DEFAULT_HUB_DATASET", "FORMS", "ComicsSpec", "Strip", "StripSet", "disjoint_split", "export_hub_to_folder",
    "list_comics", "load_strip", "open_image", "panel_files", "parse_comics", "resolve_comics", "save_strip_folder",
    "stitch",
]
