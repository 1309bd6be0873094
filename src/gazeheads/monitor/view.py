"""Which heads the monitor watches: its own choice of gaze heads, and a wide view.

The monitor never learns which heads (if any) are being steered. It picks the gaze heads from
a ranking of its own (the top K by gaze score) and watches a wide set of heads (by default
every head of the model) for the signature a logit bias leaves on any head's attention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch

from ..errors import GazeheadsError
from ..heads import HeadSet
from ..ranking import Ranking
from ..specs import default_k


@dataclass(frozen=True)
class MonitorView:
    """The heads whose attention the monitor captures: `gaze` (its gaze heads) and `wide` (a wider view)."""

    gaze: HeadSet
    wide: HeadSet

    def __post_init__(self) -> None:
        if self.gaze.shape != self.wide.shape:
            raise GazeheadsError("The monitor's gaze heads and wide view come from models of different shapes.",
                                 "Build both head sets from one ranking or one model.")

    @classmethod
    def from_ranking(cls, ranking: Ranking, k: int | None = None, wide: HeadSet | None = None) -> "MonitorView":
        """The top-`k` gaze heads of `ranking` (default: 8.7% of the heads) and `wide` (default: every head)."""
        k = default_k(ranking.shape.total) if k is None else k
        return cls(ranking.top(k), wide if wide is not None else ranking.all_heads())

    @property
    def shape(self):
        return self.gaze.shape

    def layers(self) -> list[int]:
        """Every layer holding a watched head."""
        return sorted(set(self.gaze.layers()) | set(self.wide.layers()))

    def heads(self) -> list[tuple[int, int]]:
        """Every watched head, ordered by layer then head (the order of the recorder's columns)."""
        return sorted(set(self.gaze.heads) | set(self.wide.heads))

    def columns(self) -> dict[int, torch.Tensor]:
        """Per layer, the query-head indices captured there (the union of both sets)."""
        per_layer: dict[int, list[int]] = {}
        for layer, head in self.heads():
            per_layer.setdefault(layer, []).append(head)
        return {layer: torch.tensor(heads, dtype=torch.long) for layer, heads in per_layer.items()}

    def masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Boolean masks over :meth:`heads`: which are gaze heads, which are in the wide view."""
        heads = self.heads()
        gaze, wide = set(self.gaze.heads), set(self.wide.heads)
        return (torch.tensor([h in gaze for h in heads]), torch.tensor([h in wide for h in heads]))

    def to_dict(self) -> dict[str, Any]:
        return {"gaze": [list(h) for h in self.gaze.heads], "wide": [list(h) for h in self.wide.heads],
                "shape": _shape_list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], shape) -> "MonitorView":
        """A view saved with :meth:`to_dict`, for a model of head shape `shape` (checked)."""
        if list(data.get("shape", [])) != _shape_list(shape):
            raise GazeheadsError(f"A monitor view saved for a model of shape {data.get('shape')} (layers, heads, "
                                 f"KV heads) and a model of shape {_shape_list(shape)}.",
                                 "Calibrate the monitor on this model (`gazeheads eval monitor`).")
        return cls(HeadSet.of(data["gaze"], shape, "monitor gaze heads"),
                   HeadSet.of(data["wide"], shape, "monitor wide view"))


def _shape_list(shape) -> list[int]:
    return [shape.n_layers, shape.n_heads, shape.n_kv_heads]
