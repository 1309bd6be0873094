"""The paper-vs-measured section of a reproduction's report.html.

When `gazeheads.report` offers `ReportSection` and `Table` (the report being rebuilt on another
branch), :func:`comparison_section` returns the section as that value, for
`write_report(..., extra_sections=[...])`. Until that is wired into the evaluation session's
`finish`, :func:`add_to_report` places the same table right under the report's title.
"""

from __future__ import annotations

from pathlib import Path

from ..files import write_text
from .compare import format_html

ANCHOR = "paper-vs-measured"
TITLE = "Paper vs measured"


def comparison_section(table: list[dict], note: str):
    """A `gazeheads.report.ReportSection` holding the comparison, or None where the report has none yet."""
    try:
        from ..report import ReportSection, Table  # type: ignore[attr-defined]
    except ImportError:
        return None
    rows = [[r["claim"], r["paper"], r["measured"], "" if r["n"] is None else str(r["n"])] for r in table]
    return ReportSection(TITLE, note, tables=[Table(["claim", "paper", "measured", "n"], rows, note)], anchor=ANCHOR)


def add_to_report(report: Path, table: list[dict], note: str) -> Path:
    """Insert the comparison under the first heading of an existing report.html (once)."""
    page = report.read_text(encoding="utf-8")
    if f"id='{ANCHOR}'" in page:
        return report
    section = format_html(table, note)
    cut = page.find("</h1>")
    page = page[:cut + 5] + section + page[cut + 5:] if cut >= 0 else page.replace("<body>", "<body>" + section, 1)
    return write_text(report, page)
