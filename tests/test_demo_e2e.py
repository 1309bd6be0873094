"""End to end in a real browser: hover a panel, generate, re-steer mid-sentence.

Headless Chromium from Debian (/usr/bin/chromium, installed by .ci/run) driven by
Playwright's Python package, on the bundled model, exactly as `gazeheads demo` serves it:
the spotlight over panel 3 of a bundled synthetic strip makes the streamed answer the
caption of panel 3; moving it to panel 5 while tokens stream switches the text to panel 5.
The test saves the page as docs/demo.png (the README's screenshot).

GAZEHEADS_E2E_MODEL=<model folder> runs it on another Hugging Face folder of a model
trained like the bundled one (e.g. a fresh `gazeheads train-tiny` run).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import live_server

CHROMIUM = os.environ.get("GAZEHEADS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "demo.png"
TOKEN_DELAY_MS = 250  # slow enough that the cursor can move mid-answer, on any CI machine
TIMEOUT_MS = 60_000

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
def demo():
    """The demo app on the bundled model, served by uvicorn on a free loopback port: (url, model)."""
    import gazeheads as gh
    from gazeheads.demo import startup_ranking
    from gazeheads.demo.server import create_app

    gm = gh.load(_model_path(), device="cpu")
    app = create_app(gm, startup_ranking(gm), token_delay_ms=TOKEN_DELAY_MS)  # what `gazeheads demo` serves
    with live_server(app) as url:
        yield f"{url}/", gm


@pytest.fixture
def page(demo):
    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="gazeheads-chromium-") as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1100, "height": 820}, device_scale_factor=1)
        context.set_default_timeout(TIMEOUT_MS)
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(demo[0])
            page.wait_for_selector('body[data-state="idle"]')
            yield page
            assert not errors, f"JavaScript errors on the page: {errors}"
        finally:
            context.close()


def _panel_centre(page, meta: dict, panel: int) -> tuple[float, float]:
    """Screen coordinates of the centre of `panel` (1-based) of the displayed strip."""
    box = page.locator("#overlay").bounding_box()
    region = meta["regions"][panel - 1]["box"]
    scale = box["width"] / meta["width"]
    return box["x"] + (region[0] + region[2]) / 2 * scale, box["y"] + (region[1] + region[3]) / 2 * scale


def _tokens(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#answer .tok", "spans => spans.map(s => ({step: +s.dataset.step, text: s.textContent, "
                        "region: s.dataset.region === undefined ? null : +s.dataset.region}))")


def _segments(text: str) -> list[str]:
    """The captions of a narration: '<colour> <shape> . <colour> <shape> .' -> ['colour shape', ...]."""
    return [part.strip() for part in text.split(".") if part.strip()]


def test_spotlight_steers_the_streamed_answer_and_re_steers_mid_sentence(page):
    image_id = page.input_value("#image-select")
    assert image_id.startswith("synth-"), "the first image offered is a bundled synthetic strip"
    meta = page.evaluate("id => fetch('/api/images/' + id).then(r => r.json())", image_id)
    captions = meta["captions"]
    assert meta["panels"] == 6 and len(set(captions)) == 6

    # the spotlight over panel 3 (the default radius covers the panel's cells)
    page.mouse.move(*_panel_centre(page, meta, 3))
    page.wait_for_function("() => document.getElementById('radius-out').textContent !== ''")
    page.click("#generate")

    # the first caption streams in: it is panel 3's
    page.wait_for_function(
        "() => document.getElementById('answer').dataset.text.includes('.') "
        "|| !['running', 'queued'].includes(document.body.dataset.state)")
    first_text = page.get_attribute("#answer", "data-text")
    assert page.get_attribute("body", "data-state") == "running", \
        f"the answer ended before the cursor could move: {first_text!r}"
    assert _segments(first_text)[0] == captions[2], f"steered to panel 3 ({captions[2]!r}) the answer began {first_text!r}"

    # move the spotlight to panel 5 while the answer streams: the next tokens follow it
    page.mouse.move(*_panel_centre(page, meta, 5))
    page.wait_for_function("() => document.body.dataset.ackStep !== undefined")
    switch = int(page.get_attribute("body", "data-ack-step"))
    page.wait_for_selector('body[data-state="done"]')
    status = page.text_content("#status")
    tokens = _tokens(page)
    full = page.get_attribute("#answer", "data-text")
    before = "".join(t["text"] for t in tokens if t["step"] < switch)
    after = "".join(t["text"] for t in tokens if t["step"] >= switch)
    assert after.strip(), f"no tokens after the switch at step {switch} ({status}): {full!r}"
    assert _segments(before)[0] == captions[2]
    assert captions[4] not in before, f"panel 5's caption came before the cursor moved: {full!r}"
    later = _segments(after)
    if not before.rstrip().endswith("."):
        later = later[1:]  # the caption cut by the switch may mix both panels
    assert later and later[0] == captions[4], \
        f"after moving to panel 5 ({captions[4]!r}) at token {switch} the answer went on {after!r} (all: {full!r})"
    assert captions[2] not in later, f"panel 3's caption came back after the switch: {full!r}"

    # each token is tinted by where the gaze heads looked: panel 3, then panel 5
    assert {t["region"] for t in tokens if t["step"] < switch} == {2}
    assert {t["region"] for t in tokens if t["step"] >= switch} == {4}

    # the heat map follows a hovered token; then the screenshot for the README
    page.hover(f"#answer .tok[data-step='{tokens[0]['step']}']")
    page.wait_for_selector("#answer .tok.hovered")
    page.mouse.move(*_panel_centre(page, meta, 5))
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    partial = SCREENSHOT.with_name(".demo.png.partial")
    page.screenshot(path=str(partial), type="png", full_page=True)
    os.replace(partial, SCREENSHOT)


def test_without_steering_gives_the_baseline(page, demo):
    from gazeheads.synth import make_strip

    gm = demo[1]
    image_id = page.input_value("#image-select")
    seed = int(image_id.split("-")[1])
    page.fill("#delay", "0")
    page.mouse.move(*_panel_centre(page, page.evaluate("id => fetch('/api/images/' + id).then(r => r.json())",
                                                       image_id), 4))  # a spotlight that must not matter
    page.click("#baseline")
    page.wait_for_selector('body[data-state="done"]')
    text = page.get_attribute("#answer", "data-text")
    assert page.text_content("#answer .baseline-label") == "without steering:"
    question, n_tokens = page.input_value("#question"), int(page.input_value("#max-tokens"))
    expected = gm.generate(gm.encode(make_strip(seed), question), n_tokens)[0]
    assert text.strip() == expected, "the baseline differs from plain generation"


def test_switching_image_mid_generation_leaves_the_old_answer_behind(page):
    first = page.input_value("#image-select")
    meta = page.evaluate("id => fetch('/api/images/' + id).then(r => r.json())", first)
    page.fill("#delay", "400")  # slow tokens: the switch lands mid-answer
    page.mouse.move(*_panel_centre(page, meta, 2))
    page.click("#generate")
    page.wait_for_selector('body[data-state="running"]')
    options = page.eval_on_selector_all("#image-select option", "os => os.map(o => o.value)")
    other = next(o for o in options if o != first)
    page.select_option("#image-select", other)
    page.wait_for_selector('body[data-state="idle"]')
    assert page.is_disabled("#stop") and page.is_enabled("#generate")
    page.wait_for_timeout(1200)  # the old stream would have delivered tokens by now
    assert _tokens(page) == [], "tokens of the abandoned generation reached the new image's answer"
    assert page.get_attribute("body", "data-state") == "idle"
