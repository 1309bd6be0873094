"""One self-contained HTML page per run: tables, plots (embedded PNG) and example generations."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Iterable

from .files import write_text


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(rows: list[dict]) -> str:
    if not rows:
        return "<p>No results.</p>"
    columns = [c for c in ("protocol", "condition", "k", "size_class", "n", "n_clusters", "accuracy", "ci_low",
                           "ci_high", "junk_rate", "chance", "spearman_mean", "spearman_std", "spearman_undefined",
                           "untargetable") if any(c in r for r in rows)]
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = ""
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c, "")
            cells.append(f"<td>{value:.3f}</td>" if isinstance(value, float) else f"<td>{html.escape(str(value))}</td>")
        body += "<tr>" + "".join(cells) + "</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def _examples(records: Iterable[dict], per_condition: int = 4) -> str:
    shown: dict[str, int] = {}
    items = []
    for record in records:
        condition = record["condition"]
        if condition == "baseline" or shown.get(condition, 0) >= per_condition or record.get("text") is None:
            continue
        shown[condition] = shown.get(condition, 0) + 1
        target = record.get("schedule") or record.get("target")
        mark = "hit" if record.get("hit") is True or (isinstance(record.get("hit"), float) and record["hit"] >= 0.5) \
            else "miss"
        items.append(f"<tr><td>{html.escape(record['protocol'])}</td><td>{html.escape(condition)}</td>"
                     f"<td>{html.escape(str(record['strip']))}</td><td>{html.escape(str(target))}</td>"
                     f"<td class='{mark}'>{mark}</td><td>{html.escape(record['text'])}</td></tr>")
    if not items:
        return ""
    return ("<table><tr><th>protocol</th><th>condition</th><th>strip</th><th>target</th><th></th>"
            "<th>generation</th></tr>" + "".join(items) + "</table>")


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
img { max-width: 100%; }
figcaption { font-size: 0.8em; color: #555; }
.hit { color: #1a7f37; } .miss { color: #b42318; }
pre { background: #f6f8fa; padding: 0.6em; font-size: 0.8em; overflow-x: auto; }
"""


def write_report(run_dir: str | Path, *, title: str, sections: list[tuple[str, list[dict], list[dict]]],
                 settings: dict | None = None, notes: str = "", extra: dict | None = None) -> Path:
    """Write RUN/report.html.

    `sections` are (heading, summary rows, records); every PNG in RUN is embedded at the end
    of the section whose heading its file name starts with, or under "Figures".
    """
    run_dir = Path(run_dir)
    pngs = sorted(run_dir.glob("*.png"))
    used: set[Path] = set()
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if notes:
        parts.append(f"<p>{html.escape(notes)}</p>")
    everything = [row for _, rows, _ in sections for row in rows]
    if len(sections) > 1:
        parts.append("<h2>Summary</h2>" + _table(everything))
    for heading, rows, records in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(_table(rows))
        slug = heading.lower().split()[0]
        for png in pngs:
            if png.stem.startswith(slug):
                parts.append(_img(png, png.stem.replace("_", " ")))
                used.add(png)
        examples = _examples(records)
        if examples:
            parts.append(f"<h3>Example generations</h3>{examples}")
    rest = [p for p in pngs if p not in used]
    if rest:
        parts.append("<h2>Figures</h2>" + "".join(_img(p, p.stem.replace("_", " ")) for p in rest))
    if extra:
        parts.append(f"<h2>Run</h2><pre>{html.escape(json.dumps(extra, indent=1, default=str))}</pre>")
    if settings:
        parts.append(f"<h2>Settings</h2><pre>{html.escape(json.dumps(settings, indent=1, default=str))}</pre>")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>" \
           f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    path = run_dir / "report.html"
    write_text(path, page)
    return path
