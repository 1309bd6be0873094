"""Run a vision tower once per distinct image when batch rows repeat an image.

Evaluation steers one strip to each of its panels as one batch, so its rows carry the same
image. Vision towers encode images (or tiles) independently, so computing each distinct one
once and copying its features to every row that repeats it gives the same result for less.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch


@contextlib.contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    """Set `obj.name = value` as an instance attribute while inside, then restore exactly
    (an instance attribute that was there before, e.g. an accelerate hook, is put back)."""
    had = name in vars(obj)
    saved = vars(obj).get(name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if had:
            setattr(obj, name, saved)
        else:
            delattr(obj, name)


def _per_item_args(n: int, args: tuple, kwargs: dict) -> list[torch.Tensor]:
    return [a for a in (*args, *kwargs.values()) if torch.is_tensor(a) and a.dim() > 0 and a.shape[0] == n]


def _expand(value: Any, inverse: torch.Tensor, n_distinct: int) -> Any:
    """Every tensor whose first dimension counts the distinct items, repeated back to all items."""
    if torch.is_tensor(value):
        return value[inverse] if value.dim() > 0 and value.shape[0] == n_distinct else value
    if isinstance(value, dict):  # ModelOutput included
        for key in list(value.keys()):
            value[key] = _expand(value[key], inverse, n_distinct)
        return value
    if isinstance(value, (tuple, list)):
        return type(value)(_expand(v, inverse, n_distinct) for v in value)
    return value


def distinct_items(forward: Callable) -> Callable:
    """Wrap a vision tower's forward(pixel_values, ...) whose outputs are per item (dim 0).

    Items (images or tiles) whose pixels and per-item arguments (e.g. a patch mask) are equal
    are computed once; every other argument is passed unchanged.
    """

    def wrapper(pixel_values: torch.Tensor, *args, **kwargs):
        n = pixel_values.shape[0]
        per_item = [pixel_values, *_per_item_args(n, args, kwargs)]
        key = torch.cat([t.reshape(n, -1).to(torch.float32) for t in per_item], dim=1)
        unique, inverse = torch.unique(key, dim=0, return_inverse=True)
        if unique.shape[0] == n:
            return forward(pixel_values, *args, **kwargs)
        order = torch.arange(n, device=inverse.device)
        first = torch.full((unique.shape[0],), n, device=inverse.device).scatter_reduce(0, inverse, order, "amin")

        def pick(a):
            return a[first] if torch.is_tensor(a) and a.dim() > 0 and a.shape[0] == n else a

        out = forward(pixel_values[first], *[pick(a) for a in args], **{k: pick(v) for k, v in kwargs.items()})
        return _expand(out, inverse, unique.shape[0])

    return wrapper
