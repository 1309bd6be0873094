"""The demo's memory stays bounded under many concurrent large-but-valid uploads (issue 15).

The demo server runs in its own process on the bundled model; 16 clients upload at once a
PNG of about 80 kB that declares 4898 x 4898 pixels (just inside the 24-megapixel limit, so
every one is decoded: Pillow holds such an image in 96 MB). The test reads the server's peak
resident memory (VmHWM, reset just before the burst) from /proc. The bound is five full-size
images (480 MB): the two being decoded, what the C allocator keeps of them on the two
decoding threads, and the 16 uploads kept (1024 px, 4 MB each). Measured on a 2-core CPU:
two bursts add about 310 MB. Decoding every upload at once would add 16 images (over 1.5 GB);
the control run (16 decoders) shows that the measurement sees it, so this test can fail.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
if not Path("/proc/self/status").exists():
    pytest.skip("peak memory is read from /proc (Linux)", allow_module_level=True)

import httpx  # noqa: E402

MB = 2**20
SIDE = 4898  # 23,990,404 pixels: under the 24,000,000 limit
CLIENTS = 16
BOUND_MB = 480  # what the bursts may add to the server's peak memory: five 96 MB images

SERVER = """
import sys
import numpy as np, uvicorn
import gazeheads as gh
from gazeheads.demo.library import Limits
from gazeheads.demo.server import create_app
from gazeheads.ranking import Ranking

gm = gh.load(device="cpu")
shape = gm.shape
ranking = Ranking.from_matrices(np.random.default_rng(0).random((1, shape.n_layers, shape.n_heads, 6, 6)),
                                model=gm, source="random")
limits = Limits() if sys.argv[1] == "default" else Limits(decoders=int(sys.argv[1]))
app = create_app(gm, ranking, synthetic_seeds=(100000,), limits=limits)
config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
sock = config.bind_socket()
print(sock.getsockname()[1], flush=True)
uvicorn.Server(config).run(sockets=[sock])
"""


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def big_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), (40, 120, 200)).save(buffer, format="PNG")
    data = buffer.getvalue()
    assert len(data) < 200_000  # small on the wire, huge decoded
    return data


def burst_peak(decoders: str, data: bytes, bursts: int = 1) -> dict:
    """Serve the demo in a subprocess, upload `data` from CLIENTS clients at once (`bursts` times);
    return the statuses and memory figures in MB."""
    import gazeheads

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(gazeheads.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen([sys.executable, "-c", SERVER, decoders], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        small = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 30, 30)).save(small, format="PNG")
        with httpx.Client(timeout=120) as http:  # warm up: the first upload and processor pass
            assert http.post(f"{url}/api/uploads", content=small.getvalue(),
                             headers={"content-type": "image/png"}).status_code == 201
        before = _status(server.pid)
        reset = _reset_peak(server.pid)
        statuses: list[int] = []
        for _ in range(bursts):
            gate = threading.Barrier(CLIENTS)

            def upload() -> None:
                with httpx.Client(timeout=300) as http:
                    gate.wait()
                    response = http.post(f"{url}/api/uploads", content=data, headers={"content-type": "image/png"})
                    statuses.append(response.status_code)

            threads = [threading.Thread(target=upload) for _ in range(CLIENTS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        after = _status(server.pid)
        baseline = before["VmRSS"]  # without the reset, VmHWM may include start-up: an over-estimate, never under
        return {"statuses": statuses, "baseline_mb": baseline / MB, "peak_mb": after["VmHWM"] / MB,
                "added_mb": (after["VmHWM"] - baseline) / MB, "rss_after_mb": after["VmRSS"] / MB, "reset": reset}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_sixteen_concurrent_large_uploads_keep_memory_bounded(big_png):
    figures = burst_peak("default", big_png, bursts=2)
    print(f"\n2 bursts of {CLIENTS} concurrent {SIDE}x{SIDE} PNG uploads, 2 decoders: {figures}")
    assert figures["statuses"] == [201] * (2 * CLIENTS), figures["statuses"]
    assert figures["added_mb"] < BOUND_MB, figures


def test_the_measurement_sees_unbounded_decoding(big_png):
    """Control: with as many decoders as clients, every image is in memory at once; the bound fails."""
    figures = burst_peak(str(CLIENTS), big_png)
    print(f"\n{CLIENTS} concurrent uploads, {CLIENTS} decoders (control): {figures}")
    assert figures["statuses"] == [201] * CLIENTS
    assert figures["added_mb"] > BOUND_MB, figures
