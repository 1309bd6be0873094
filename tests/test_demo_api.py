"""The demo's HTTP API, endpoint by endpoint: answers, limits and refusals.

A tiny random Qwen3-VL (built in code) stands in for the model: these tests check the web
layer and the live-steering plumbing, not what the model says.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from conftest import live_server
from PIL import Image

pytest.importorskip("fastapi", reason="the demo needs fastapi (pip install -e .)")
pytest.importorskip("uvicorn", reason="the demo needs uvicorn (pip install -e .)")

from fastapi.testclient import TestClient  # noqa: E402

import gazeheads as gh  # noqa: E402
from gazeheads.demo.library import Limits  # noqa: E402
from gazeheads.demo.server import create_app  # noqa: E402
from gazeheads.ranking import Ranking  # noqa: E402

from factories import make_qwen  # noqa: E402

BASE = "http://127.0.0.1"
STRIP = "synth-100000"
N_HEADS = 16  # 2 layers x 8 heads: default K = 1 (about 8.7%, as everywhere)


@pytest.fixture(scope="module")
def gm():
    model, processor = make_qwen("qwen3_vl", layers=2, heads=8, kv_heads=4, seed=3)
    from gazeheads.layout import ModelLayout, StripLayout

    return gh.GazeModel(model, processor, name="tiny-random",
                        layout=ModelLayout(strip=StripLayout(height=64, gap=0), synthetic=True))


@pytest.fixture(scope="module")
def ranking(gm):
    rng = np.random.default_rng(0)
    per_strip = rng.random((2, 2, 8, 6, 6))
    return Ranking.from_matrices(per_strip, model=gm, source="random")


@pytest.fixture(scope="module")
def comics(tmp_path_factory):
    from gazeheads.synth import write_synthetic_comics

    root = tmp_path_factory.mktemp("comics")
    write_synthetic_comics(root / "library", 2, seed=7)
    (root / "secret.txt").write_text("not for visitors")
    return root / "library"


def make_client(gm, ranking, **kwargs) -> TestClient:
    kwargs.setdefault("synthetic_seeds", (100_000, 100_001))
    return TestClient(create_app(gm, ranking, **kwargs), base_url=BASE)


@pytest.fixture(scope="module")
def client(gm, ranking, comics):
    from gazeheads.data import resolve_comics

    with make_client(gm, ranking, comics=resolve_comics(comics, gm.layout.strip), max_new_tokens=12, default_new_tokens=4,
                     limits=Limits(max_upload_bytes=200_000, max_pixels=300_000, max_side=256)) as c:
        yield c


def events_of(response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]


def generate(client, **body) -> tuple[int, list[dict]]:
    body.setdefault("image_id", STRIP)
    with client.stream("POST", "/api/generate", json=body) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code, [response.json()]
        assert response.headers["content-type"].startswith("text/event-stream")
        return 200, events_of(response)


def png_bytes(size=(96, 64), colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header announcing a huge image, with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def wait_until(predicate, timeout=30.0, every=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


# page and static files --------------------------------------------------------------------


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<canvas id="overlay"' in page.text
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert client.get("/static/nothing.js").status_code == 404


@pytest.mark.parametrize("path", ["/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2fserver.py",
                                  "/static/../../ranking.py", "/api/images/..%2f..%2fsecret.txt/pixels",
                                  "/api/images/comic-1%2f..%2fsecret.txt"])
def test_no_path_leaves_the_configured_folders(client, path):
    response = client.get(path)
    assert response.status_code in (404, 422)
    assert "not for visitors" not in response.text and "def create_app" not in response.text


def test_only_loopback_host_names_are_served(gm, ranking):
    with make_client(gm, ranking) as c:
        assert c.get("/api/info").status_code == 200
        assert c.get("/api/info", headers={"host": "localhost:8765"}).status_code == 200
        assert c.get("/api/info", headers={"host": "evil.example:8765"}).status_code == 400  # DNS rebinding


# info and images ------------------------------------------------------------------------------


def test_info_gives_model_heads_and_defaults(client):
    info = client.get("/api/info").json()
    assert info["total_heads"] == N_HEADS
    assert info["default_k"] == 1  # about 8.7% of the heads (heads.default_k), as in the CLI
    assert info["default_phase"] == "decode"
    assert set(info["phases"]) == {"decode", "prefill+decode", "last-prompt+decode"}
    assert info["question"] == gh.prompts.NARRATION_QUESTION
    assert info["max_new_tokens"] == 12 and info["default_new_tokens"] == 4
    assert info["limits"] == {"max_upload_bytes": 200_000, "max_pixels": 300_000, "max_side": 256}
    assert client.get("/api/info").headers["cache-control"] == "no-store"
    schema = client.get("/api/openapi.json").json()
    assert {"/api/generate", "/api/uploads", "/api/generations/{generation_id}/target"} <= set(schema["paths"])


def test_images_lists_synthetic_strips_and_comics(client):
    images = client.get("/api/images").json()["images"]
    ids = [image["id"] for image in images]
    assert ids[:2] == ["synth-100000", "synth-100001"]
    comics = [image for image in images if image["source"] == "comics"]
    assert [c["id"] for c in comics] == ["comic-1", "comic-2"]
    assert [c["name"] for c in comics] == ["synth_000007", "synth_000008"]


def test_image_meta_has_token_cells_regions_and_captions(client):
    from gazeheads.synth import make_strip

    meta = client.get(f"/api/images/{STRIP}").json()
    strip = make_strip(100_000)
    assert (meta["width"], meta["height"]) == strip.image.size == (384, 64)
    assert (meta["rows"], meta["cols"]) == (2, 12)
    assert len(meta["cells"]) == 24 and meta["cells"][0] == [0.0, 0.0, 32.0, 32.0]
    assert [r["name"] for r in meta["regions"]] == [f"panel {k}" for k in range(1, 7)]
    assert meta["regions"][2]["box"] == [128.0, 0.0, 192.0, 64.0]
    assert meta["captions"] == strip.captions and meta["panels"] == 6


def test_comic_meta_and_pixels_come_from_the_folder(client, comics):
    meta = client.get("/api/images/comic-1").json()
    assert meta["captions"] == json.loads((comics / "synth_000007" / "captions.json").read_text())
    pixels = client.get("/api/images/comic-1/pixels")
    assert pixels.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(pixels.content)).size == (meta["width"], meta["height"])


def test_pixels_are_the_strip_as_png(client):
    from gazeheads.synth import make_strip

    response = client.get(f"/api/images/{STRIP}/pixels")
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG"
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(make_strip(100_000).image))


@pytest.mark.parametrize("image_id,status", [("synth-999", 404), ("comic-9", 404), ("upload-0123abcd", 404),
                                             ("nothing", 422), ("synth-1.png", 422), ("SYNTH-100000", 422)])
def test_unknown_and_malformed_image_ids(client, image_id, status):
    assert client.get(f"/api/images/{image_id}").status_code == status
    assert client.get(f"/api/images/{image_id}/pixels").status_code == status


# uploads ----------------------------------------------------------------------------------------


def test_upload_then_pick_and_steer_with_a_box(client):
    response = client.post("/api/uploads", content=png_bytes((400, 64)),
                           headers={"content-type": "image/png", "x-filename": "mine.png"})
    assert response.status_code == 201
    meta = response.json()
    assert meta["id"].startswith("upload-") and meta["source"] == "upload" and meta["name"] == "mine.png"
    assert (meta["width"], meta["height"]) == (256, 41)  # shrunk to the 256 px max side
    assert meta["panels"] == 0 and len(meta["regions"]) >= 1
    assert meta["id"] in [image["id"] for image in client.get("/api/images").json()["images"]]
    status, events = generate(client, image_id=meta["id"], target={"kind": "box", "x0": 0, "y0": 0, "x1": 100, "y1": 41})
    assert status == 200 and events[-1]["type"] == "done"


@pytest.mark.parametrize("body,ctype,status,message", [
    (b"x" * 200_001, "image/png", 413, "limit"),                        # over the byte limit
    (png_bytes((600, 600)), "image/png", 413, "600x600"),               # over the pixel limit
    (bomb_png(100_000, 100_000), "image/png", 413, "decompression"),    # a bomb: header only, never decoded
    (b"GIF89a not really", "image/gif", 415, "not a PNG"),
    (b"%PDF-1.4", "image/png", 415, "not a PNG"),
    (png_bytes()[:60], "image/png", 400, "cannot be decoded"),           # truncated
    (b"", "image/png", 400, "empty"),
    (png_bytes(), "text/plain", 415, "Content-Type"),                   # a cross-site form could send this
    (png_bytes(), "", 415, "Content-Type"),
])
def test_upload_limits_and_refusals(client, body, ctype, status, message):
    headers = {"content-type": ctype} if ctype else {}
    response = client.post("/api/uploads", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert message.lower() in response.json()["detail"].lower()


def test_upload_without_content_length_is_capped_while_streaming(client):
    def chunks():
        for _ in range(30):
            yield b"y" * 10_000  # 300 kB in chunks, no Content-Length

    response = client.post("/api/uploads", content=chunks(), headers={"content-type": "image/png"})
    assert response.status_code == 413


def test_uploads_are_kept_in_memory_only_and_bounded(gm, ranking, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with make_client(gm, ranking, limits=Limits(max_uploads=2)) as c:
        ids = []
        for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255)):
            r = c.post("/api/uploads", content=png_bytes(colour=colour), headers={"content-type": "image/png"})
            ids.append(r.json()["id"])
        listed = [image["id"] for image in c.get("/api/images").json()["images"]]
        assert ids[0] not in listed and ids[1] in listed and ids[2] in listed  # the oldest was dropped
        assert c.get(f"/api/images/{ids[0]}").status_code == 404
    assert list(tmp_path.iterdir()) == []


def test_uploads_are_decoded_on_a_few_threads_and_429_beyond_the_waiting_room():
    from gazeheads.demo.library import Library, UploadError

    library = Library([], Limits(decoders=1, max_waiting=1))
    try:
        release = threading.Event()
        first = library.decoding(release.wait, 30)  # holds the only decoder
        second = library.decoding(lambda: threading.current_thread().name)  # waits
        with pytest.raises(UploadError) as refused:
            library.decoding(lambda: None)
        assert refused.value.status == 429 and "1 at a time" in refused.value.problem
        release.set()
        assert first.result(timeout=30) is True
        assert second.result(timeout=30).startswith("gazeheads-decode")
        assert library.decoding(lambda: "room again").result(timeout=30) == "room again"
    finally:
        library.close()


def test_large_uploads_are_shrunk_while_decoding_and_turned_upright():
    from gazeheads.demo.library import decode_upload

    limits = Limits(max_side=256)
    for fmt, mode in (("JPEG", "RGB"), ("PNG", "RGBA"), ("PNG", "P"), ("WEBP", "RGB"), ("BMP", "L")):
        buffer = io.BytesIO()
        Image.new(mode, (2000, 1000), 90).save(buffer, format=fmt)
        image = decode_upload(buffer.getvalue(), limits)
        assert image.mode == "RGB" and image.size == (256, 128), (fmt, mode, image.size)
    # a phone photo stored sideways (EXIF orientation 6: rotate 90 degrees clockwise to show)
    photo = Image.new("RGB", (400, 200), (0, 0, 0))
    photo.paste((255, 0, 0), (0, 0, 40, 200))  # the stored left edge is red
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", exif=exif, quality=95)
    upright = decode_upload(buffer.getvalue(), limits)
    assert upright.size == (128, 256)
    red, green, blue = upright.getpixel((64, 5))
    assert red > 200 and green < 60 and blue < 60  # the red edge is now at the top


# generation ---------------------------------------------------------------------------------------


def test_steered_generation_streams_tokens_with_tint_and_heat(client):
    status, events = generate(client, target={"kind": "panel", "index": 3}, max_new_tokens=4, k=3)
    assert status == 200
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["queued", "start"] and kinds[-1] == "done"
    start = events[1]
    assert start["steer"] is True and start["k"] == 3 and start["phase"] == "decode"
    assert start["image_tokens"] == 24 and start["regions"] == [f"panel {k}" for k in range(1, 7)]
    tokens = [e for e in events if e["type"] == "token"]
    assert [t["step"] for t in tokens] == list(range(len(tokens))) and 1 <= len(tokens) <= 4
    assert len(tokens) >= 2
    for t in tokens[1:]:  # decode only (the published demo): the first generated token is not steered
        assert len(t["heat"]) == 24 and max(t["heat"]) == 1.0
        assert t["focus"] == 2  # the steered heads look at panel 3, so every later token is tinted panel 3
        assert t["shares"][2] > 0.999
        assert t["target_seq"] == 0
    assert events[-1]["text"] == tokens[-1]["full"]
    assert "".join(t["text"] for t in tokens).strip() == events[-1]["text"]


def test_spotlight_boosts_the_cells_inside_the_circle(client):
    # a circle around the centre of token cell (row 1, col 4): only that cell's centre is inside
    status, events = generate(client, target={"kind": "circle", "x": 144, "y": 48, "r": 10}, max_new_tokens=3)
    assert status == 200
    for t in [e for e in events if e["type"] == "token"][1:]:
        assert t["heat"].index(1.0) == 12 + 4
        assert sum(t["heat"]) == pytest.approx(1.0, abs=1e-3)


def test_tiny_spotlight_falls_back_to_the_nearest_cell(client):
    status, events = generate(client, target={"kind": "circle", "x": 200, "y": 5, "r": 1}, max_new_tokens=2)
    token = [e for e in events if e["type"] == "token"][1]
    assert token["heat"].index(1.0) == 6  # cell (row 0, col 6) holds the point (200, 5)


def test_baseline_generation_without_steering(client):
    status, events = generate(client, steer=False, max_new_tokens=3, phase="prefill+decode")
    assert status == 200
    assert events[1]["steer"] is False and events[-1]["type"] == "done"
    status, steered = generate(client, target={"kind": "panel", "index": 5}, max_new_tokens=3, k=16,
                               phase="prefill+decode")
    baseline_focus = [e["focus"] for e in events if e["type"] == "token"]
    steered_focus = [e["focus"] for e in steered if e["type"] == "token"]
    assert set(steered_focus) == {4} and baseline_focus != steered_focus


def test_question_and_phase_are_used(client):
    status, events = generate(client, target={"kind": "panel", "index": 1}, question="What is in this picture?",
                              phase="prefill+decode", max_new_tokens=1)
    assert events[1]["question"] == "What is in this picture?" and events[1]["phase"] == "prefill+decode"


@pytest.mark.parametrize("body,where", [
    ({"target": {"kind": "panel", "index": 3}, "extra": 1}, "extra"),
    ({"target": {"kind": "panel", "index": 3}, "k": "3"}, "k"),                    # strict: no strings for ints
    ({"target": {"kind": "panel", "index": 3}, "k": 0}, "k"),
    ({"target": {"kind": "panel", "index": 3}, "k": 2.5}, "k"),
    ({"target": {"kind": "panel", "index": 0}}, "index"),
    ({"target": {"kind": "panel", "index": 3}, "phase": "sometimes"}, "phase"),
    ({"target": {"kind": "panel", "index": 3}, "mode": "louder"}, "mode"),
    ({"target": {"kind": "panel", "index": 3}, "max_new_tokens": 0}, "max_new_tokens"),
    ({"target": {"kind": "panel", "index": 3}, "token_delay_ms": 5000}, "token_delay_ms"),
    ({"target": {"kind": "panel", "index": 3}, "question": ""}, "question"),
    ({"target": {"kind": "panel", "index": 3}, "question": "x" * 501}, "question"),
    ({"target": {"kind": "star", "x": 1}}, "target"),
    ({"target": {"kind": "circle", "x": 10, "y": 10}}, "r"),
    ({"target": {"kind": "circle", "x": 10, "y": 10, "r": -1}}, "r"),
    ({"target": {"kind": "box", "x0": 0, "y0": 0, "x1": 10}}, "y1"),
    ({"image_id": "../../etc/passwd", "target": {"kind": "panel", "index": 3}}, "image_id"),
    ({"image_id": 5, "target": {"kind": "panel", "index": 3}}, "image_id"),
    ({"steer": "yes", "target": {"kind": "panel", "index": 3}}, "steer"),
])
def test_generate_rejects_malformed_requests(client, body, where):
    status, (error,) = generate(client, **body)
    assert status == 422
    assert any(where in [str(part) for part in item["loc"]] for item in error["detail"]), error


def test_a_refused_request_is_explained_in_words(client):
    status, (error,) = generate(client, target={"kind": "panel", "index": 3}, k=0)
    assert status == 422
    assert error["message"].startswith("The request was not accepted (k: Input should be greater than")


@pytest.mark.parametrize("body,message", [
    ({"target": {"kind": "panel", "index": 3}, "k": 17}, "16 heads"),
    ({"target": {"kind": "panel", "index": 3}, "max_new_tokens": 13}, "limit of 12"),
    ({"target": {"kind": "panel", "index": 7}}, "6 panels"),
    ({}, "needs a target"),
    ({"target": {"kind": "circle", "x": 500, "y": 10, "r": 5}}, "outside"),
    ({"target": {"kind": "box", "x0": 10, "y0": 10, "x1": 5, "y1": 20}}, "no area"),
    ({"target": {"kind": "box", "x0": 400, "y0": 0, "x1": 500, "y1": 20}}, "outside"),
])
def test_generate_rejects_impossible_requests(client, body, message):
    status, (error,) = generate(client, **body)
    assert status == 422 and message in error["detail"]


def test_nan_and_infinity_are_rejected(client):
    body = b'{"image_id": "synth-100000", "target": {"kind": "circle", "x": NaN, "y": 1, "r": 5}}'
    response = client.post("/api/generate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    body = b'{"image_id": "synth-100000", "target": {"kind": "circle", "x": 1, "y": 1, "r": Infinity}}'
    assert client.post("/api/generate", content=body, headers={"content-type": "application/json"}).status_code == 422


def test_json_endpoints_need_json_and_small_bodies(client):
    body = json.dumps({"image_id": STRIP, "target": {"kind": "panel", "index": 1}})
    form = client.post("/api/generate", content=body, headers={"content-type": "text/plain"})
    assert form.status_code == 415  # what a cross-site page could send without a preflight
    assert client.post("/api/generate", content=body,
                       headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 415
    big = json.dumps({"image_id": STRIP, "question": "x" * 20_000})
    assert client.post("/api/generate", content=big, headers={"content-type": "application/json"}).status_code == 413
    assert client.post("/api/generate", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    assert client.get("/api/generate").status_code == 405


# live re-steering, cancel, queue: a real server ----------------------------------------------------


class EventReader:
    """Reads SSE events from a streamed httpx response, one at a time."""

    def __init__(self, response) -> None:
        self.lines = response.iter_lines()

    def next(self) -> dict:
        for line in self.lines:
            if line.startswith("data: "):
                return json.loads(line[6:])
        raise AssertionError("the stream ended")

    def until(self, kind: str) -> list[dict]:
        seen = []
        while True:
            event = self.next()
            seen.append(event)
            if event["type"] == kind:
                return seen


@pytest.fixture(scope="module")
def server(gm, ranking):
    pytest.importorskip("httpx")
    app = create_app(gm, ranking, synthetic_seeds=(100_000,), queue_size=1,
                     max_new_tokens=40)
    with live_server(app) as url:
        yield url, app


def _status(http, url):
    return http.get(f"{url}/api/status").json()


def test_moving_the_target_mid_generation_retargets_the_next_tokens(server):
    import httpx

    url, _ = server
    body = {"image_id": STRIP, "target": {"kind": "panel", "index": 3}, "max_new_tokens": 30, "k": 4,
            "token_delay_ms": 50}
    with httpx.Client(timeout=30) as http, http.stream("POST", f"{url}/api/generate", json=body) as response:
        assert response.status_code == 200
        events = EventReader(response)
        generation_id = events.until("start")[0]["generation_id"]
        first = [events.until("token")[-1] for _ in range(2)]
        ack = http.post(f"{url}/api/generations/{generation_id}/target",
                        json={"target": {"kind": "circle", "x": 288, "y": 32, "r": 40}})  # panel 5
        assert ack.status_code == 200
        from_step, seq = ack.json()["from_step"], ack.json()["seq"]
        assert seq == 1 and from_step >= 2
        rest = [e for e in events.until("done") if e["type"] == "token"]
    tokens = first + rest
    assert all(t["focus"] == 2 and t["target_seq"] == 0 for t in tokens if 1 <= t["step"] < from_step)  # 0: unsteered
    after = [t for t in tokens if t["step"] >= from_step]
    assert after, "the generation ended before the new target applied"
    assert all(t["focus"] == 4 and t["target_seq"] == 1 for t in after)


def test_retarget_refusals(server):
    import httpx

    url, _ = server
    with httpx.Client(timeout=30) as http:
        target = {"target": {"kind": "panel", "index": 2}}
        assert http.post(f"{url}/api/generations/0123456789abcdef/target", json=target).status_code == 404
        assert http.post(f"{url}/api/generations/nope/target", json=target).status_code == 422
        body = {"image_id": STRIP, "steer": False, "max_new_tokens": 30, "token_delay_ms": 50}
        with http.stream("POST", f"{url}/api/generate", json=body) as response:
            events = EventReader(response)
            generation_id = events.until("start")[0]["generation_id"]
            assert http.post(f"{url}/api/generations/{generation_id}/target", json=target).status_code == 409
            http.post(f"{url}/api/generations/{generation_id}/cancel", json={})
            events.until("done")
        body = {"image_id": STRIP, "target": {"kind": "panel", "index": 1}, "max_new_tokens": 30, "token_delay_ms": 50}
        with http.stream("POST", f"{url}/api/generate", json=body) as response:
            events = EventReader(response)
            generation_id = events.until("start")[0]["generation_id"]
            path = f"{url}/api/generations/{generation_id}/target"
            assert http.post(path, json={"target": {"kind": "panel", "index": 9}}).status_code == 422
            assert http.post(path, json={"target": {"kind": "circle", "x": -50, "y": 0, "r": 3}}).status_code == 422
            assert http.post(path, json={"target": {"kind": "panel", "index": 2}, "more": 1}).status_code == 422
            assert http.post(path, content=b"{}", headers={"content-type": "text/plain"}).status_code == 415
            cancelled = http.post(f"{url}/api/generations/{generation_id}/cancel", json={})
            assert cancelled.status_code == 202
            done = events.until("done")[-1]
            assert done["reason"] == "cancelled" and done["steps"] < 30


def test_generation_stops_when_the_client_goes_away(server):
    import httpx

    url, _ = server
    body = {"image_id": STRIP, "target": {"kind": "panel", "index": 2}, "max_new_tokens": 40, "token_delay_ms": 100}
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", f"{url}/api/generate", json=body) as response:
            events = EventReader(response)
            generation_id = events.until("start")[0]["generation_id"]
            events.until("token")
        # the connection is closed: the server notices at its next write and cancels
        record = wait_until(lambda: next((r for r in _status(http, url)["recent"] if r["id"] == generation_id), None),
                            timeout=20)
        assert record["reason"] == "cancelled" and record["steps"] < 40
        assert _status(http, url)["running"] is None


def test_one_generation_at_a_time_and_a_bounded_queue(server):
    import httpx

    url, _ = server
    body = {"image_id": STRIP, "target": {"kind": "panel", "index": 2}, "max_new_tokens": 40, "token_delay_ms": 100}
    with httpx.Client(timeout=30) as first_http, httpx.Client(timeout=30) as second_http, \
            httpx.Client(timeout=30) as http:
        with first_http.stream("POST", f"{url}/api/generate", json=body) as first:
            running = EventReader(first)
            first_id = running.until("start")[0]["generation_id"]
            with second_http.stream("POST", f"{url}/api/generate", json=body) as second:
                waiting = EventReader(second)
                queued = waiting.next()
                assert queued["type"] == "queued" and queued["ahead"] == 1
                status = _status(http, url)
                assert status["running"] == first_id and status["waiting"] == 1
                third = http.post(f"{url}/api/generate", json=body)  # queue_size=1 is full
                assert third.status_code == 429 and third.headers["retry-after"] == "1"
                assert "queue" in third.json()["detail"]
                http.post(f"{url}/api/generations/{first_id}/cancel", json={})
                assert running.until("done")[-1]["reason"] == "cancelled"
                start = waiting.until("start")[-1]  # the waiting one runs once the first is done
                http.post(f"{url}/api/generations/{start['generation_id']}/cancel", json={})
                assert waiting.until("done")[-1]["reason"] == "cancelled"
        wait_until(lambda: _status(http, url)["running"] is None and _status(http, url)["waiting"] == 0)


def test_fifty_clients_at_once_get_a_stream_or_a_429_with_a_reason(server):
    import httpx

    url, _ = server  # one running and one waiting generation at most
    body = {"image_id": STRIP, "target": {"kind": "panel", "index": 2}, "max_new_tokens": 40, "token_delay_ms": 50}
    gate = threading.Barrier(50)
    results: list = []

    def visitor() -> None:
        try:
            with httpx.Client(timeout=60) as http:
                gate.wait()
                with http.stream("POST", f"{url}/api/generate", json=body) as response:
                    if response.status_code == 200:
                        results.append((200, EventReader(response).next()["type"]))
                    else:
                        response.read()
                        results.append((response.status_code, response.json()["detail"]))
        except Exception as exc:  # noqa: BLE001 - counted as an error
            results.append(("error", repr(exc)))

    threads = [threading.Thread(target=visitor) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 50
    assert [r for r in results if r[0] not in (200, 429)] == []  # no errors
    served = [r for r in results if r[0] == 200]
    assert 1 <= len(served) <= 2 and all(kind == "queued" for _, kind in served)
    assert all("queue" in detail for status, detail in results if status == 429)
    with httpx.Client(timeout=30) as http:  # the visitors left: their generations are cancelled
        wait_until(lambda: _status(http, url)["running"] is None and _status(http, url)["waiting"] == 0)


def test_a_waiting_generation_whose_client_leaves_never_runs(server):
    import httpx

    url, _ = server
    body = {"image_id": STRIP, "target": {"kind": "panel", "index": 2}, "max_new_tokens": 40, "token_delay_ms": 100}
    with httpx.Client(timeout=30) as first_http, httpx.Client(timeout=30) as http:
        with first_http.stream("POST", f"{url}/api/generate", json=body) as first:
            running = EventReader(first)
            first_id = running.until("start")[0]["generation_id"]
            with httpx.Client(timeout=30) as second_http:
                with second_http.stream("POST", f"{url}/api/generate", json=body) as second:
                    waiting_id = EventReader(second).next()["generation_id"]
            # the second client left while waiting; the server sees it at the next keep-alive
            record = wait_until(lambda: next((r for r in _status(http, url)["recent"] if r["id"] == waiting_id), None),
                                timeout=20)
            assert record["reason"] == "cancelled" and record["steps"] == 0
            assert _status(http, url)["running"] == first_id
            http.post(f"{url}/api/generations/{first_id}/cancel", json={})
            running.until("done")


# command line ---------------------------------------------------------------------------------------


def test_demo_subcommand_options():
    from gazeheads.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["demo"])
    assert (args.host, args.port, args.ranking, args.comics, args.k, args.model) == \
        ("127.0.0.1", 8765, None, None, None, None)
    args = parser.parse_args(["demo", "--model", "m", "--ranking", "r.json", "--comics", "c", "--host", "::1",
                              "--port", "9000", "-k", "7"])
    assert (args.model, args.ranking, args.comics, args.host, args.port, args.k) == ("m", "r.json", "c", "::1", 9000, 7)


def test_loopback_detection():
    from gazeheads.demo import is_loopback as _is_loopback

    assert _is_loopback("127.0.0.1") and _is_loopback("localhost") and _is_loopback("::1") and _is_loopback("127.0.0.2")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.2") and not _is_loopback("example.org")


def test_startup_ranking_on_synthetic_strips(gm):
    from gazeheads.demo import startup_ranking

    ranking = startup_ranking(gm, n_strips=1)
    assert ranking.shape == gm.shape and ranking.n_strips == 1 and ranking.n_panels == 6


def test_an_existing_ranking_of_the_same_model_is_found_under_runs(gm, ranking, tmp_path):
    import os

    from gazeheads.demo import find_ranking, find_ranking_file

    assert find_ranking(gm, tmp_path / "nothing") is None
    runs = tmp_path / "runs"
    model, processor = make_qwen("qwen3_vl", layers=2, heads=8, kv_heads=4, seed=4)
    other = gh.GazeModel(model, processor, name="other weights, same shape")
    rng = np.random.default_rng(5)
    older = ranking.save(runs / "older" / "ranking.json")
    newer = Ranking.from_matrices(rng.random((3, 2, 8, 6, 6)), model=gm, source="synth")
    newer_path = newer.save(runs / "newer" / "ranking.json")
    foreign = Ranking.from_matrices(rng.random((1, 2, 8, 6, 6)), model=other, source="synth")
    foreign_path = foreign.save(runs / "foreign" / "ranking.json")
    (runs / "broken").mkdir()
    (runs / "broken" / "ranking.json").write_text("{not a ranking")
    now = time.time()
    for age, path in ((300, older), (200, newer_path), (100, foreign_path), (0, runs / "broken" / "ranking.json")):
        os.utime(path, (now - age, now - age))
    assert find_ranking_file(gm, runs) == newer_path  # the newest of this model, not another model's
    found = find_ranking(gm, runs)
    assert found.n_strips == 3 and np.allclose(found.matrices, newer.matrices) and found.source == "synth"
    assert find_ranking_file(other, runs) == foreign_path


def test_ranking_of_another_model_is_refused(gm, ranking):
    model, processor = make_qwen("qwen3_vl", layers=2, heads=4, kv_heads=2, seed=3)
    other = gh.GazeModel(model, processor, name="other")
    with pytest.raises(gh.ModelError, match="ranking was made on"):
        create_app(other, ranking)
    with pytest.raises(gh.HeadSelectionError):
        create_app(gm, ranking, k=99)


@pytest.fixture(autouse=True)
def _no_leftover_threads():
    yield
    wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("gazeheads-demo-")], timeout=30)

