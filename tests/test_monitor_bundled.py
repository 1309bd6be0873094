"""The monitor on the bundled tiny model: it separates steered from unsteered narration, and the
`gazeheads monitor` and `gazeheads eval monitor` commands write what they promise (kept small)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gazeheads as gh
from gazeheads import cli
from gazeheads.monitor import monitor, shadow_model
from gazeheads.monitor.metrics import auroc
from gazeheads.synth import make_strip


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    gm = gh.load()
    ranking = gh.discover(gm, gh.data.resolve_comics("synth:300000[0:8]", gm.layout.strip), progress=False)
    path = ranking.save(tmp_path_factory.mktemp("ranking") / "ranking.json")
    return gm, ranking, path


def test_detectors_separate_steered_from_unsteered_narration(bundled):
    gm, ranking, _ = bundled
    strips = [make_strip(100_000 + i) for i in range(6)]
    encoded = gm.encode(strips, gm.layout.narration_question)  # panel by panel: the gaze moves naturally
    shadow = shadow_model(gm)
    with monitor(gm, ranking, encoded, shadow=shadow) as watcher:
        ids = gm.generate_ids(encoded, max_new_tokens=19)
    clean, clean_text = watcher.result(ids), gm.decode(ids)
    targets = [gh.Panel(2 + i % 5) for i in range(len(strips))]
    with gh.steer(gm, ranking.top(4), targets, encoded), monitor(gm, ranking, encoded, shadow=shadow) as watcher:
        ids = gm.generate_ids(encoded, max_new_tokens=19)
    steered, steered_text = watcher.result(ids), gm.decode(ids)
    assert all(a != b for a, b in zip(clean_text, steered_text))  # the steering did redirect the narration
    for detector in ("cliff", "shadow"):
        negatives, positives = clean.generation_scores[detector], steered.generation_scores[detector]
        assert positives.min() > negatives.max(), detector
    assert auroc(clean.generation_scores["entropy"], steered.generation_scores["entropy"]) > 0.5


def _run(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


EVAL_ARGS = ["--n-fit", "2", "--n-strips", "2", "--n-scenes", "0", "--n-fit-scenes", "0", "--groups",
             "strength,schedule", "--strengths", "10000", "--bootstrap", "50", "--batch", "8"]


@pytest.fixture(scope="module")
def eval_run(bundled, tmp_path_factory):
    """One small `gazeheads eval monitor` run: 2 fitting and 2 held-out strips, the paper's setting and the
    two schedules; its argv and folder."""
    _, _, ranking = bundled
    run = tmp_path_factory.mktemp("monitor") / "run"
    argv = ["eval", "monitor", "--ranking", str(ranking), *EVAL_ARGS, "--out", str(run)]
    code = cli.main(argv)
    assert code == 0
    return argv, run


def test_eval_monitor_writes_a_resumable_run(eval_run, capsys):
    argv, run = eval_run
    for name in ("generations.jsonl", "monitor_calibration.json", "monitor_summary.json", "monitor_report.html",
                 "monitor_auroc_conditions.png", "monitor_onset.png"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "monitor_summary.json").read_text())
    assert summary["paper_setting"]["condition"] == "B=10000 boost_suppress gaze K=4 prefill+decode"
    assert set(summary["detectors"]) >= {"entropy", "cliff", "shadow"}
    assert set(summary["onset_delay"]) == set(summary["detectors"])
    records = (run / "generations.jsonl").read_text().splitlines()
    assert {json.loads(line)["split"] for line in records} == {"fit", "test"}

    code, _, err = _run(argv, capsys)  # a folder with records is not overwritten without being asked
    assert code == 2 and "--resume" in err
    code, out, err = _run(argv + ["--resume"], capsys)
    assert code == 0, err
    assert "cliff" in out and "AUROC" in out
    assert (run / "generations.jsonl").read_text().splitlines() == records  # nothing generated twice
    changed = [a if a != "10000" else "10" for a in argv]
    code, _, err = _run(changed + ["--resume"], capsys)
    assert code == 2 and "other settings" in err


def test_monitor_command_flags_a_steered_generation(bundled, eval_run, tmp_path, capsys):
    _, _, ranking = bundled
    _, run = eval_run
    code, out, err = _run(["monitor", "--comic", "synth:100005", "--ranking", str(ranking), "--panel", "4",
                           "--calibration", str(run / "monitor_calibration.json"), "--max-new-tokens", "19",
                           "--fpr", "0.5", "--out", str(tmp_path)], capsys)  # 2 fitting narrations: p >= 1/3
    assert code == 0, err
    assert "generation cliff" in out and "REDIRECTED" in out
    result = json.loads((tmp_path / "monitor.json").read_text())["result"]
    assert result["detectors"]["cliff"]["flagged"] == [True]


def test_bad_monitor_options_fail_before_the_model_loads(bundled, tmp_path, capsys):
    _, _, ranking = bundled
    base = ["eval", "monitor", "--ranking", str(ranking), "--out", str(tmp_path / "x")]
    for extra, message in ((["--fpr", "1.5"], "strictly between 0 and 1"),
                           (["--groups", "strength,bogus"], "Unknown or no monitor evaluation group"),
                           (["--monitor-ks", "1,99"], "99 heads"),
                           (["--comics", "synth:300000[0:12]", "--n-fit", "4"], "discovered on"),
                           (["--judge", "anthropic"], "not used by")):
        code, _, err = _run(base + extra, capsys)
        assert code == 2 and message in err and "loading" not in err, (extra, err)
    code, _, err = _run(["monitor", "--comic", "synth:100005", "--out", str(tmp_path / "y")], capsys)
    assert code == 2 and "needs its own gaze heads" in err


def test_report_section_is_built_from_the_run(eval_run):
    """The section is the report's own ReportSection, and the page of its own renders it with every figure."""
    from gazeheads.monitor.report import PAGE, monitor_report_section
    from gazeheads.report import ReportSection

    _, run = eval_run
    section = monitor_report_section(run)
    assert isinstance(section, ReportSection)
    page = (run / PAGE).read_text()
    assert page.count("data:image/png;base64,") == len(section.figures) and "paper&#39;s setting" in page
    assert section.anchor == "monitoring" and "observable attention" in section.intro
    assert "paper's setting" in section.tables[0].caption
    assert [f.path.name for f in section.figures] == ["monitor_auroc_strength.png", "monitor_auroc_conditions.png",
                                                      "monitor_onset.png"]
    assert all(f.path.is_file() for f in section.figures)
    assert np.isfinite([float(row[1].split()[0]) for row in section.tables[0].rows]).all()
