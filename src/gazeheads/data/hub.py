"""Comic strips from a Hugging Face dataset, by default `baulab/openai-comic-strips`.

One row is one strip. Columns, matched case-insensitively:

- id: `comic_id` (required);
- panels: `panel_1`..`panel_N` (also `panel1`.., `image_1`.., `image1`..), or one list column
  `panels` / `images` (required);
- captions, optional: `caption_1`..`caption_N` (also `caption1`, `panel_1_caption`, `panel1_caption`,
  `captions_1`, `panel_1_text`, `text_1`, `description_1`, `panel_1_description`), or one list column
  `captions`. The first family present for every panel wins. Some but not all panels having
  caption columns is an error rather than a silent drop.

Image cells may be PIL images (the `datasets.Image` feature), `{"bytes", "path"}` dicts, raw bytes or
file paths. Other scalar columns (e.g. `style`, `protagonist`) are kept in `Strip.meta`.
"""

from __future__ import annotations

import io
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from ..layout import StripLayout
from .folder import save_strip_folder
from .strips import Strip, open_image, stitch
from .stripset import StripSet

DEFAULT_DATASET = "baulab/openai-comic-strips"
ID_COLUMN = "comic_id"
PANEL_FAMILIES = ("panel_{k}", "panel{k}", "image_{k}", "image{k}")
PANEL_LIST_COLUMNS = ("panels", "images")
CAPTION_FAMILIES = (
    "caption_{k}",
    "caption{k}",
    "panel_{k}_caption",
    "panel{k}_caption",
    "captions_{k}",
    "panel_{k}_text",
    "text_{k}",
    "description_{k}",
    "panel_{k}_description",
)
CAPTION_LIST_COLUMNS = ("captions",)


@dataclass
class HubColumns:
    """Which dataset columns hold the id, the panels and the captions of a strip."""

    comic_id: str
    panels: list[str] | str  # one column per panel, or one list column
    captions: list[str] | str | None
    extra: list[str]


@dataclass
class HubRow:
    """One strip's raw parts, before stitching."""

    comic_id: str
    panels: list[Image.Image]
    captions: list[str] | None
    meta: dict[str, Any]


def _family(by_lower: dict[str, str], templates: Sequence[str], n_panels: int) -> list[str] | None:
    for template in templates:
        names = [template.format(k=k).lower() for k in range(1, n_panels + 1)]
        if all(name in by_lower for name in names):
            return [by_lower[name] for name in names]
    return None


def _family_pattern(templates: Sequence[str]) -> re.Pattern[str]:
    alternatives = (re.escape(t).replace(r"\{k\}", r"\d+") for t in templates)
    return re.compile("^(?:" + "|".join(alternatives) + ")$")


def find_columns(column_names: Iterable[str], n_panels: int = 6) -> HubColumns:
    """Match dataset columns to id, panels and captions (see the module docstring)."""
    names = list(column_names)
    by_lower = {name.lower(): name for name in names}
    expected = f"'{ID_COLUMN}' and 'panel_1'..'panel_{n_panels}' (or a list column 'panels')"
    if ID_COLUMN not in by_lower:
        raise DataError(f"No '{ID_COLUMN}' column; found {names}, expected {expected}.", _column_fix(n_panels))
    panels: list[str] | str | None = _family(by_lower, PANEL_FAMILIES, n_panels)
    if panels is None:
        panels = next((by_lower[c] for c in PANEL_LIST_COLUMNS if c in by_lower), None)
    if panels is None:
        raise DataError(
            f"No image column for every one of {n_panels} panels; found {names}, expected {expected}.",
            _column_fix(n_panels),
        )
    captions: list[str] | str | None = _family(by_lower, CAPTION_FAMILIES, n_panels)
    if captions is None:
        captions = next((by_lower[c] for c in CAPTION_LIST_COLUMNS if c in by_lower), None)
    if captions is None:
        pattern = _family_pattern(CAPTION_FAMILIES)
        partial = [name for name in names if pattern.match(name.lower())]
        if partial:
            raise DataError(
                f"Caption columns {partial} do not cover panels 1..{n_panels}.",
                f"Provide caption_1..caption_{n_panels} (one per panel), or drop the caption columns.",
            )
    used = {by_lower[ID_COLUMN]}
    for group in (panels, captions):
        if group is not None:
            used.update([group] if isinstance(group, str) else group)
    extra = [name for name in names if name not in used]
    return HubColumns(by_lower[ID_COLUMN], panels, captions, extra)


def _column_fix(n_panels: int) -> str:
    return (
        f"Rename the columns with dataset.rename_column(...), or pass n_panels to match; "
        f"see gazeheads.data.hub for the accepted names (e.g. comic_id, panel_1..panel_{n_panels}, caption_1..)."
    )


def _as_image(value: Any, where: str) -> Image.Image:
    """Decode one image cell into an RGB PIL image."""
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    if isinstance(value, dict):
        if value.get("bytes"):
            value = value["bytes"]
        elif value.get("path"):
            value = value["path"]
    if isinstance(value, (bytes, bytearray)):
        try:
            with Image.open(io.BytesIO(value)) as img:
                img.load()
                return img.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"Cannot decode the image in {where}: {exc}", "Fix or drop that row.") from None
    if isinstance(value, (str, Path)):
        return open_image(value)
    raise DataError(f"No image in {where} (got {type(value).__name__}).", "Fix or drop that row.")


def _cells(row: dict[str, Any], group: list[str] | str, n_panels: int, where: str) -> list[Any]:
    if isinstance(group, list):
        return [row[name] for name in group]
    cells = row[group]
    if not isinstance(cells, (list, tuple)) or len(cells) != n_panels:
        count = len(cells) if isinstance(cells, (list, tuple)) else type(cells).__name__
        raise DataError(f"Column '{group}' of {where} holds {count} items, expected {n_panels}.", "Fix that row.")
    return list(cells)


def read_row(row: dict[str, Any], columns: HubColumns, n_panels: int = 6, index: int = 0) -> HubRow:
    """Decode one dataset row into its id, panel images, captions and scalar metadata."""
    if row[columns.comic_id] is None:
        raise DataError(f"Row {index} has no {columns.comic_id}.", "Give every row an id.")
    comic_id = str(row[columns.comic_id])
    where = f"row {index} (comic_id {comic_id})"
    panels = [
        _as_image(cell, f"{where}, panel {k}")
        for k, cell in enumerate(_cells(row, columns.panels, n_panels, where), start=1)
    ]
    captions = None
    if columns.captions is not None:
        captions = ["" if c is None else str(c) for c in _cells(row, columns.captions, n_panels, where)]
    meta = {name: row[name] for name in columns.extra if isinstance(row[name], (str, int, float, bool))}
    return HubRow(comic_id, panels, captions, meta)


def open_dataset(name: str = DEFAULT_DATASET, split: str = "train", dataset: Any = None) -> Any:
    """`dataset` itself (or its `split` when it is a DatasetDict), else `datasets.load_dataset(name, split)`."""
    if dataset is not None:
        if isinstance(dataset, dict):  # DatasetDict and IterableDatasetDict are dicts of splits
            if split not in dataset:
                raise DataError(f"Split '{split}' not in the dataset; it has {list(dataset)}.", "Pass one of those.")
            return dataset[split]
        return dataset
    try:
        from datasets import load_dataset
    except ImportError:
        raise DataError("The 'datasets' package is not installed.", "pip install datasets") from None
    try:
        return load_dataset(name, split=split)
    except Exception as exc:  # network, auth, unknown name: all reported the same way
        raise DataError(
            f"Cannot load Hugging Face dataset '{name}' (split '{split}'): {type(exc).__name__}: {exc}",
            "Check the name, the network and HF_TOKEN; or run export_hub_to_folder where the hub is "
            "reachable and use the exported folder instead.",
        ) from exc


def _column_names(dataset: Any) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names is None and getattr(dataset, "features", None) is not None:
        names = list(dataset.features)
    if names is None:
        raise DataError("Cannot tell the columns of this dataset.", "Pass a datasets.Dataset with known features.")
    return list(names)


def _limited(dataset: Any, limit: int | None) -> Iterable[dict[str, Any]]:
    if limit is None:
        return dataset
    if limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}.", "Pass a non-negative limit, or None for all.")
    if hasattr(dataset, "select") and hasattr(dataset, "__len__"):
        return dataset.select(range(min(limit, len(dataset))))
    return itertools.islice(dataset, limit)


def iter_hub_rows(
    name: str = DEFAULT_DATASET,
    split: str = "train",
    limit: int | None = None,
    n_panels: int = 6,
    *,
    dataset: Any = None,
) -> Iterator[HubRow]:
    """Decoded rows of the dataset. Loading and the column check happen now, decoding when iterated."""
    data = open_dataset(name, split, dataset)
    columns = find_columns(_column_names(data), n_panels)
    rows = _limited(data, limit)
    source = f"hf:{name}" if dataset is None else "hf:<in-memory dataset>"

    def generate() -> Iterator[HubRow]:
        for index, row in enumerate(rows):
            hub_row = read_row(row, columns, n_panels, index)
            hub_row.meta = {"source": source, "split": split, "row": index, **hub_row.meta}
            yield hub_row

    return generate()


def hub_strip_set(name: str, split: str, start: int, stop: int | None, layout: StripLayout, *,
                  source: str, dataset: Any = None):
    """Rows [start:stop] of a Hugging Face dataset as strips stitched with `layout`, each read on demand.

    Opening the dataset and checking its columns happen now; a row is decoded when its strip is used.
    """
    data = open_dataset(name, split, dataset)
    columns = find_columns(_column_names(data), layout.n_panels)
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        rows = list(itertools.islice(data, start, stop))  # a streaming dataset: read the window once
        get = rows.__getitem__
        count = len(rows)
    else:
        count = max(0, min(len(data), stop if stop is not None else len(data)) - start)
        get = lambda i: data[start + i]  # noqa: E731
    if count == 0:
        raise DataError(f"The dataset {name!r} (split {split!r}) has no rows in [{start}:{stop}].",
                        "Choose a slice inside the dataset.")
    if hasattr(data, "select") and hasattr(data, "column_names"):  # a datasets.Dataset: read the id column only
        ids = [str(v) for v in data.select(range(start, start + count))[columns.comic_id]]
    else:
        ids = [str(get(i)[columns.comic_id]) for i in range(count)]

    def load(i: int) -> Strip:
        row = read_row(get(i), columns, layout.n_panels, start + i)
        strip = stitch(row.panels, layout, comic_id=row.comic_id, captions=row.captions)
        strip.meta.update({"source": f"hf:{name}", "split": split, "row": start + i, **row.meta})
        return strip

    return StripSet(ids, load, source)


def folder_name(comic_id: str, index: int) -> str:
    """A safe folder name for a comic id (path separators and odd characters become '_')."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", comic_id).strip("._")
    return name or f"comic{index}"


def export_hub_to_folder(
    root: str | Path,
    name: str = DEFAULT_DATASET,
    split: str = "train",
    limit: int | None = None,
    n_panels: int = 6,
    *,
    dataset: Any = None,
) -> list[Path]:
    """Write each row as `root/<comic_id>/p1.png..pN.png` (+ captions.json); return the folders.

    The panels are saved as they are in the dataset (not resized), so `load_strip` on the
    exported folders gives the same strips as `load_hub_strips`.
    """
    root = Path(root)
    written: dict[str, Path] = {}
    for index, row in enumerate(iter_hub_rows(name, split, limit, n_panels, dataset=dataset)):
        folder_id = folder_name(row.comic_id, index)
        if folder_id in written:
            raise DataError(
                f"Two rows map to the comic folder '{folder_id}' (comic_id {row.comic_id!r}).",
                "Make the comic_id values unique.",
            )
        written[folder_id] = save_strip_folder(root / folder_id, row.panels, row.captions)
    return list(written.values())
