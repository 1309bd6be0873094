"""The images a visitor can pick: synthetic strips, a comics folder, and uploads.

Every image has an id. Strips and comics are indexed once, at start-up; a request names an
id, which is looked up in that index and never joined to a path, so no request reaches a
file outside the configured comics folder. Uploads live in memory only (a small LRU store)
after size, format and pixel checks that stop decompression bombs before decoding.
"""

from __future__ import annotations

import io
import secrets
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image, UnidentifiedImageError

from ..data.strips import Strip
from ..errors import GazeheadsError
from ..layout import StripLayout

UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")


class UploadError(GazeheadsError):
    """An upload the demo refuses; `status` is the HTTP status to answer with."""

    def __init__(self, problem: str, fix: str, status: int) -> None:
        super().__init__(problem, fix)
        self.status = status


@dataclass
class Limits:
    """Upload limits: bytes on the wire, decoded pixels, and the side shown to the model."""

    max_upload_bytes: int = 8 * 1024 * 1024
    max_pixels: int = 24_000_000
    max_side: int = 1024  # uploads are shrunk to this longest side before the model sees them
    max_uploads: int = 16  # kept in memory, oldest dropped first


@dataclass
class Entry:
    """One pickable image; `load()` returns the Strip or PIL image the model reads."""

    id: str
    name: str
    source: str  # "synthetic", "comics" or "upload"
    loader: object = field(repr=False, default=None)
    captions: list[str] | None = None

    def load(self) -> Strip | Image.Image:
        return self.loader()  # type: ignore[operator]


def synthetic_entries(seeds, layout: StripLayout | None = None) -> list[Entry]:
    """Synthetic strips (gazeheads.synth) for `seeds`, stitched with `layout` (default: the synthetic layout)."""
    from ..synth import make_strip

    entries = []
    for seed in seeds:
        seed = int(seed)
        strip = make_strip(seed, comic_id=f"synth-{seed}", layout=layout)
        entries.append(Entry(f"synth-{seed}", f"synthetic strip {seed}", "synthetic", (lambda s=strip: s),
                             strip.captions))
    return entries


def comics_entries(strips: Sequence[Strip]) -> list[Entry]:
    """One entry per strip of a StripSet (listed at start-up by `resolve_comics`, each read on demand)."""
    names = getattr(strips, "ids", None) or [f"comic {i}" for i in range(1, len(strips) + 1)]
    return [Entry(f"comic-{index}", str(name), "comics", (lambda i=index - 1: strips[i]))
            for index, name in enumerate(names, start=1)]


class Library:
    """The id -> image index (fixed at start-up) plus the in-memory upload store."""

    def __init__(self, entries: list[Entry], limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._fixed: dict[str, Entry] = {}
        for entry in entries:
            if entry.id in self._fixed:
                raise ValueError(f"Duplicate image id {entry.id!r}.")
            self._fixed[entry.id] = entry
        self._uploads: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Strip | Image.Image] = OrderedDict()

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._fixed.values()) + list(self._uploads.values())

    def get(self, image_id: str) -> Entry | None:
        with self._lock:
            return self._fixed.get(image_id) or self._uploads.get(image_id)

    def image(self, entry: Entry) -> Strip | Image.Image:
        """The loaded image of an entry (comic folders are read once, then cached)."""
        with self._lock:
            if entry.id in self._cache:
                self._cache.move_to_end(entry.id)
                return self._cache[entry.id]
        image = entry.load()
        with self._lock:
            self._cache[entry.id] = image
            while len(self._cache) > 32:
                self._cache.popitem(last=False)
        return image

    def add_upload(self, data: bytes, name: str = "upload") -> Entry:
        """Check and decode an uploaded image, keep it in memory, return its entry."""
        image = decode_upload(data, self.limits)
        entry = Entry(f"upload-{secrets.token_hex(8)}", name[:80] or "upload", "upload", (lambda im=image: im))
        with self._lock:
            self._uploads[entry.id] = entry
            while len(self._uploads) > self.limits.max_uploads:
                dropped, _ = self._uploads.popitem(last=False)
                self._cache.pop(dropped, None)
        return entry


def decode_upload(data: bytes, limits: Limits) -> Image.Image:
    """An RGB image from uploaded bytes, or an UploadError (413 too big, 415 not an image we take)."""
    if len(data) > limits.max_upload_bytes:
        raise UploadError(f"The upload has {len(data)} bytes; the limit is {limits.max_upload_bytes}.",
                          "Upload a smaller image.", 413)
    if not data:
        raise UploadError("The upload is empty.", "Send the image file as the request body.", 400)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as img:
                width, height = img.size  # from the header: nothing decoded yet
                if width * height > limits.max_pixels:
                    raise UploadError(
                        f"The image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}.",
                        "Upload a smaller image (this also stops decompression bombs).", 413)
                img.load()
                image = img.convert("RGB")
        except UploadError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UploadError(f"Refused a decompression bomb: {exc}", "Upload an ordinary image.", 413) from None
        except UnidentifiedImageError:
            raise UploadError("The upload is not a PNG, JPEG, WebP or BMP image.",
                              "Upload an image in one of those formats.", 415) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise UploadError(f"The image cannot be decoded: {exc}", "Upload an intact image file.", 400) from None
    if max(image.size) > limits.max_side:
        image.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
    return image
