"""Shared fixtures: tiny random Qwen-VL models (built in code) and strips drawn in code."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

import gazeheads as gh
from gazeheads.data import Strip, stitch

from factories import make_qwen

FAMILIES = ["qwen3_vl", "qwen2_5_vl", "qwen2_vl"]


def draw_strip(widths=(64, 96, 64, 32, 64, 128), height=64, seed=0, gap=6) -> Strip:
    """A strip of random-noise panels of the given widths (unequal on purpose)."""
    rng = np.random.default_rng(seed)
    panels = [Image.fromarray(rng.integers(0, 255, (height, w, 3), dtype=np.uint8)) for w in widths]
    return stitch(panels, height=height, gap=gap, comic_id=f"noise-{seed}")


@pytest.fixture(scope="session")
def strip() -> Strip:
    return draw_strip()


_CACHE: dict = {}


def model_pair(family: str, kv_heads: int = 2, heads: int = 4, layers: int = 2):
    """(GazeModel, eager twin with identical weights) for one tiny configuration."""
    key = (family, kv_heads, heads, layers)
    if key not in _CACHE:
        model, processor = make_qwen(family, layers=layers, heads=heads, kv_heads=kv_heads, seed=1)
        eager = copy.deepcopy(model)
        eager.set_attn_implementation("eager")
        _CACHE[key] = (gh.GazeModel(model, processor), eager)
    return _CACHE[key]


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
