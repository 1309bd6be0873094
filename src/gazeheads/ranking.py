"""The head-ranking artifact: gaze scores and per-head panel matrices, saved and loaded.

A ranking is `name.json` (model identity and shape, prompts, the discovery strips, scores)
with a sibling `name.npz` holding the per-head N x N matrices (mean and per strip). It
records which strips it was discovered on, so an evaluation can refuse to test on them.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .adapters.base import HeadShape
from .errors import DataError, GazeheadsWarning, ModelError
from .files import atomic_write, write_text
from .heads import HeadSet, random_control_heads, select_heads, top_heads
from .specs import HeadSpec

if TYPE_CHECKING:
    from .data.strips import Strip
    from .model import GazeModel

FORMAT = "gazeheads.ranking/1"


@dataclass(frozen=True)
class StripIdentity:
    """Where a discovery strip came from and what it looked like (to detect overlap later)."""

    source: str  # the data spec without its slice, e.g. "hf:baulab/openai-comic-strips" or "synth"
    comic_id: str
    digest: str  # sha1 of the panels' pixels, independent of how the strip was stitched

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "comic_id": self.comic_id, "digest": self.digest}


@dataclass
class Ranking:
    """Gaze scores of every (layer, head) of one model, with the evidence behind them."""

    model_id: str
    fingerprint: str
    shape: HeadShape
    matrices: np.ndarray  # (layers, heads, N, N): mean over strips
    per_strip: np.ndarray | None = None  # (strips, layers, heads, N, N)
    prompts: list[str] = field(default_factory=list)
    source: str = ""
    strips: list[StripIdentity] = field(default_factory=list)
    revision: str | None = None
    model_class: str = ""

    @property
    def n_panels(self) -> int:
        return self.matrices.shape[-1]

    @property
    def strip_ids(self) -> list[str]:
        return [s.comic_id for s in self.strips]

    @property
    def n_strips(self) -> int:
        return len(self.strips) if self.strips else (0 if self.per_strip is None else len(self.per_strip))

    @property
    def scores(self) -> np.ndarray:
        """(layers, heads): mean of the diagonal of each head's matrix."""
        return np.diagonal(self.matrices, axis1=-2, axis2=-1).mean(-1)

    @classmethod
    def from_matrices(cls, per_strip: np.ndarray, *, model: "GazeModel", **fields: Any) -> "Ranking":
        return cls(
            model_id=model.name,
            fingerprint=model.fingerprint(),
            shape=model.shape,
            matrices=per_strip.mean(0),
            per_strip=per_strip,
            revision=model.revision,
            model_class=type(model.model).__name__,
            **fields,
        )

    # head sets --------------------------------------------------------------------------

    def top(self, k: int) -> HeadSet:
        """The top-K gaze heads."""
        return top_heads(self.scores, k, self.shape)

    def random_control(self, k: int, *, seed: int = 0, percentile: float = 5.0, widen: bool = True) -> HeadSet:
        """K random non-gaze heads (outside the top-K, at or below `percentile` of scores;
        see :func:`gazeheads.heads.random_control_heads` for `widen`)."""
        return random_control_heads(self.scores, k, self.shape, seed=seed, percentile=percentile, widen=widen)

    def select(self, spec: HeadSpec) -> HeadSet:
        """The head set `spec` names (top-K gaze, K random non-gaze, or all heads)."""
        return select_heads(spec, self.scores, self.shape)

    def all_heads(self) -> HeadSet:
        """Every head of the model."""
        return HeadSet.all_heads(self.shape)

    def ordered(self) -> list[tuple[int, int, float]]:
        """Every head as (layer, head, score), best first."""
        scores = self.scores
        order = np.argsort(-scores.reshape(-1), kind="stable")
        n = self.shape.n_heads
        return [(int(i // n), int(i % n), float(scores.reshape(-1)[i])) for i in order]

    def check_compatible(self, gm: "GazeModel") -> None:
        """A ModelError if `gm` has another head shape than the model this ranking came from;
        a warning if the shape matches but the weights look different."""
        if gm.shape != self.shape:
            raise ModelError(
                f"The ranking was made on {self.model_id} ({self.shape.n_layers} layers x {self.shape.n_heads} heads, "
                f"{self.shape.n_kv_heads} KV heads) but the model is {gm.name} ({gm.shape.n_layers} x "
                f"{gm.shape.n_heads}, {gm.shape.n_kv_heads} KV heads).",
                "Run `gazeheads discover` on this model, or load the matching model.",
            )
        if self.fingerprint and gm.fingerprint() != self.fingerprint:
            warnings.warn(GazeheadsWarning(
                f"the ranking was discovered on {self.model_id} (weights fingerprint {self.fingerprint}), and "
                f"{gm.name} has the same shape but other weights ({gm.fingerprint()}); its gaze heads may differ"),
                stacklevel=2)

    def overlap_ids(self, comic_ids: Sequence[str], source: str) -> list[str]:
        """The ids among `comic_ids` (of data spec `source`) that this ranking was discovered on."""
        from .data.spec import spec_base

        base = spec_base(source)
        known = {(s.source, s.comic_id) for s in self.strips}
        return [i for i in comic_ids if (base, i) in known]

    def overlap(self, strips: Sequence["Strip"], source: str) -> list[str]:
        """Comic ids of `strips` (read from data spec `source`) that this ranking was discovered on:
        the same source and comic id, or the same panel pixels."""
        digests = {s.digest for s in self.strips if s.digest}
        by_id = set(self.overlap_ids([s.comic_id for s in strips], source))
        return [s.comic_id for s in strips if s.comic_id in by_id or (s.digest and s.digest in digests)]

    # files ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write `path` (.json) and its sibling .npz atomically; returns the JSON path."""
        path = Path(path)
        if path.suffix != ".json":
            path = path.with_suffix(".json")
        arrays = {"matrices": self.matrices.astype(np.float32)}
        if self.per_strip is not None:
            arrays["per_strip"] = self.per_strip.astype(np.float32)
        atomic_write(path.with_suffix(".npz"), lambda tmp: np.savez_compressed(tmp, **arrays))
        meta = {
            "format": FORMAT,
            "model": {
                "id": self.model_id,
                "revision": self.revision,
                "class": self.model_class,
                "fingerprint": self.fingerprint,
                "n_layers": self.shape.n_layers,
                "n_heads": self.shape.n_heads,
                "n_kv_heads": self.shape.n_kv_heads,
            },
            "prompts": self.prompts,
            "data": {"source": self.source, "n_strips": self.n_strips, "n_panels": self.n_panels,
                     "strip_ids": self.strip_ids, "strips": [s.to_dict() for s in self.strips]},
            "arrays": path.with_suffix(".npz").name,
            "scores": np.round(self.scores, 7).tolist(),
            "top": [{"layer": l, "head": h, "score": round(s, 7)} for l, h, s in self.ordered()[:50]],
        }
        write_text(path, json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Ranking":
        """Read a ranking and check it whole: JSON fields, arrays, and that they agree."""
        path = Path(path)
        meta = _read_meta(path)
        model = _field(meta, "model", dict, path)
        shape = HeadShape(*(_int_field(model, key, path) for key in ("n_layers", "n_heads", "n_kv_heads")))
        arrays_name = _field(meta, "arrays", str, path)
        arrays = _read_arrays(path.parent / Path(arrays_name).name, path)
        matrices = arrays["matrices"]
        per_strip = arrays.get("per_strip")
        data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
        expected = (shape.n_layers, shape.n_heads)
        bad = None
        if matrices.ndim != 4 or matrices.shape[:2] != expected or matrices.shape[2] != matrices.shape[3]:
            bad = f"its matrices have shape {matrices.shape}, not ({shape.n_layers}, {shape.n_heads}, N, N)"
        elif per_strip is not None and (per_strip.ndim != 5 or per_strip.shape[1:] != matrices.shape):
            bad = f"its per-strip matrices have shape {per_strip.shape}, not (strips, *{matrices.shape})"
        elif not np.isfinite(matrices).all():
            bad = "its matrices hold NaN or infinite values"
        elif isinstance(meta.get("scores"), list):
            scores = np.asarray(meta["scores"], dtype=np.float64)
            mine = np.diagonal(matrices, axis1=-2, axis2=-1).mean(-1)
            if scores.shape != mine.shape or np.abs(scores - mine).max() > 1e-5:
                bad = "the scores in the JSON do not match the matrices in the .npz (the files come from different runs)"
        if bad is None and data.get("n_panels") not in (None, matrices.shape[-1]):
            bad = f"the JSON says {data.get('n_panels')} panels but the matrices are {matrices.shape[-1]} x {matrices.shape[-1]}"
        strips = _strip_identities(data, per_strip)
        if bad is None and per_strip is not None and strips and len(strips) != len(per_strip):
            bad = f"the JSON lists {len(strips)} strips but the .npz holds {len(per_strip)}"
        if bad:
            raise DataError(f"The ranking {path} is inconsistent: {bad}.",
                            "Keep the .json and .npz that `gazeheads discover` wrote together, or rerun discovery.")
        return cls(
            model_id=str(model.get("id", "")),
            fingerprint=str(model.get("fingerprint", "")),
            shape=shape,
            matrices=matrices.astype(np.float64),
            per_strip=per_strip,
            prompts=list(meta.get("prompts", [])),
            source=str(data.get("source", "")),
            strips=strips,
            revision=model.get("revision"),
            model_class=str(model.get("class", "")),
        )


_FIX = "Give a ranking.json written by `gazeheads discover` (with its .npz beside it)."


def _read_meta(path: Path) -> dict:
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a ranking file.", f"Give the ranking.json inside it. {_FIX}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"Ranking not found: {path}", "Run `gazeheads discover` first, or fix the path.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not a JSON ranking ({type(exc).__name__}: {exc}).", _FIX) from None
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc}.", _FIX) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else f"a JSON {type(meta).__name__}"
        raise DataError(f"{path} is not a gazeheads ranking (format {found!r}).", _FIX)
    return meta


def _field(meta: dict, key: str, kind: type, path: Path):
    value = meta.get(key)
    if not isinstance(value, kind):
        raise DataError(f"The ranking {path} lacks its {key!r} entry.", _FIX)
    return value


def _int_field(model: dict, key: str, path: Path) -> int:
    value = model.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"The ranking {path} has no valid model.{key} ({value!r}).", _FIX)
    return value


def _read_arrays(arrays_path: Path, path: Path) -> dict[str, np.ndarray]:
    if not arrays_path.is_file():
        raise DataError(f"{arrays_path} is missing next to {path.name}.", "Keep the .json and .npz together.")
    try:
        with np.load(arrays_path, allow_pickle=False) as archive:
            arrays = {name: np.asarray(archive[name]) for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, io.UnsupportedOperation) as exc:
        raise DataError(f"{arrays_path} is not a readable .npz ({type(exc).__name__}: {exc}).",
                        "Rerun `gazeheads discover`; the arrays file is damaged.") from None
    if "matrices" not in arrays:
        raise DataError(f"{arrays_path} has no 'matrices' array.", "Rerun `gazeheads discover`.")
    return arrays


def _strip_identities(data: dict, per_strip: np.ndarray | None) -> list[StripIdentity]:
    listed = data.get("strips")
    if isinstance(listed, list) and all(isinstance(s, dict) for s in listed):
        return [StripIdentity(str(s.get("source", "")), str(s.get("comic_id", "")), str(s.get("digest", "")))
                for s in listed]
    ids = data.get("strip_ids") if isinstance(data.get("strip_ids"), list) else []
    source = str(data.get("source", ""))
    return [StripIdentity(source, str(i), "") for i in ids]
