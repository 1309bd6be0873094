"""The documentation's Python blocks run as written (README and the user guide), on the bundled model."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "docs" / "guide.md"]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.DOTALL)


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_every_python_block_runs(doc, tmp_path, monkeypatch):
    blocks = python_blocks(doc)
    assert blocks, f"{doc.name} has no Python examples"
    monkeypatch.chdir(tmp_path)  # examples write under runs/ in the working folder
    namespace: dict = {"__name__": "__docs__"}
    for number, block in enumerate(blocks, start=1):
        try:
            exec(compile(block, f"{doc.name} block {number}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message says which block broke
            raise AssertionError(f"{doc.name}, Python block {number} fails: {type(exc).__name__}: {exc}") from exc
    os.chdir(ROOT)


def test_the_docs_name_only_files_that_exist():
    for doc in [*DOCS, ROOT / "docs" / "method.md"]:
        for link in re.findall(r"\]\(((?:docs/)?[\w./-]+\.(?:md|png))\)", doc.read_text(encoding="utf-8")):
            target = (doc.parent / link) if not link.startswith("docs/") else ROOT / link
            assert target.exists(), f"{doc.name} links to {link}, which does not exist"
