"""Sets of attention heads: top-K gaze heads, random non-gaze controls, all heads."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

from .adapters.base import HeadShape
from .errors import GazeheadsWarning, HeadSelectionError, ModelError
from .specs import HeadSpec, default_k


@dataclass(frozen=True)
class HeadSet:
    """A named set of (layer, head) pairs for a model of a given shape."""

    heads: tuple[tuple[int, int], ...]
    shape: HeadShape
    name: str = "heads"

    def __post_init__(self) -> None:
        if not self.heads:
            raise HeadSelectionError("An empty head set.", "Give at least one (layer, head) pair.")
        if len(set(self.heads)) != len(self.heads):
            raise HeadSelectionError("A head set names some head twice.", "Give each (layer, head) once.")
        for layer, head in self.heads:
            if not (0 <= layer < self.shape.n_layers and 0 <= head < self.shape.n_heads):
                raise HeadSelectionError(
                    f"Head ({layer}, {head}) does not exist in a model with {self.shape.n_layers} layers "
                    f"x {self.shape.n_heads} heads.",
                    "Pick heads from a ranking of this model.",
                )

    def __len__(self) -> int:
        return len(self.heads)

    def __iter__(self):
        return iter(self.heads)

    def layers(self) -> list[int]:
        return sorted({layer for layer, _ in self.heads})

    def head_indices(self) -> dict[int, torch.Tensor]:
        """Per layer, the sorted long tensor of the set's query-head indices in that layer."""
        per_layer: dict[int, set[int]] = {}
        for layer, head in self.heads:
            per_layer.setdefault(layer, set()).add(head)
        return {layer: torch.tensor(sorted(heads), dtype=torch.long) for layer, heads in sorted(per_layer.items())}

    def check_compatible(self, shape: HeadShape) -> None:
        """A ModelError unless the set was made for a model of this head shape."""
        if shape != self.shape:
            raise ModelError(
                f"This head set was made for a model of shape {self.shape}, not {shape}.",
                "Use a ranking discovered on this model.",
            )

    @classmethod
    def of(cls, pairs: Iterable[tuple[int, int]], shape: HeadShape, name: str = "heads") -> "HeadSet":
        return cls(tuple((int(l), int(h)) for l, h in pairs), shape, name)

    @classmethod
    def all_heads(cls, shape: HeadShape) -> "HeadSet":
        """Every head of the model (the 'all heads' control)."""
        return cls.of(((l, h) for l in range(shape.n_layers) for h in range(shape.n_heads)), shape, "all heads")


__all__ = ["HeadSet", "default_k", "check_k", "top_heads", "random_control_heads", "select_heads"]


def check_k(k: int, shape: HeadShape) -> None:
    """A HeadSelectionError unless 1 <= K <= the model's head count."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or k > shape.total:
        raise HeadSelectionError(
            f"K={k} heads asked of a model with {shape.total} heads ({shape.n_layers} layers x {shape.n_heads}).",
            f"Choose K between 1 and {shape.total}.",
        )


def top_heads(scores: np.ndarray, k: int, shape: HeadShape) -> HeadSet:
    """The K heads with the highest score (ties broken by layer, then head)."""
    check_k(k, shape)
    flat = scores.reshape(-1)
    order = np.argsort(-flat, kind="stable")[:k]
    return HeadSet.of(((i // shape.n_heads, i % shape.n_heads) for i in order), shape, f"gaze top-{k}")


def random_control_heads(
    scores: np.ndarray, k: int, shape: HeadShape, *, seed: int = 0, percentile: float = 5.0, widen: bool = True
) -> HeadSet:
    """K heads drawn (seeded) outside the top-K, among heads scoring at or below `percentile`.

    At the paper's own setting the pool is too small (the 5th percentile of 1,152 heads holds
    58 heads, fewer than K = 100). With `widen` (default) the threshold is then raised to the
    lowest score percentile that holds K heads outside the top-K, with a warning, and the head
    set's name records the percentile used; `widen=False` raises instead.
    """
    check_k(k, shape)
    flat = scores.reshape(-1)
    top = set(np.argsort(-flat, kind="stable")[:k].tolist())
    outside = np.array(sorted(set(range(flat.size)) - top), dtype=np.int64)
    threshold = float(np.percentile(flat, percentile))
    pool = outside[flat[outside] <= threshold]
    used = percentile
    if len(pool) < k:
        if not widen or len(outside) < k:
            raise HeadSelectionError(
                f"Only {len(pool)} heads score at or below the {percentile:g}th percentile outside the top-{k}, "
                f"fewer than the K={k} random control heads asked for.",
                "Lower K, raise the control percentile (e.g. percentile=50 for small models), or allow widening.",
            )
        asked = len(pool)
        threshold = float(np.sort(flat[outside])[k - 1])
        pool = outside[flat[outside] <= threshold]
        used = 100.0 * float(np.mean(flat <= threshold))
        warnings.warn(GazeheadsWarning(
            f"only {asked} heads outside the top-{k} score at or below score percentile {percentile:g}; random "
            f"control heads are drawn from the {len(pool)} at or below percentile {used:.1f} instead"), stacklevel=2)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(pool, size=k, replace=False).tolist())
    name = f"random non-gaze {k} (score percentile <= {used:.3g})"
    return HeadSet.of(((i // shape.n_heads, i % shape.n_heads) for i in chosen), shape, name)


def select_heads(spec: HeadSpec, scores: np.ndarray | None, shape: HeadShape) -> HeadSet:
    """The head set a HeadSpec names, from a model's gaze scores (None is enough for kind "all")."""
    if spec.kind == "all":
        return HeadSet.all_heads(shape)
    if scores is None:
        raise HeadSelectionError(f"{spec.kind} heads need a ranking of the model's heads.",
                                 "Run `gazeheads discover` and pass its ranking.json.")
    k = spec.resolve_k(shape.total)
    if spec.kind == "gaze":
        return top_heads(scores, k, shape)
    return random_control_heads(scores, k, shape, seed=spec.seed, percentile=spec.percentile)
