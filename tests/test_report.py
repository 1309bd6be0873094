"""The run report: sections in the paper's order, the unsteered baseline beside every result, words for
headers, extra sections, eval-only runs; and in headless Chromium, a page that fits 1,280 px.

The browser test renders the report of a small real `gazeheads run --quick` and saves
screenshots (to a temporary folder, or GAZEHEADS_SCREENSHOT_DIR, e.g. docs/).
GAZEHEADS_REPORT_RUN=<run folder> screenshots an existing run instead (how docs/report-*.png
were made, from a full `gazeheads run`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from gazeheads import plots
from gazeheads.adapters import HeadShape
from gazeheads.evaluation.session import ProcessInfo, finish
from gazeheads.evaluation.store import JsonlStore
from gazeheads.ranking import Ranking
from gazeheads.regions import Panel
from gazeheads.report import Figure, ReportSection, Table, write_run_report
from gazeheads.synth import make_strip
from gazeheads.tracking import Trace

STRIPS = [f"synth_{100_000 + i:06d}" for i in range(3)]
SCHEDULE = [2, 3, 4, 5, 6, 1]


def _verdict(choice, junk=False):
    return {"choice": choice, "junk": junk, "same_as_baseline": False, "judge": "truth", "detail": {}}


def _static_records(protocol: str) -> list[dict]:
    """Gaze heads move the answer, random heads leave it on panel 1 (the unsteered answer), all heads break it."""
    records = []
    for strip in STRIPS:
        captions = make_strip(int(strip[6:])).captions
        base = {"protocol": protocol, "strip": strip}
        records.append({**base, "key": f"{protocol}|baseline|{strip}", "condition": "baseline", "k": 0,
                        "text": captions[0], "segments": []})
        for target in range(1, 7):
            for condition, k, text, choice in (("gaze", 4, captions[target - 1], target),
                                               ("random", 4, captions[0], 1), ("all", 48, "x x x x", None)):
                records.append({**base, "key": f"{protocol}|{condition}|{strip}|{target}", "condition": condition,
                                "k": k, "target": target, "n_panels": 6, "text": text, "baseline": captions[0],
                                "verdict": _verdict(choice, junk=choice is None), "hit": choice == target,
                                "junk": choice is None})
    return records


def _dynamic_records() -> list[dict]:
    records = []
    for strip in STRIPS:
        captions = make_strip(int(strip[6:])).captions
        base = {"protocol": "dynamic", "strip": strip, "n_panels": 6, "schedule": SCHEDULE, "segment_tokens": 3}
        records.append({"protocol": "dynamic", "strip": strip, "key": f"dynamic|baseline|{strip}",
                        "condition": "baseline", "k": 0, "text": " . ".join(captions), "segments": captions})
        for condition, k, judged in (("gaze", 4, SCHEDULE), ("random", 4, [1, 2, 3, 4, 5, 6])):
            segments = [captions[p - 1] for p in judged]
            hits = [j == s for j, s in zip(judged, SCHEDULE)]
            records.append({**base, "key": f"dynamic|{condition}|{strip}", "condition": condition, "k": k,
                            "text": " . ".join(segments), "segments": segments, "judged": judged,
                            "segment_hits": hits, "verdicts": [_verdict(j) for j in judged],
                            "spearman": 1.0 if condition == "gaze" else -0.2, "hit": sum(hits) / 6, "junk": False})
    return records


def _write_run(run_dir: Path, protocols=("narration", "vqa", "dynamic"), discovery=True, tracking=True) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    records = [r for p in protocols if p != "dynamic" for r in _static_records(p)]
    records += _dynamic_records() if "dynamic" in protocols else []
    JsonlStore(run_dir / "generations.jsonl").add(records)
    settings = {"model": "tiny <model>", "k": 4, "control_percentile": 50.0, "judge": "truth",
                "layout": {"synthetic": True, "strip": {"height": 64, "gap": 0, "n_panels": 6, "multiple": 32}}}
    if discovery:
        rng = np.random.default_rng(0)
        per_strip = rng.uniform(0, 0.02, (4, 6, 8, 6, 6))
        per_strip[:, 1, 2] += 0.9 * np.eye(6)
        Ranking(model_id="tiny <model>", fingerprint="f", shape=HeadShape(6, 8, 4), matrices=per_strip.mean(0),
                per_strip=per_strip).save(run_dir / "ranking.json")
    if tracking:
        tokens = ["brown", "triangle", ".", "blue", "star", "."]
        traces = []
        for seed in (0, 1):
            normalised = np.random.default_rng(seed).dirichlet(np.ones(6), (1, 6))
            traces.append(Trace(normalised, normalised, np.ones((1, 6)), [[Panel(k) for k in range(1, 7)]], True))
        plots.tracking_pair(*traces, run_dir / "tracking_unsteered.png", tokens=tokens,
                            transitions=plots.narration_transitions(tokens, 6, separator="."))
        plots.tracking_staircase(traces[0], run_dir / "tracking_steered.png", tokens=tokens)
        (run_dir / "tracking.json").write_text(json.dumps({
            "strip": STRIPS[0], "question": "Narrate.",
            "unsteered": {"text": "brown triangle . blue star .", "tokens": tokens, "gaze": traces[0].to_dict(),
                          "control": traces[1].to_dict(), "gaze_heads": "gaze top-4",
                          "control_heads": "random non-gaze 4"},
            "steered": {"text": "blue star .", "tokens": tokens, "schedule": SCHEDULE, "segment_tokens": 3,
                        "trace": traces[0].to_dict()}}))
    return settings


@pytest.fixture(scope="module")
def made_run(tmp_path_factory):
    """A run folder written by hand (no model) and its report, with a "Monitoring" extra section."""
    run_dir = tmp_path_factory.mktemp("report") / "run"
    settings = _write_run(run_dir)
    monitor_png = plots.score_histogram(Ranking.load(run_dir / "ranking.json"), run_dir / "monitor.png")
    extra = ReportSection("Monitoring", "AUROC of the monitor.", [Figure(monitor_png, "Monitor scores on 6 strips.")],
                          [Table(["Bias strength", "AUROC"], [["10000", "0.97"]])], anchor="monitoring")
    rows = finish(run_dir, ProcessInfo(), title="Gaze heads of tiny <model>", settings=settings, echo=False,
                  extra={"run_seconds": 83.0}, extra_sections=[extra])
    return run_dir, rows, (run_dir / "report.html").read_text()


def _section_titles(page: str) -> list[str]:
    return re.findall(r"<h[23]>(.*?)</h[23]>", page)


def test_sections_follow_the_papers_order_with_the_extra_section_after_tracking(made_run):
    _, _, page = made_run
    assert _section_titles(page) == ["Overview", "Discovery", "Steering", "Panel question", "VQA question",
                                     "Dynamic narration", "Tracking", "Monitoring", "Settings and run details"]


def test_title_says_model_version_date_and_run_time_and_escapes_text(made_run):
    _, _, page = made_run
    from gazeheads import __version__

    assert "<h1>Gaze heads of tiny &lt;model&gt;</h1>" in page
    meta = re.search(r'<p class="meta">(.*?)</p>', page).group(1)
    assert f"gazeheads {__version__}" in meta and "run time 1 min 23 s" in meta
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", meta)
    assert "<model>" not in page  # every text is escaped


def test_every_figure_has_a_caption_that_says_how_much_data(made_run):
    run_dir, _, page = made_run
    figures = dict(re.findall(r'<figure data-file="([^"]+)".*?<figcaption>(.*?)</figcaption>', page, re.S))
    assert set(figures) == {"discovery_score_histogram.png", "discovery_score_map.png", "discovery_panel_matrices.png",
                            "accuracy.png", "accuracy_per_panel.png", "unsteered_panels.png", "dynamic_schedules.png",
                            "tracking_unsteered.png", "tracking_steered.png", "monitor.png"}
    assert all((run_dir / name).is_file() for name in figures)
    assert "3 strips x 6 targets = 18 answers" in figures["accuracy.png"]
    assert "Dashed: the unsteered answers" in figures["accuracy.png"]
    assert "panel 1 in 3 of 3 strips" in figures["unsteered_panels.png"]
    assert "2 panel starts found at the separators" in figures["tracking_unsteered.png"]
    assert figures["tracking_steered.png"].startswith("Steered")


def test_the_unsteered_baseline_is_scored_and_shown(made_run):
    run_dir, rows, page = made_run
    unsteered = {r["protocol"]: r for r in json.loads((run_dir / "summary.json").read_text())["unsteered"]}
    # the unsteered answer is the random heads' answer: panel 1 on every strip
    assert unsteered["vqa"]["accuracy"] == pytest.approx(1 / 6)
    assert unsteered["vqa"]["per_panel"] == {"1": 1.0, "2": 0.0, "3": 0.0, "4": 0.0, "5": 0.0, "6": 0.0}
    assert unsteered["vqa"]["strips_placed"] == 3 and unsteered["vqa"]["panels"] == {"1": 3}
    assert unsteered["dynamic"]["accuracy"] == 0.0  # a derangement never schedules the reading order
    assert "unsteered" not in {r["condition"] for r in rows}  # finish() returns the steered rows as before
    assert page.count("<th>Unsteered answer</th>") == 2 and page.count("<th>Unsteered narration</th>") == 1


def test_tables_speak_in_words(made_run):
    _, _, page = made_run
    headers = re.findall(r"<th>(.*?)</th>", page)
    assert "95% interval" in headers and "top-4 gaze heads" in headers and "all 48 heads" in headers
    assert not {"ci_low", "ci_high", "n_clusters", "junk_rate", "condition", "k"} & set(headers)
    assert "4 random non-gaze heads (gaze score in the lowest 50%)" in page


def test_examples_cover_several_strips_every_target_with_thumbnails(made_run):
    _, _, page = made_run
    vqa = page[page.index("<h3>VQA question</h3>"):page.index("<h3>Dynamic narration</h3>")]
    assert [int(t) for t in re.findall(r"class=\"note\">target: panel (\d)", vqa)] == [1, 2, 3, 4, 5, 6]
    assert set(re.findall(r"synth_\d+", vqa)) == set(STRIPS)
    assert vqa.count('class="thumb" src="data:image/png;base64,') == 6
    assert {"hit", "miss", "junk"} <= set(re.findall(r'<span class="mark">(\w+)</span>', vqa))


def test_an_eval_run_without_discovery_or_tracking_gets_its_report(tmp_path):
    settings = _write_run(tmp_path, protocols=("vqa",), discovery=False, tracking=False)
    settings.pop("layout")
    (tmp_path / "generations.jsonl").write_text((tmp_path / "generations.jsonl").read_text().replace("synth_", "s_"))
    finish(tmp_path, ProcessInfo(), title="gazeheads eval vqa", settings=settings, echo=False)
    page = (tmp_path / "report.html").read_text()
    assert _section_titles(page) == ["Overview", "Steering", "VQA question", "Settings and run details"]
    assert "no thumbnail: the strip was not available to the report" in page
    # given the strips, the report shows them
    strips = [make_strip(100_000 + i, comic_id=f"s_{100_000 + i:06d}") for i in range(3)]
    write_run_report(tmp_path, strips=strips)
    assert (tmp_path / "report.html").read_text().count('class="thumb"') == 6


# -- in a browser ------------------------------------------------------------------------------------

CHROMIUM = os.environ.get("GAZEHEADS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _save_screenshot(png: bytes, path: Path) -> None:
    """The page as a dithered 256-colour PNG (under half the size; colour bars keep their gradients)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    palette = image.quantize(256, method=Image.Quantize.FASTOCTREE)
    image.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)


@pytest.fixture(scope="module")
def run_report(tmp_path_factory):
    """report.html of a small real `gazeheads run --quick` (or of GAZEHEADS_REPORT_RUN)."""
    given = os.environ.get("GAZEHEADS_REPORT_RUN")
    if given:
        return Path(given) / "report.html"
    from gazeheads import cli

    root = tmp_path_factory.mktemp("report-run")
    assert cli.main(["run", "--quick", "--out-root", str(root), "--discover-strips", "4", "--n-strips", "3",
                     "--scenes", "3"]) == 0
    return root / "quick" / "report.html"


def test_report_fits_1280_px_and_shows_baseline_per_panel_and_unsteered_staircase(run_report, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install chromium).")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install -e '.[test]')")
    shots = Path(os.environ.get("GAZEHEADS_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="gazeheads-chromium-") as profile:
        for width, name in ((1280, "report-1280.png"), (480, "report-narrow.png")):
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": width, "height": 900}, device_scale_factor=1)
            try:
                page = context.new_page()
                page.goto(run_report.resolve().as_uri())
                page.wait_for_load_state("load")
                scroll = page.evaluate("document.documentElement.scrollWidth")
                assert scroll <= width, f"the page is {scroll} px wide in a {width} px window"
                tables = page.evaluate("[...document.querySelectorAll('div.table')].map(d => "
                                       "[d.querySelector('table').scrollWidth, d.clientWidth])")
                if width == 1280:
                    assert tables and all(table <= room for table, room in tables), tables
                    files = page.evaluate("[...document.querySelectorAll('figure')].map(f => f.dataset.file)")
                    assert {"accuracy.png", "accuracy_per_panel.png", "unsteered_panels.png",
                            "tracking_unsteered.png", "tracking_steered.png"} <= set(files)
                    assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
                    assert page.locator("th", has_text="Unsteered answer").count() >= 2
                _save_screenshot(page.screenshot(full_page=True), shots / name)
            finally:
                context.close()
    assert (shots / "report-1280.png").stat().st_size > 50_000
