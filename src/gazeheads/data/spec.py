"""One grammar for naming comic strips, shared by every command and API path.

    FOLDER                     ROOT/<comic>/p1.png .. pN.png, or one comic folder
    hf:<dataset>[:<split>]     a Hugging Face dataset, e.g. hf:baulab/openai-comic-strips
    comics:<root>              the raw COMICS corpus (pages sampled with the seed)
    synth[:SEED]               gazeheads' synthetic strips, strip i drawn from seed SEED + i
                               (default SEED 100000: never a training strip of the bundled model)

Any form takes an optional slice: `hf:baulab/openai-comic-strips[250:500]`, `synth:7[0:40]`,
`comics/[:20]`, so discovery and evaluation sets can be chosen disjoint. :func:`parse_comics`
checks the text without touching any file; :func:`resolve_comics` returns a lazy
:class:`StripSet` that reads each strip when it is used, so memory does not grow with the set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..layout import StripLayout
from .strips import Strip
from .stripset import StripSet

SYNTH_DEFAULT_SEED = 100_000
DEFAULT_HUB_DATASET = "baulab/openai-comic-strips"
FORMS = ("a folder ROOT/<comic>/p1.png..pN.png (or one comic folder), hf:<dataset>[:<split>] "
         f"(e.g. hf:{DEFAULT_HUB_DATASET}), comics:<root> for the raw COMICS corpus, or synth[:SEED]; "
         "each may end with a slice [START:STOP], e.g. synth:7[0:40]")
_SLICE = re.compile(r"^(?P<body>.*?)\[(?P<start>\s*-?\d*\s*):(?P<stop>\s*-?\d*\s*)\]$")


@dataclass(frozen=True)
class ComicsSpec:
    """A parsed data spec: its kind, what it points at, and an optional [start:stop] slice."""

    kind: str  # "folder", "hf", "comics" or "synth"
    target: str  # folder path, dataset name, corpus root, or "" for synth
    split: str = "train"
    seed: int = SYNTH_DEFAULT_SEED
    start: int = 0
    stop: int | None = None
    text: str = ""

    @property
    def base(self) -> str:
        """The spec without its slice, with folders made absolute (how rankings name their source)."""
        if self.kind == "folder":
            return str(Path(self.target).resolve())
        if self.kind == "hf":
            return f"hf:{self.target}:{self.split}"
        if self.kind == "comics":
            return f"comics:{Path(self.target).resolve()}"
        return "synth"

    def window(self, limit: int | None) -> tuple[int, int | None]:
        """The [start, stop) rows to read when at most `limit` strips are wanted (None: all)."""
        stop = self.stop
        if limit is not None:
            stop = self.start + limit if stop is None else min(stop, self.start + limit)
        return self.start, stop


def parse_comics(text: str | Path) -> ComicsSpec:
    """Parse a data spec (no file is read); a DataError with the accepted forms when it is malformed."""
    if isinstance(text, Path):
        text = str(text)
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"No comics given ({text!r}).", f"Give {FORMS}.")
    raw = text.strip()
    body, start, stop = raw, 0, None
    match = _SLICE.match(raw)
    if match:
        body = match["body"]
        try:
            start = int(match["start"]) if match["start"].strip() else 0
            stop = int(match["stop"]) if match["stop"].strip() else None
        except ValueError:
            raise DataError(f"Cannot read the slice of {raw!r}.", "Write it as [START:STOP], e.g. [0:40].") from None
        if start < 0 or (stop is not None and stop < 0):
            raise DataError(f"The slice of {raw!r} counts from the end.", "Use non-negative bounds, e.g. [250:500].")
        if stop is not None and stop <= start:
            raise DataError(f"The slice of {raw!r} selects no strip.", "Give STOP > START, e.g. [0:40].")
    if body == "synth" or body.startswith("synth:"):
        seed_text = body[len("synth:"):] if ":" in body else ""
        if seed_text and not re.fullmatch(r"\d+", seed_text):
            raise DataError(f"Cannot read the seed of {raw!r}.", "Write synth or synth:SEED with SEED a whole number.")
        seed = int(seed_text) if seed_text else SYNTH_DEFAULT_SEED
        return ComicsSpec("synth", "", seed=seed, start=start, stop=stop, text=raw)
    if body.startswith("hf:"):
        name, _, split = body[3:].partition(":")
        if not name or "/" not in name and not re.fullmatch(r"[\w.-]+", name):
            raise DataError(f"No dataset name in {raw!r}.", f"Write e.g. hf:{DEFAULT_HUB_DATASET}.")
        return ComicsSpec("hf", name, split=split or "train", start=start, stop=stop, text=raw)
    if body.startswith("comics:"):
        root = body[len("comics:"):]
        if not root:
            raise DataError(f"No corpus folder in {raw!r}.", "Write comics:<root of the COMICS corpus>.")
        return ComicsSpec("comics", root, start=start, stop=stop, text=raw)
    return ComicsSpec("folder", body, start=start, stop=stop, text=raw)


def check_comics(spec: ComicsSpec) -> None:
    """Checks that need no image decoding: the folder or corpus root exists."""
    if spec.kind in ("folder", "comics"):
        path = Path(spec.target)
        if not path.is_dir():
            what = "folder" if spec.kind == "folder" else "COMICS corpus folder"
            raise DataError(f"Cannot resolve comics spec {spec.text!r}: no such {what} {path}.", f"Give {FORMS}.")


def spec_base(text: str) -> str:
    """The source name a ranking records for a spec (its `base`); the text itself if it is not one."""
    try:
        return parse_comics(text).base
    except DataError:
        return str(text)


def strip_digest(strip: Strip) -> str:
    return strip.digest


def resolve_comics(spec: str | Path | ComicsSpec, layout: StripLayout | None = None, limit: int | None = None,
                   *, seed: int = 0) -> StripSet:
    """The strips a spec names, stitched with `layout` (default: the published layout).

    `limit` caps the number of strips after the spec's slice; `seed` samples the pages of a
    `comics:` corpus. Listing happens now (errors for missing folders or panels come at once);
    pixels are read when a strip is used.
    """
    parsed = spec if isinstance(spec, ComicsSpec) else parse_comics(spec)
    layout = layout or StripLayout()
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"The number of strips must be at least 1, got {limit!r}.", "Ask for 1 or more strips.")
    check_comics(parsed)
    start, stop = parsed.window(limit)
    if parsed.kind == "synth":
        from ..synth import make_strip

        if stop is None:
            raise DataError(f"{parsed.text!r} names endless synthetic strips.",
                            "Say how many (--n-strips N), or give a slice like synth:7[0:40].")
        seeds = [parsed.seed + i for i in range(start, stop)]
        return StripSet([f"synth_{s:06d}" for s in seeds],
                        lambda i: make_strip(seeds[i], comic_id=f"synth_{seeds[i]:06d}", layout=layout), parsed.base)
    if parsed.kind == "hf":
        from .hub import hub_strip_set

        return hub_strip_set(parsed.target, parsed.split, start, stop, layout, source=parsed.base)
    if parsed.kind == "comics":
        from .comics_corpus import corpus_strip_set

        if stop is None:
            raise DataError("comics: needs a number of strips to sample (the corpus has over a million panels).",
                            "Pass --n-strips N (or limit=N), or a slice like comics:ROOT[0:500].")
        return corpus_strip_set(parsed.target, start, stop, layout, seed=seed, source=parsed.base)
    from .folder import folder_strip_set

    return folder_strip_set(parsed.target, start, stop, layout, source=parsed.base)


def disjoint_split(spec: str, n_first: int, n_second: int) -> tuple[str, str]:
    """Two slices of one spec, the first `n_first` strips and the next `n_second` (disjoint by construction)."""
    parsed = parse_comics(spec)
    body = parsed.text[: parsed.text.rfind("[")] if parsed.text.endswith("]") and "[" in parsed.text else parsed.text
    first = parsed.start
    return (f"{body}[{first}:{first + n_first}]", f"{body}[{first + n_first}:{first + n_first + n_second}]")
