"""Strips sampled from the raw COMICS corpus (Iyyer et al. 2017), where the paper discovers heads.

Layout: `ROOT/<comic_id>/<page>_<panel>.jpg` (any common image suffix; page and panel are integers).
A strip is N consecutive panels of one interior page: when a comic has more than 10 pages its
first and last 5 pages (covers, credits, ads) are skipped. Pages with fewer than N consecutive
panels are skipped. Sampling draws distinct pages, then one run of N panels per page, from a
seeded generator, so a seed always gives the same strips.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..layout import StripLayout
from .folder import natural_key
from .strips import IMAGE_SUFFIXES, Strip, open_image, stitch
from .stripset import StripSet

PANEL_NAME = re.compile(r"^(\d+)_(\d+)$")
EDGE_PAGES = 5  # pages skipped at each end of a comic ...
MIN_PAGES_FOR_SKIP = 11  # ... when it has more than 10 pages


@dataclass
class Page:
    """One page of one comic: its panel files by panel number, and the starts of N-panel runs."""

    comic: str
    page: int
    panels: dict[int, Path]
    starts: list[int]


def scan_comic(folder: Path) -> dict[int, dict[int, Path]]:
    """Panel files of one comic folder, as {page: {panel: path}}; other files are ignored."""
    pages: dict[int, dict[int, Path]] = {}
    for path in folder.iterdir():
        match = PANEL_NAME.match(path.stem)
        if match and path.suffix.lower() in IMAGE_SUFFIXES:
            page, panel = int(match[1]), int(match[2])
            pages.setdefault(page, {})[panel] = path
    return pages


def interior_pages(pages: list[int]) -> list[int]:
    """The sorted pages without the first and last 5 when there are more than 10."""
    pages = sorted(pages)
    if len(pages) >= MIN_PAGES_FOR_SKIP:
        return pages[EDGE_PAGES:-EDGE_PAGES]
    return pages


def run_starts(panel_numbers: list[int], n_panels: int) -> list[int]:
    """First panel numbers k such that panels k..k+N-1 are all present."""
    present = set(panel_numbers)
    return sorted(k for k in present if all(k + i in present for i in range(n_panels)))


def candidate_pages(root: str | Path, n_panels: int = 6) -> list[Page]:
    """Every interior page with at least one run of N consecutive panels, in a fixed order."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"COMICS folder not found: {root}", "Give the root laid out as ROOT/<comic_id>/<page>_<panel>.jpg."
        )
    candidates = []
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
        pages = scan_comic(folder)
        for page in interior_pages(list(pages)):
            starts = run_starts(list(pages[page]), n_panels)
            if starts:
                candidates.append(Page(folder.name, page, pages[page], starts))
    return candidates


def corpus_strip_set(root: str | Path, start: int, stop: int, layout: StripLayout, *, seed: int = 0,
                     source: str = ""):
    """Strips [start:stop] of a seeded sample of distinct interior pages, each read on demand.

    The sample order depends only on the corpus and `seed`, so slices of one seed are disjoint.
    The comic_id of a strip is "<comic_id>/<page>:<first_panel>".
    """
    candidates = candidate_pages(root, layout.n_panels)
    if not candidates:
        raise DataError(
            f"No page under {root} has {layout.n_panels} consecutive panels (after skipping the first and last "
            f"{EDGE_PAGES} pages of comics longer than 10 pages).",
            "Check the layout ROOT/<comic_id>/<page>_<panel>.jpg, or lower n_panels.",
        )
    if stop > len(candidates):
        raise DataError(
            f"Asked for strips up to {stop} but only {len(candidates)} pages under {root} qualify.",
            f"Ask for at most {len(candidates)} strips (one per page).",
        )
    rng = random.Random(seed)
    order = rng.sample(candidates, len(candidates))
    chosen = [(page, rng.choice(page.starts)) for page in order][start:stop]
    ids = [f"{page.comic}/{page.page}:{first}" for page, first in chosen]
    return StripSet(ids, lambda i: _page_strip(*chosen[i], layout), source or f"comics:{root}")


def _page_strip(page: Page, start: int, layout: StripLayout) -> Strip:
    files = [page.panels[start + i] for i in range(layout.n_panels)]
    strip = stitch([open_image(path) for path in files], layout, comic_id=f"{page.comic}/{page.page}:{start}")
    strip.meta.update(
        source="comics", comic=page.comic, page=page.page, first_panel=start, files=[str(f) for f in files]
    )
    return strip
