"""Shared fixtures: tiny random Qwen-VL models (built in code) and strips drawn in code."""

from __future__ import annotations

import contextlib
import copy
import socket
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

import gazeheads as gh
from gazeheads.data import Strip, stitch
from gazeheads.layout import StripLayout

from factories import make_qwen

FAMILIES = ["qwen3_vl", "qwen2_5_vl", "qwen2_vl"]


def draw_strip(widths=(64, 96, 64, 32, 64, 128), height=64, seed=0, gap=6) -> Strip:
    """A strip of random-noise panels of the given widths (unequal on purpose)."""
    rng = np.random.default_rng(seed)
    panels = [Image.fromarray(rng.integers(0, 255, (height, w, 3), dtype=np.uint8)) for w in widths]
    return stitch(panels, StripLayout(height=height, gap=gap, n_panels=len(widths)), comic_id=f"noise-{seed}")


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


@contextlib.contextmanager
def live_server(app, timeout: float = 60.0):
    """Serve an ASGI app with uvicorn on a free loopback port in a thread; yields the base URL."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


SLOW_MODULES = {"test_demo_e2e", "test_demo_memory", "test_demo_access", "test_replicas", "test_bundled_model",
                "test_one_way", "test_evaluation", "test_docs", "test_benchmarks"}


def pytest_collection_modifyitems(config, items):
    """Mark the slow suites (`pytest -m "not slow"` is the quick run; CI runs everything)."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        if module == "test_demo_e2e":
            item.add_marker(pytest.mark.browser)
