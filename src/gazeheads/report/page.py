"""The page's building blocks (figures, tables, sections) and their rendering through a jinja2 template.

The look lives in `templates/report.html.j2` and `templates/report.css`; code only decides
what the page says.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image

TEMPLATES = Path(__file__).with_name("templates")


@dataclass
class Figure:
    """A PNG in the run folder (embedded in the page) and what it shows, on how much data."""

    path: Path
    caption: str


@dataclass
class Cell:
    """A table cell richer than text: an optional thumbnail (a data URI) and a mark (hit, miss, junk)."""

    text: str = ""
    image: str | None = None
    mark: str = ""
    note: str = ""


@dataclass
class Table:
    """Headers in words and already formatted cells (text, or a :class:`Cell`)."""

    headers: list[str]
    rows: list[list[str | Cell]]
    caption: str = ""


@dataclass
class ReportSection:
    """One section of the page; `level` 3 makes it a subsection of the section before it."""

    title: str
    intro: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    anchor: str = ""
    level: int = 2

    def slug(self) -> str:
        return self.anchor or re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "section"


def data_uri(image: Image.Image | Path) -> str:
    """A PNG image as a data URI (what the page embeds, so it is one self-contained file)."""
    if isinstance(image, Path):
        raw = image.read_bytes()
    else:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        raw = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def _png_width(path: Path) -> int:
    """The PNG's width in pixels: the figure is shown at that size, or narrower on a narrow screen."""
    with Image.open(path) as image:
        return image.width


def render_page(*, title: str, meta: Sequence[str], sections: Sequence[ReportSection],
                details: Sequence[tuple[str, str]]) -> str:
    """The HTML page: a title, a line of facts, the sections, and collapsed raw details (title, text)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["data_uri"] = lambda path: data_uri(Path(path))
    env.filters["png_width"] = _png_width
    env.tests["cell"] = lambda value: isinstance(value, Cell)
    used: set[str] = set()
    anchors = []
    for section in sections:
        slug = section.slug()
        while slug in used:
            slug += "-2"
        used.add(slug)
        anchors.append(slug)
    return env.get_template("report.html.j2").render(
        title=title, meta=list(meta), sections=list(zip(sections, anchors)), details=list(details),
        style=(TEMPLATES / "report.css").read_text())
