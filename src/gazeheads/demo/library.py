"""The images a visitor can pick: synthetic strips, a comics folder, and uploads.

Every image has an id. Strips and comics are indexed once, at start-up; a request names an
id, which is looked up in that index and never joined to a path, so no request reaches a
file outside the configured comics folder. Uploads live in memory only (a small LRU store)
after size, format and pixel checks that stop decompression bombs before decoding. Uploads
are decoded on a few dedicated threads (`Limits.decoders`; the rest wait, 429 beyond
`Limits.max_waiting`) and shrunk while decoding (JPEG decodes at a reduced scale, other formats are box-reduced
straight after), so many concurrent uploads cannot add up to many full-size images in memory.
"""

from __future__ import annotations

import io
import secrets
import threading
import warnings
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence, TypeVar

from PIL import Image, UnidentifiedImageError

from ..data.strips import Strip
from ..errors import GazeheadsError
from ..layout import StripLayout

UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
T = TypeVar("T")


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
    decoders: int = 2  # uploads decoded at the same time (each may briefly hold one full-size image)
    max_waiting: int = 32  # uploads that may wait for a decoder; more are answered 429

    def __post_init__(self) -> None:
        if self.decoders < 1 or self.max_waiting < 0:
            raise ValueError(f"Limits need decoders >= 1 and max_waiting >= 0, "
                             f"got {self.decoders} and {self.max_waiting}.")


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

    def __init__(self, entries: list[Entry], limits: Limits | None = None,
                 on_drop: Callable[[str], None] | None = None) -> None:
        self.limits = limits or Limits()
        self.on_drop = on_drop  # told the id of every upload dropped from the store
        self._fixed: dict[str, Entry] = {}
        for entry in entries:
            if entry.id in self._fixed:
                raise ValueError(f"Duplicate image id {entry.id!r}.")
            self._fixed[entry.id] = entry
        self._uploads: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Strip | Image.Image] = OrderedDict()
        self._decoders = ThreadPoolExecutor(self.limits.decoders, thread_name_prefix="gazeheads-decode")
        self._pending = 0

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

    def decoding(self, fn: Callable[..., T], *args) -> "Future[T]":
        """Run `fn(*args)` on one of the `Limits.decoders` decoding threads; UploadError 429 when
        `Limits.max_waiting` calls already wait.

        Dedicated threads bound both how many images are decoded at once and how much freed
        memory the C allocator keeps: it keeps freed blocks per thread, so decoding on any of
        the server's many worker threads would leave up to one full-size image behind in each."""
        with self._lock:
            if self._pending >= self.limits.decoders + self.limits.max_waiting:
                raise UploadError(f"{self._pending} uploads are being decoded or waiting; the server decodes "
                                  f"{self.limits.decoders} at a time and lets {self.limits.max_waiting} wait.",
                                  "Wait a moment and upload again.", 429)
            self._pending += 1
        try:
            future = self._decoders.submit(fn, *args)
        except RuntimeError:  # shut down
            with self._lock:
                self._pending -= 1
            raise UploadError("The server is shutting down.", "Try again when it is back.", 503) from None
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _future) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        """Stop the decoding threads (queued uploads are dropped)."""
        self._decoders.shutdown(wait=False, cancel_futures=True)

    def add_upload(self, data: bytes, name: str = "upload") -> Entry:
        """Check and decode an uploaded image, keep it in memory, return its entry.

        It decodes on the calling thread: a server runs it through :meth:`decoding`."""
        image = decode_upload(data, self.limits)
        entry = Entry(f"upload-{secrets.token_hex(8)}", name[:80] or "upload", "upload", (lambda im=image: im))
        dropped = []
        with self._lock:
            self._uploads[entry.id] = entry
            while len(self._uploads) > self.limits.max_uploads:
                old, _ = self._uploads.popitem(last=False)
                self._cache.pop(old, None)
                dropped.append(old)
        for old in dropped:
            if self.on_drop is not None:
                self.on_drop(old)
        return entry


def decode_upload(data: bytes, limits: Limits) -> Image.Image:
    """An RGB image from uploaded bytes, at most `limits.max_side` on its longest side, or an UploadError
    (413 too big, 415 not an image we take, 400 broken).

    The pixel count is checked from the header, before anything is decoded (decompression
    bombs). JPEGs are decoded at the smallest DCT scale that still covers `max_side`; other
    formats are box-reduced right after decoding, before any copy is made."""
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
                orientation = img.getexif().get(0x0112, 1)
                img.draft("RGB", (limits.max_side, limits.max_side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
                img.load()
                image = _shrink(img, limits.max_side)
        except UploadError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise UploadError(f"Refused a decompression bomb: {exc}", "Upload an ordinary image.", 413) from None
        except UnidentifiedImageError:
            raise UploadError("The upload is not a PNG, JPEG, WebP or BMP image.",
                              "Upload an image in one of those formats.", 415) from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise UploadError(f"The image cannot be decoded: {exc}", "Upload an intact image file.", 400) from None
    return _upright(image, orientation)


_REDUCIBLE = ("L", "LA", "RGB", "RGBA", "I", "F", "CMYK", "YCbCr")


def _shrink(img: Image.Image, max_side: int) -> Image.Image:
    """A new RGB image no longer than `max_side`: box-reduce by a whole factor first (cheap, no
    full-size copy), then Lanczos for the rest."""
    if img.mode not in _REDUCIBLE:  # palette and bit images: expand once, as before
        img = img.convert("RGB")
    factor = max(img.size) // max_side
    if factor >= 2:
        img = img.reduce(factor)
    image = img.convert("RGB") if img.mode != "RGB" else img
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    """The image as the camera's EXIF orientation tag says it should be shown (phone photos)."""
    method = _TRANSPOSE.get(int(orientation) if isinstance(orientation, int) else 1)
    return image.transpose(method) if method is not None else image
