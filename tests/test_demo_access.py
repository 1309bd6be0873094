"""Who may use the demo, and the record it keeps (issue 17).

Loopback is open; any other address needs an access token, which every request must carry
(401 otherwise); `gazeheads demo --host 0.0.0.0` generates and prints one. Every steering
action (the start of a steered generation and every live re-target) appends a JSON line to
the audit log. A tiny random Qwen3-VL (built in code) stands in for the model here; the
command-line test serves the bundled model in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import live_server

pytest.importorskip("fastapi", reason="the demo needs fastapi (pip install -e .)")
pytest.importorskip("httpx")

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import gazeheads as gh  # noqa: E402
from gazeheads.demo.access import COOKIE, check_bind, new_token  # noqa: E402
from gazeheads.demo.server import create_app  # noqa: E402
from gazeheads.ranking import Ranking  # noqa: E402

from factories import make_qwen  # noqa: E402

TOKEN = "test-token-0123456789abcdef"
STRIP = "synth-100000"


@pytest.fixture(scope="module")
def gm():
    from gazeheads.layout import ModelLayout, StripLayout

    model, processor = make_qwen("qwen3_vl", layers=2, heads=8, kv_heads=4, seed=3)
    return gh.GazeModel(model, processor, name="tiny-random",
                        layout=ModelLayout(strip=StripLayout(height=64, gap=0), synthetic=True))


@pytest.fixture(scope="module")
def ranking(gm):
    return Ranking.from_matrices(np.random.default_rng(0).random((2, 2, 8, 6, 6)), model=gm, source="random")


def app_of(gm, ranking, **kwargs):
    kwargs.setdefault("synthetic_seeds", (100_000,))
    return create_app(gm, ranking, **kwargs)


# access token -------------------------------------------------------------------------------------


def test_a_non_loopback_bind_without_a_token_is_refused(gm, ranking):
    for host in ("0.0.0.0", "192.168.1.20", "::", "example.org"):
        with pytest.raises(gh.GazeheadsError, match="access control") as info:
            check_bind(host, None)
        assert "--token" in info.value.fix
        check_bind(host, new_token())  # fine with a token
    for host in ("127.0.0.1", "localhost", "::1"):
        check_bind(host, None)
    with pytest.raises(gh.GazeheadsError, match="needs an access token"):
        app_of(gm, ranking, allowed_hosts=["*"])
    with pytest.raises(gh.GazeheadsError, match="16 to 256 characters"):
        app_of(gm, ranking, allowed_hosts=["*"], token="short")


def test_the_command_line_generates_a_token_beyond_loopback():
    from gazeheads.cli.demo import access_token

    token, generated = access_token("0.0.0.0", None, environ={})
    assert generated and len(token) >= 32 and token != access_token("0.0.0.0", None, environ={})[0]
    assert access_token("0.0.0.0", "given-token-0123456789", environ={}) == ("given-token-0123456789", False)
    assert access_token("0.0.0.0", None, environ={"GAZEHEADS_DEMO_TOKEN": "env-token-0123456789ab"}) == \
        ("env-token-0123456789ab", False)
    assert access_token("127.0.0.1", None, environ={}) == (None, False)  # loopback stays open
    with pytest.raises(gh.GazeheadsError, match="16 to 256"):
        access_token("0.0.0.0", "abc", environ={})


def test_with_a_token_every_request_needs_it(gm, ranking):
    with TestClient(app_of(gm, ranking, token=TOKEN, allowed_hosts=["*"]), base_url="http://192.168.1.20") as c:
        bearer = {"authorization": f"Bearer {TOKEN}"}
        for path in ("/api/info", "/api/images", f"/api/images/{STRIP}", f"/api/images/{STRIP}/pixels",
                     "/api/status", "/", "/static/app.js", "/api/openapi.json"):
            refused = c.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert "access token" in refused.text
            assert c.get(path, headers={"authorization": "Bearer wrong-token-0123456789abc"}).status_code == 401
            assert c.get(path, headers=bearer).status_code == 200, path
        body = {"image_id": STRIP, "target": {"kind": "panel", "index": 2}, "max_new_tokens": 2}
        assert c.post("/api/generate", json=body).status_code == 401
        assert c.post("/api/uploads", content=b"x", headers={"content-type": "image/png"}).status_code == 401
        assert c.post("/api/generations/0123456789abcdef/cancel", json={}).status_code == 401
        with c.stream("POST", "/api/generate", json=body, headers=bearer) as response:
            assert response.status_code == 200
            assert [line for line in response.iter_lines() if '"type":"done"' in line]


def test_the_page_link_carries_the_token_and_a_cookie_serves_its_files(gm, ranking):
    with TestClient(app_of(gm, ranking, token=TOKEN), base_url="http://127.0.0.1") as c:
        page = c.get(f"/?token={TOKEN}")
        assert page.status_code == 200 and '<canvas id="overlay"' in page.text
        cookie = page.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}={TOKEN}") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        c.cookies.set(COOKIE, TOKEN)
        assert c.get("/static/app.js").status_code == 200  # the page's own files, by the cookie
        assert c.get("/").status_code == 200  # a reload
        assert c.get("/api/info").status_code == 401  # the API wants the header: no cross-site use of the cookie
        c.cookies.clear()
        assert c.get(f"/api/info?token={TOKEN}").status_code == 401  # nor a token in the URL
        assert c.get("/?token=wrong-token-0123456789abc").status_code == 401


def test_loopback_without_a_token_stays_open(gm, ranking):
    with TestClient(app_of(gm, ranking), base_url="http://127.0.0.1") as c:
        info = c.get("/api/info").json()
        assert info["token_required"] is False and info["audit"] is False
        assert c.get("/").status_code == 200


# audit log -----------------------------------------------------------------------------------------


def _events(response):
    lines = response.iter_lines()

    def next_event(kind):
        for line in lines:
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"] == kind:
                    return event
        raise AssertionError(f"the stream ended before a {kind!r} event")

    return next_event


def test_every_steering_action_appends_a_json_line(gm, ranking, tmp_path):
    log = tmp_path / "audit" / "demo.jsonl"
    log.parent.mkdir()
    log.write_text('{"event": "earlier line, kept"}\n')
    app = app_of(gm, ranking, audit_log=log, max_new_tokens=40)
    session = {"x-gazeheads-session": "page0123abcd"}
    with live_server(app) as url, httpx.Client(timeout=30, headers=session) as http:
        assert http.get(f"{url}/api/info").json()["audit"] is True
        body = {"image_id": STRIP, "target": {"kind": "circle", "x": 144, "y": 48, "r": 30}, "max_new_tokens": 30,
                "token_delay_ms": 50, "k": 3}
        with http.stream("POST", f"{url}/api/generate", json=body) as response:
            next_event = _events(response)
            generation = next_event("start")["generation_id"]
            next_event("token")
            moves = [{"kind": "panel", "index": 5}, {"kind": "box", "x0": 0, "y0": 0, "x1": 60, "y1": 64}]
            acks = [http.post(f"{url}/api/generations/{generation}/target", json={"target": t}).json()
                    for t in moves]
            http.post(f"{url}/api/generations/{generation}/cancel", json={})
            next_event("done")
        baseline = {"image_id": STRIP, "steer": False, "max_new_tokens": 2}
        with http.stream("POST", f"{url}/api/generate", json=baseline) as response:
            _events(response)("done")  # a generation without steering is no steering action
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines[0] == {"event": "earlier line, kept"}  # appended, never truncated
    steer, *retargets = lines[1:]
    assert [line["event"] for line in lines[1:]] == ["steer", "retarget", "retarget"]
    for line in lines[1:]:
        assert line["client"] == "127.0.0.1 page page0123abcd" and line["generation"] == generation
        assert line["fingerprint"] == gm.fingerprint() and line["model"] == "tiny-random"
        assert line["heads"] == [list(h) for h in ranking.top(3)] and line["image"] == STRIP
        assert (line["strength"], line["mode"], line["phase"]) == (10000.0, "boost_suppress", "decode")
        assert isinstance(line["unix_time"], float) and re.match(r"\d{4}-\d\d-\d\dT", line["time"])
    assert steer["target"]["circle"] == [144, 48, 30] and steer["target"]["cells"] >= 1
    assert retargets[0]["target"]["panel"] == 5 and retargets[1]["target"]["box"] == [0, 0, 60, 64]
    assert [r["from_step"] for r in retargets] == [a["from_step"] for a in acks]


def test_steering_that_cannot_be_audited_does_not_happen(gm, ranking):
    class Broken:
        def write(self, event):
            raise OSError("disk full")

    with TestClient(app_of(gm, ranking, audit_log=Broken()), base_url="http://127.0.0.1") as c:
        body = {"image_id": STRIP, "target": {"kind": "panel", "index": 2}, "max_new_tokens": 3}
        with c.stream("POST", "/api/generate", json=body) as response:
            events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert "token" not in [e["type"] for e in events]
    error = next(e for e in events if e["type"] == "error")
    assert "audit log could not be written" in error["message"] and "--audit-log" in error["fix"]


def test_a_retarget_that_cannot_be_audited_is_refused_and_stops_the_generation(gm, ranking):
    class FailsAfterFirst:
        def __init__(self):
            self.lines = []

        def write(self, event):
            if self.lines:
                raise OSError("disk full")
            self.lines.append(event)

    sink = FailsAfterFirst()
    app = app_of(gm, ranking, audit_log=sink, max_new_tokens=40)
    with live_server(app) as url, httpx.Client(timeout=30) as http:
        body = {"image_id": STRIP, "target": {"kind": "panel", "index": 2}, "max_new_tokens": 40, "token_delay_ms": 50}
        with http.stream("POST", f"{url}/api/generate", json=body) as response:
            next_event = _events(response)
            generation = next_event("start")["generation_id"]
            moved = http.post(f"{url}/api/generations/{generation}/target",
                              json={"target": {"kind": "panel", "index": 4}})
            assert moved.status_code == 503 and "audit log could not be written" in moved.json()["detail"]
            done = next_event("done")
    assert done["reason"] == "cancelled" and done["steps"] < 40
    assert [line["event"] for line in sink.lines] == ["steer"]


# the command line, end to end ------------------------------------------------------------------------


def test_gazeheads_demo_beyond_loopback_prints_a_token_link_and_reuses_a_ranking(tmp_path):
    """`gazeheads demo --host 0.0.0.0` on the bundled model: a generated token in the printed link, 401
    without it, the ranking of the same model found under --runs, and the audit log created."""
    import gazeheads

    bundled = gh.load(device="cpu")
    Ranking.from_matrices(np.random.default_rng(1).random((3, 6, 8, 6, 6)), model=bundled,
                          source="synth").save(tmp_path / "runs" / "main" / "ranking.json")
    audit = tmp_path / "logs" / "audit.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(gazeheads.__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    env.pop("GAZEHEADS_DEMO_TOKEN", None)
    server = subprocess.Popen([sys.executable, "-m", "gazeheads.cli", "demo", "--host", "0.0.0.0", "--port", "0",
                               "--runs", str(tmp_path / "runs"), "--audit-log", str(audit), "--device", "cpu"],
                              stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    said = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = server.stderr.readline()
            assert line, f"the demo exited: {''.join(said)}"
            said.append(line)
            if "gazeheads demo on" in line:
                break
        link = re.search(r"http://0\.0\.0\.0:(\d+)/\?token=([A-Za-z0-9_-]{32,})", said[-1])
        assert link, said
        port, token = link.groups()
        text = "".join(said)
        assert "access token generated" in text and f"reusing the ranking in {tmp_path / 'runs' / 'main'}" in text
        assert "discovering" not in text and str(audit) in text
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=30) as http:
            assert http.get(f"{url}/api/info").status_code == 401
            info = http.get(f"{url}/api/info", headers={"authorization": f"Bearer {token}"}).json()
            assert info["token_required"] and info["audit"] and info["ranking"]["n_strips"] == 3
            assert info["ranking"]["file"].endswith(os.path.join("main", "ranking.json"))
            assert http.get(f"{url}/?token={token}").status_code == 200
        assert audit.exists()
    finally:
        server.terminate()
        server.wait(timeout=30)
