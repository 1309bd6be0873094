"""The head-ranking artifact: gaze scores and per-head panel matrices, saved and loaded.

A ranking is `name.json` (model identity and shape, prompts, data source, scores) with a
sibling `name.npz` holding the per-head N x N matrices (mean and per strip).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .adapters import HeadShape
from .errors import DataError, ModelError
from .heads import HeadSet, random_control_heads, top_heads

if TYPE_CHECKING:
    from .model import GazeModel

FORMAT = "gazeheads.ranking/1"


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
    strip_ids: list[str] = field(default_factory=list)
    revision: str | None = None
    model_class: str = ""

    @property
    def n_panels(self) -> int:
        return self.matrices.shape[-1]

    @property
    def n_strips(self) -> int:
        return len(self.strip_ids) if self.strip_ids else (0 if self.per_strip is None else len(self.per_strip))

    @property
    def scores(self) -> np.ndarray:
        """(layers, heads): mean of the diagonal of each head's matrix."""
        return np.diagonal(self.matrices, axis1=-2, axis2=-1).mean(-1)

    @classmethod
    def from_matrices(cls, per_strip: np.ndarray, *, model: "GazeModel", **fields) -> "Ranking":
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

    def all_heads(self) -> HeadSet:
        return HeadSet.all(self.shape)

    def ordered(self) -> list[tuple[int, int, float]]:
        """Every head as (layer, head, score), best first."""
        scores = self.scores
        order = np.argsort(-scores.reshape(-1), kind="stable")
        n = self.shape.n_heads
        return [(int(i // n), int(i % n), float(scores.reshape(-1)[i])) for i in order]

    def check_compatible(self, gm: "GazeModel") -> None:
        """A ModelError if `gm` has another shape than the model this ranking came from."""
        if gm.shape != self.shape:
            raise ModelError(
                f"The ranking was made on {self.model_id} ({self.shape.n_layers} layers x {self.shape.n_heads} heads, "
                f"{self.shape.n_kv_heads} KV heads) but the model is {gm.name} ({gm.shape.n_layers} x "
                f"{gm.shape.n_heads}, {gm.shape.n_kv_heads} KV heads).",
                "Run `gazeheads discover` on this model, or load the matching model.",
            )

    # files ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write `path` (.json) and its sibling .npz; returns the JSON path."""
        path = Path(path)
        if path.suffix != ".json":
            path = path.with_suffix(".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"matrices": self.matrices.astype(np.float32)}
        if self.per_strip is not None:
            arrays["per_strip"] = self.per_strip.astype(np.float32)
        np.savez_compressed(path.with_suffix(".npz"), **arrays)
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
                     "strip_ids": self.strip_ids},
            "arrays": path.with_suffix(".npz").name,
            "scores": np.round(self.scores, 7).tolist(),
            "top": [{"layer": l, "head": h, "score": round(s, 7)} for l, h, s in self.ordered()[:50]],
        }
        path.write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Ranking":
        path = Path(path)
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"Ranking not found: {path}", "Run `gazeheads discover` first, or fix the path.") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON ({exc}).", "Give a ranking written by gazeheads.") from None
        if meta.get("format") != FORMAT:
            raise DataError(f"{path} is not a gazeheads ranking (format {meta.get('format')!r}).",
                            "Give a ranking written by `gazeheads discover`.")
        arrays_path = path.parent / meta["arrays"]
        if not arrays_path.exists():
            raise DataError(f"{arrays_path} is missing next to {path.name}.", "Keep the .json and .npz together.")
        arrays = np.load(arrays_path)
        m = meta["model"]
        return cls(
            model_id=m["id"],
            fingerprint=m["fingerprint"],
            shape=HeadShape(m["n_layers"], m["n_heads"], m["n_kv_heads"]),
            matrices=arrays["matrices"].astype(np.float64),
            per_strip=arrays["per_strip"] if "per_strip" in arrays else None,
            prompts=meta.get("prompts", []),
            source=meta["data"].get("source", ""),
            strip_ids=meta["data"].get("strip_ids", []),
            revision=m.get("revision"),
            model_class=m.get("class", ""),
        )
