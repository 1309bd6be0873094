"""End to end in a real browser: aim, pin, generate, re-steer; by mouse, keyboard and touch.

Headless Chromium from Debian (/usr/bin/chromium, installed by .ci/run) driven by
Playwright's Python package, on the bundled model, exactly as `gazeheads demo` serves it.
The demo steers at decode only (the published setting), so the first generated token, the
first caption's colour word, is not steered: an answer "is panel k's" when its first caption
has panel k's shape and every later caption is panel k's.

The tests save screenshots of the states they reach under docs/ (docs/demo.png is the
README's). GAZEHEADS_E2E_MODEL=<model folder> runs them on another Hugging Face folder of a
model trained like the bundled one (e.g. a fresh `gazeheads train-tiny` run).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from conftest import live_server

CHROMIUM = os.environ.get("GAZEHEADS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS = Path(__file__).resolve().parents[1] / "docs"
TOKEN_DELAY_MS = 250  # slow enough that the cursor can move mid-answer, on any CI machine
TIMEOUT_MS = 60_000
DESKTOP = {"viewport": {"width": 1100, "height": 820}, "device_scale_factor": 1}
PHONE = {"viewport": {"width": 400, "height": 760}, "device_scale_factor": 2, "has_touch": True, "is_mobile": True}

if not Path(CHROMIUM).exists():
    pytest.skip(f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it).",
                allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="the e2e test needs playwright (pip install -e '.[test]')")
pytest.importorskip("fastapi", reason="the demo needs fastapi (pip install -e .)")
pytest.importorskip("uvicorn", reason="the demo needs uvicorn (pip install -e .)")

from playwright.sync_api import sync_playwright  # noqa: E402


def _model_path() -> Path:
    override = os.environ.get("GAZEHEADS_E2E_MODEL")
    if override:
        return Path(override)
    from gazeheads.assets import bundled_model_path
    from gazeheads.errors import ModelError

    try:
        return bundled_model_path()
    except ModelError as exc:
        pytest.skip(f"The bundled model folder is missing ({exc.problem}); the e2e test runs on it.")


@pytest.fixture(scope="module")
def model():
    import gazeheads as gh
    from gazeheads.demo import startup_ranking

    gm = gh.load(_model_path(), device="cpu")
    return gm, startup_ranking(gm)  # what `gazeheads demo` serves when no ranking is found


@pytest.fixture(scope="module")
def demo(model):
    """The demo app on the bundled model, served by uvicorn on a free loopback port: (url, model)."""
    from gazeheads.demo.server import create_app

    gm, ranking = model
    with live_server(create_app(gm, ranking, token_delay_ms=TOKEN_DELAY_MS)) as url:
        yield f"{url}/", gm


@contextlib.contextmanager
def browser_page(url: str, options: dict = DESKTOP, wait_idle: bool = True):
    """A fresh headless Chromium page on `url` (a new profile each time); fails on JavaScript errors."""
    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="gazeheads-chromium-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, **options)
        context.set_default_timeout(TIMEOUT_MS)
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            if wait_idle:
                page.wait_for_selector('body[data-state="idle"]')
            yield page
            assert not errors, f"JavaScript errors on the page: {errors}"
        finally:
            context.close()


@pytest.fixture
def page(demo):
    with browser_page(demo[0]) as page:
        yield page


def _meta(page) -> dict:
    return page.evaluate("id => fetch('/api/images/' + id).then(r => r.json())", page.input_value("#image-select"))


def _panel_point(page, meta: dict, panel: int, fx: float = 0.5, fy: float = 0.5) -> tuple[float, float]:
    """Screen coordinates of a point of `panel` (1-based; fx, fy: fractions of its width and height)."""
    box = page.locator("#overlay").bounding_box()
    x0, y0, x1, y1 = meta["regions"][panel - 1]["box"]
    scale = box["width"] / meta["width"]
    return box["x"] + (x0 + fx * (x1 - x0)) * scale, box["y"] + (y0 + fy * (y1 - y0)) * scale


def _centre(page, selector: str) -> tuple[float, float]:
    box = page.locator(selector).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def _tokens(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#answer .tok", "spans => spans.map(s => ({step: +s.dataset.step, text: s.textContent, "
                        "region: s.dataset.region === undefined ? null : +s.dataset.region}))")


def _segments(text: str) -> list[str]:
    """The captions of a narration: '<colour> <shape> . <colour> <shape> .' -> ['colour shape', ...]."""
    return [part.strip() for part in text.split(".") if part.strip()]


def _assert_answer_is_panels(text: str, caption: str, what: str) -> None:
    """Decode-only steering: the first word is unsteered, the first shape and every later caption are the panel's."""
    segments = _segments(text)
    assert len(segments) >= 2, f"{what}: too short an answer to judge: {text!r}"
    assert segments[0].split()[-1] == caption.split()[-1], f"{what}: the first caption {segments[0]!r} vs {caption!r}"
    assert all(s == caption for s in segments[1:]), f"{what}: steered to {caption!r} the answer was {text!r}"


def _screenshot(page, name: str) -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    partial = DOCS / f".{name}.partial"
    page.screenshot(path=str(partial), type="png", full_page=True)
    os.replace(partial, DOCS / name)


def _wait_done(page) -> str:
    try:
        page.wait_for_selector('body[data-state="done"]', state="attached")
    except Exception:  # noqa: BLE001 - say where the page stood
        raise AssertionError(f"no answer: the page is {page.get_attribute('body', 'data-state')!r}, "
                             f"saying {page.text_content('#status')!r}") from None
    return page.get_attribute("#answer", "data-text")


# mouse --------------------------------------------------------------------------------------------


def test_a_pinned_target_stays_while_the_cursor_travels_to_generate(page):
    """Issue 16: aimed at panel 5, the cursor crosses panel 4 on its way to Generate."""
    meta = _meta(page)
    captions = meta["captions"]
    page.fill("#delay", "0")

    # only hovered, never pinned: on the way to Generate the target goes with the cursor, so Generate
    # steers nowhere and says so, instead of steering to whatever panel the cursor crossed last
    page.mouse.move(*_panel_point(page, meta, 5))
    assert "panel 5" in page.text_content("#readout") and "hovered" in page.text_content("#readout")
    page.mouse.move(*_panel_point(page, meta, 4, 0.5, 0.95), steps=6)
    page.mouse.move(*_centre(page, "#generate"), steps=12)
    page.mouse.down()
    page.mouse.up()
    assert page.get_attribute("body", "data-state") == "idle" and "No target yet" in page.text_content("#status")
    assert _tokens(page) == []

    page.mouse.click(*_panel_point(page, meta, 5))
    page.wait_for_selector('body[data-pinned="true"]')
    assert page.get_attribute("body", "data-target-regions") == "4"
    assert "panel 5" in page.text_content("#readout") and "pinned" in page.text_content("#readout")

    # the way to Generate crosses panels 4 to 1: the pinned target must not follow
    page.mouse.move(*_panel_point(page, meta, 4, 0.3, 0.8), steps=8)
    page.mouse.move(*_panel_point(page, meta, 1, 0.5, 0.9), steps=12)
    assert page.get_attribute("body", "data-target-regions") == "4"
    page.mouse.move(*_centre(page, "#generate"), steps=12)
    assert "panel 5" in page.text_content("#readout")
    page.mouse.down()
    page.mouse.up()
    text = _wait_done(page)
    _assert_answer_is_panels(text, captions[4], "pinned on panel 5, then clicked Generate")
    assert page.get_attribute("body", "data-ack-seq") is None, "the pinned target was re-sent while travelling"
    _screenshot(page, "demo-pinned.png")

    # a click on the pinned spotlight unpins it; Esc unpins too
    page.mouse.click(*_panel_point(page, meta, 5))
    page.wait_for_selector('body[data-pinned="false"]')
    page.mouse.click(*_panel_point(page, meta, 2))
    page.wait_for_selector('body[data-pinned="true"]')
    page.keyboard.press("Escape")
    page.wait_for_selector('body[data-pinned="false"]')


def test_hover_and_enter_then_moving_the_cursor_re_steers_mid_sentence(page):
    meta = _meta(page)
    captions = meta["captions"]
    assert meta["panels"] == 6 and len(set(captions)) == 6

    # hover panel 3 and press Enter (nothing focused: the hovered target is used)
    page.mouse.move(*_panel_point(page, meta, 3))
    assert "hovered" in page.text_content("#readout") and "panel 3" in page.text_content("#readout")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => (document.getElementById('answer').dataset.text.match(/[.]/g) || []).length >= 2 "
        "|| !['running', 'queued'].includes(document.body.dataset.state)")
    first_text = page.get_attribute("#answer", "data-text")
    assert page.get_attribute("body", "data-state") == "running", \
        f"the answer ended before the cursor could move: {first_text!r}"
    first_ms = float(page.get_attribute("body", "data-first-token-ms"))
    _assert_answer_is_panels(first_text, captions[2], "hovered panel 3")

    # move the spotlight to panel 5 while the answer streams: the next tokens follow it
    page.mouse.move(*_panel_point(page, meta, 5))
    page.wait_for_function("() => document.body.dataset.ackStep !== undefined")
    switch = int(page.get_attribute("body", "data-ack-step"))
    full = _wait_done(page)
    tokens = _tokens(page)
    before = "".join(t["text"] for t in tokens if t["step"] < switch)
    after = "".join(t["text"] for t in tokens if t["step"] >= switch)
    assert after.strip(), f"no tokens after the switch at step {switch}: {full!r}"
    assert captions[4] not in before, f"panel 5's caption came before the cursor moved: {full!r}"
    later = _segments(after)
    if not before.rstrip().endswith("."):
        later = later[1:]  # the caption cut by the switch may mix both panels
    assert later and all(s == captions[4] for s in later), \
        f"after moving to panel 5 ({captions[4]!r}) at token {switch} the answer went on {after!r} (all: {full!r})"

    # each steered token is tinted by where the gaze heads looked: panel 3, then panel 5
    assert {t["region"] for t in tokens if 1 <= t["step"] < switch} == {2}
    assert {t["region"] for t in tokens if t["step"] >= switch} == {4}
    assert first_ms < 2000, f"the first token took {first_ms} ms after the key press"
    print(f"first token {first_ms:.0f} ms after the key press")

    # the heat map follows a hovered token; then the README's screenshot
    page.hover(f"#answer .tok[data-step='{tokens[2]['step']}']")
    page.wait_for_selector("#answer .tok.hovered")
    page.mouse.move(*_panel_point(page, meta, 5))
    _screenshot(page, "demo.png")


def test_first_token_latency(page):
    """The first token streams within a fraction of a second of the click (measured 60-110 ms before this
    change, on this 2-core CPU; the bound leaves room for a loaded CI machine)."""
    ready_ms = float(page.get_attribute("body", "data-ready-ms"))
    print(f"page ready (image shown, idle) {ready_ms:.0f} ms after navigation")
    assert ready_ms < 5000
    meta = _meta(page)
    page.fill("#delay", "0")
    page.fill("#max-tokens", "2")
    page.mouse.click(*_panel_point(page, meta, 2))
    times = []
    for _ in range(5):
        page.click("#generate")
        _wait_done(page)
        times.append(float(page.get_attribute("body", "data-first-token-ms")))
    times.sort()
    print(f"first token after the click: median {times[2]:.0f} ms, all {times}")
    assert times[2] < 1000, times


def test_without_steering_gives_the_baseline(page, demo):
    from gazeheads.synth import make_strip

    gm = demo[1]
    image_id = page.input_value("#image-select")
    page.fill("#delay", "0")
    page.mouse.click(*_panel_point(page, _meta(page), 4))  # a pinned target that must not matter
    page.click("#baseline")
    text = _wait_done(page)
    assert page.text_content("#answer .baseline-label") == "without steering:"
    question, n_tokens = page.input_value("#question"), int(page.input_value("#max-tokens"))
    expected = gm.generate(gm.encode(make_strip(int(image_id.split("-")[1]), layout=gm.layout.strip), question),
                           n_tokens)[0]
    assert text.strip() == expected, "the baseline differs from plain generation"


def test_switching_image_mid_generation_leaves_the_old_answer_behind(page):
    first = page.input_value("#image-select")
    page.fill("#delay", "400")  # slow tokens: the switch lands mid-answer
    page.mouse.click(*_panel_point(page, _meta(page), 2))
    page.click("#generate")
    page.wait_for_selector('body[data-state="running"]')
    options = page.eval_on_selector_all("#image-select option", "os => os.map(o => o.value)")
    page.select_option("#image-select", next(o for o in options if o != first))
    page.wait_for_selector('body[data-state="idle"]')
    assert page.is_disabled("#stop") and page.is_enabled("#generate")
    assert page.get_attribute("body", "data-pinned") == "false"  # a target belongs to its image
    page.wait_for_timeout(1200)  # the old stream would have delivered tokens by now
    assert _tokens(page) == [], "tokens of the abandoned generation reached the new image's answer"
    assert page.get_attribute("body", "data-state") == "idle"


def _overlay_alpha(page, meta: dict, cell: int) -> int:
    """Alpha of the overlay near the top-left corner of token cell `cell` (away from outlines and dots)."""
    x0, y0, x1, y1 = meta["cells"][cell]
    return page.evaluate(
        """([x, y, width]) => {
             const c = document.getElementById('overlay'), s = c.width / width;
             return c.getContext('2d').getImageData(Math.round(x * s), Math.round(y * s), 1, 1).data[3];
           }""", [x0 + 0.3 * (x1 - x0), y0 + 0.3 * (y1 - y0), meta["width"]])


def test_an_error_is_said_in_words_and_clears_the_heat_map(page):
    meta = _meta(page)
    page.fill("#delay", "0")
    page.mouse.click(*_panel_point(page, meta, 2))
    page.click("#generate")
    _wait_done(page)
    far = 11  # a cell of panel 6: the steered heads look at panel 2, so the heat map dims it
    assert _overlay_alpha(page, meta, far) > 100, "no heat map after the answer"
    page.set_input_files("#upload", files=[{"name": "notes.txt", "mimeType": "image/png", "buffer": b"not an image"}])
    page.wait_for_selector('body[data-state="error"]')
    status = page.text_content("#status")
    assert "not a PNG, JPEG, WebP or BMP image" in status and "Upload an image in one of those formats" in status
    assert not any(code in status for code in ("415", "error:")), status
    assert _tokens(page) == [] and page.get_attribute("#answer", "data-text") == ""
    assert _overlay_alpha(page, meta, far) == 0, "the previous answer's heat map stayed on screen"
    _screenshot(page, "demo-error.png")


# keyboard -------------------------------------------------------------------------------------------


def test_keyboard_only_tab_arrows_enter_generates_for_a_chosen_panel(page):
    captions = _meta(page)["captions"]
    page.evaluate("() => { const d = document.getElementById('delay'); d.value = '0'; "
                  "d.dispatchEvent(new Event('input')); }")  # without moving the focus
    order = []
    for _ in range(3):
        page.keyboard.press("Tab")
        order.append(page.evaluate("() => document.activeElement.id"))
    assert order == ["image-select", "upload-button", "stage"], f"focus order: {order}"
    assert page.evaluate("() => document.getElementById('stage').matches(':focus-visible')")

    for _ in range(12):  # arrows move the spotlight cell by cell until the readout names panel 5
        if page.get_attribute("body", "data-target-regions") == "4":
            break
        page.keyboard.press("ArrowRight")
    readout = page.text_content("#readout")
    assert page.get_attribute("body", "data-target-regions") == "4" and "panel 5" in readout, readout
    assert "pinned" in readout
    radius = int(page.input_value("#radius"))
    page.keyboard.press("+")
    assert int(page.input_value("#radius")) > radius
    page.keyboard.press("-")
    assert int(page.input_value("#radius")) == radius
    _screenshot(page, "demo-keyboard.png")
    page.keyboard.press("Enter")
    text = _wait_done(page)
    _assert_answer_is_panels(text, captions[4], "keyboard: arrows to panel 5, Enter")

    # every control is reachable with Tab and has a name
    unnamed = page.evaluate("""() => [...document.querySelectorAll('button, select, input, [tabindex="0"]')]
        .filter(el => !el.hidden && el.type !== 'file')
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
        .map(el => el.id)""")
    assert unnamed == [], f"controls without a label: {unnamed}"
    reached = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("() => document.activeElement.id || document.activeElement.name"))
    expected = {"image-select", "upload-button", "stage", "tool", "radius", "k", "phase", "question", "max-tokens",
                "delay", "show-heat", "generate", "baseline", "answer"}
    assert expected <= reached, f"not reachable with Tab: {expected - reached}"


# touch, 400 px wide ---------------------------------------------------------------------------------


def _touch_drag(page, start: tuple[float, float], end: tuple[float, float], steps: int = 10) -> None:
    """A finger drawn from `start` to `end` over 160 ms that rests there 200 ms before lifting (a drag that
    ends still, like a person's; a fast swipe would start a fling, and Chromium swallows the tap that stops one)."""
    cdp = page.context.new_cdp_session(page)
    t0 = time.time()

    def touch(kind: str, x: float | None, y: float | None, at: float) -> None:
        points = [] if x is None else [{"x": x, "y": y}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points, "timestamp": t0 + at})

    touch("touchStart", *start, 0.0)
    for i in range(1, steps + 1):
        touch("touchMove", start[0] + (end[0] - start[0]) * i / steps, start[1] + (end[1] - start[1]) * i / steps,
              0.016 * i)
    for i in range(1, 5):
        touch("touchMove", *end, 0.016 * steps + 0.05 * i)
    touch("touchEnd", None, None, 0.016 * steps + 0.25)
    cdp.detach()


def test_touch_at_400_px_tap_pins_and_drag_draws_a_box(demo):
    with browser_page(demo[0], PHONE) as page:
        meta = _meta(page)
        captions = meta["captions"]
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 400, f"the page is {width} px wide at a 400 px viewport"
        overflow = page.evaluate("""() => [...document.querySelectorAll('#stage, button, select, input, label, output')]
            .filter(el => el.offsetParent !== null && el.getBoundingClientRect().right > 400.5)
            .map(el => el.id || el.tagName)""")
        assert overflow == [], f"cut off at 400 px: {overflow}"
        assert "Tap" in page.text_content("#hint")
        page.fill("#delay", "0")

        page.tap("#overlay", position=_local(page, meta, 2))
        page.wait_for_selector('body[data-pinned="true"]')
        assert page.get_attribute("body", "data-target-regions") == "1"  # panel 2
        page.fill("#radius", "40")  # the slider changes the radius without a wheel
        assert "radius 40 px" in page.text_content("#readout")
        _screenshot(page, "demo-touch-pin.png")

        # a drag over panel 4 draws a box (and selects the Box tool); Generate steers there
        _touch_drag(page, _panel_point(page, meta, 4, 0.1, 0.1), _panel_point(page, meta, 4, 0.9, 0.9))
        page.wait_for_function("() => document.querySelector('input[value=box]').checked")
        readout = page.text_content("#readout")
        assert "box" in readout and "panel 4" in readout and "pinned" in readout, readout
        assert page.get_attribute("body", "data-target-regions") == "3"
        page.tap("#generate")
        text = _wait_done(page)
        _assert_answer_is_panels(text, captions[3], "touch: a box dragged over panel 4")
        _screenshot(page, "demo-touch-400.png")


def _local(page, meta: dict, panel: int) -> dict:
    box = page.locator("#overlay").bounding_box()
    x, y = _panel_point(page, meta, panel)
    return {"x": x - box["x"], "y": y - box["y"]}


# access token and audit, in the browser --------------------------------------------------------------


def test_a_token_protected_demo_works_from_its_link_and_audits_the_page(model, tmp_path):
    from gazeheads.demo.server import create_app

    gm, ranking = model
    token = "e2e-token-0123456789abcdef"
    log = tmp_path / "audit.jsonl"
    app = create_app(gm, ranking, token=token, audit_log=log, token_delay_ms=0)
    with live_server(app) as url:
        with browser_page(f"{url}/", wait_idle=False) as page:
            assert "access token" in page.text_content("body")  # the page itself needs the token
        with browser_page(f"{url}/?token={token}") as page:
            assert "token" not in page.url  # kept off the address bar once read
            assert page.evaluate("() => document.getElementById('image').naturalWidth") > 0  # pixels, by the token
            meta = page.evaluate("([id, token]) => fetch('/api/images/' + id, "
                                 "{headers: {Authorization: 'Bearer ' + token}}).then(r => r.json())",
                                 [page.input_value("#image-select"), token])
            page.mouse.click(*_panel_point(page, meta, 3))
            page.click("#generate")
            _wait_done(page)
            page.reload()  # a reload keeps working (the token is kept for this tab)
            page.wait_for_selector('body[data-state="idle"]')
    (line,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert line["event"] == "steer" and line["phase"] == "decode" and line["fingerprint"] == gm.fingerprint()
    assert line["client"].startswith("127.0.0.1 page ") and line["target"]["circle"][2] > 0
