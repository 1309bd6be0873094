"""The paper-vs-measured section of a reproduction's report.html."""

from __future__ import annotations

from ..report import ReportSection, Table

ANCHOR = "paper-vs-measured"
TITLE = "Paper vs measured"


def comparison_section(table: list[dict], note: str) -> ReportSection:
    """The comparison as a report section (shown right after the report's overview)."""
    rows = [[r["claim"], r["paper"], r["measured"], "" if r["n"] is None else str(r["n"])] for r in table]
    return ReportSection(TITLE, note, tables=[Table(["claim", "paper", "measured", "answers"], rows, note)],
                         anchor=ANCHOR)
