"""Comic-strip data: stitched strips from folders, the Hugging Face hub and the COMICS corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from .comics_corpus import sample_comics_strips
from .folder import iter_strips, list_comics, load_strip, save_strip_folder
from .hub import DEFAULT_DATASET, export_hub_to_folder, load_hub_strips
from .strips import Strip, open_image, panel_files, panel_index, stitch

__all__ = [
    "DEFAULT_DATASET",
    "Strip",
    "stitch",
    "open_image",
    "panel_files",
    "load_strip",
    "list_comics",
    "iter_strips",
    "save_strip_folder",
    "load_hub_strips",
    "export_hub_to_folder",
    "sample_comics_strips",
    "resolve_comics",
]

SPEC_FORMS = (
    "a folder ROOT/<comic>/p1.png..pN.png (or one comic folder), "
    "'hf:<dataset>[:<split>]' (e.g. hf:baulab/openai-comic-strips), "
    "or 'comics:<root>' for the raw COMICS corpus"
)


def _split_hub_spec(rest: str) -> tuple[str, str]:
    """'baulab/openai-comic-strips:test' -> (name, 'test'); the split defaults to 'train'."""
    name, sep, split = rest.partition(":")
    return name, (split if sep else "train")


def resolve_comics(
    spec: str | Path, n_panels: int = 6, limit: int | None = None, *, seed: int = 0, **stitch_kw: Any
) -> list[Strip]:
    """The strips named by `spec`: a folder path, `hf:<dataset>[:<split>]`, or `comics:<root>`.

    `limit` caps the number of strips (None: all); for `comics:` it is the number of pages sampled
    with `seed` and must be given. `stitch_kw` (height, gap, multiple) go to `stitch`.
    """
    if limit is not None and limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}.", "Pass a non-negative limit, or None for all.")
    text = str(spec)
    if isinstance(spec, str) and text.startswith("hf:"):
        name, split = _split_hub_spec(text[3:])
        if not name:
            raise DataError(f"No dataset name in {text!r}.", f"Write e.g. hf:{DEFAULT_DATASET}.")
        return list(load_hub_strips(name, split, limit, n_panels, **stitch_kw))
    if isinstance(spec, str) and text.startswith("comics:"):
        if limit is None:
            raise DataError(
                "comics: needs a number of strips to sample (the corpus has over a million panels).",
                "Pass limit, e.g. limit=500.",
            )
        return sample_comics_strips(text[len("comics:"):], limit, seed=seed, n_panels=n_panels, **stitch_kw)
    folder = Path(spec)
    if not folder.is_dir():
        raise DataError(f"Cannot resolve comics spec {text!r}: no such folder.", f"Give {SPEC_FORMS}.")
    if any(panel_index(path) is not None for path in folder.iterdir()):
        return [load_strip(folder, n_panels, **stitch_kw)][:limit]
    return list(iter_strips(folder, n_panels, limit, **stitch_kw))
