"""The command line on a tiny model saved to disk: discover, steer, track, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from gazeheads import cli
from gazeheads.data import save_strip_folder

from factories import save_qwen


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    save_qwen(root / "model", layers=2, heads=4, kv_heads=2, seed=3)
    rng = np.random.default_rng(0)
    for c in range(3):
        panels = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(6)]
        save_strip_folder(root / "comics" / f"c{c}", panels)
    return root


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_discover_steer_track(workspace, capsys):
    model, out = workspace / "model", workspace / "run"
    code, stdout, _ = run(capsys, "discover", "--model", model, "--comics", workspace / "comics",
                          "--strip-height", 64, "--out", out, "--show", 3)
    assert code == 0
    for name in ("ranking.json", "ranking.npz", "score_histogram.png", "score_map.png", "panel_matrices.png"):
        assert (out / name).stat().st_size > 0
    ranking = json.loads((out / "ranking.json").read_text())
    assert ranking["data"]["n_strips"] == 3
    best = ranking["top"][0]
    assert f"{best['layer']:>5} {best['head']:>4}" in stdout

    code, stdout, _ = run(capsys, "steer", "--model", model, "--comic", workspace / "comics" / "c1",
                          "--strip-height", 64, "--ranking", out / "ranking.json", "-k", 2, "--panel", 3,
                          "--baseline", "--json", "--max-new-tokens", 4)
    assert code == 0
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["k"] == 2 and result["target"] == "Panel(index=3)" and "baseline" in result

    code, stdout, _ = run(capsys, "track", "--model", model, "--comic", workspace / "comics" / "c2",
                          "--strip-height", 64, "--ranking", out / "ranking.json", "-k", 2,
                          "--schedule", "0:2,2:5", "--max-new-tokens", 4, "--out", workspace / "track")
    assert code == 0
    trace = json.loads((workspace / "track" / "track.json").read_text())["trace"]
    focus = np.array(trace["normalised"])[0].argmax(-1)
    assert focus.tolist() == [1, 1, 4, 4]  # the steered heads follow the schedule
    assert (workspace / "track" / "track_staircase.png").stat().st_size > 0


@pytest.mark.parametrize("case,message", [
    ("missing_panel", "missing panel(s) p6"),
    ("k_too_large", "K=99 heads asked of a model with 8 heads"),
    ("no_ranking", "needs a ranking"),
    ("bad_box", "covers no image token"),
])
def test_errors_print_problem_and_fix_without_traceback(workspace, capsys, case, message):
    model = workspace / "model"
    broken = workspace / "broken"
    if not broken.exists():
        save_strip_folder(broken, [Image.new("RGB", (40, 40)) for _ in range(5)])
    base = ["steer", "--model", model, "--strip-height", 64, "--heads", "all"]
    argv = {
        "missing_panel": base + ["--comic", broken, "--panel", 1],
        "k_too_large": ["discover", "--model", model, "--comics", workspace / "comics", "--strip-height", 64,
                        "--out", workspace / "tmp", "-k", 99, "--no-plots"],
        "no_ranking": ["steer", "--model", model, "--comic", workspace / "comics" / "c0", "--panel", 1],
        "bad_box": base + ["--comic", workspace / "comics" / "c0", "--box", "0,0,2,2"],
    }[case]
    code, _, stderr = run(capsys, *argv)
    assert code == 2
    assert stderr.splitlines()[-2].startswith("error: ") and stderr.splitlines()[-1].startswith("fix: ")
    assert message in stderr
    assert "Traceback" not in stderr


def test_ranking_of_another_model_is_refused(workspace, capsys, tmp_path):
    save_qwen(tmp_path / "other", layers=3, heads=4, kv_heads=2)
    ranking = workspace / "run" / "ranking.json"
    if not ranking.exists():
        pytest.skip("needs the discover test's ranking")
    code, _, stderr = run(capsys, "steer", "--model", tmp_path / "other", "--comic", workspace / "comics" / "c0",
                          "--strip-height", 64, "--ranking", ranking, "--panel", 1)
    assert code == 2 and "Run `gazeheads discover` on this model" in stderr


def test_unsupported_architecture_fails_before_loading(tmp_path, capsys):
    (tmp_path / "llava").mkdir()
    (tmp_path / "llava" / "config.json").write_text(json.dumps(
        {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 10}))
    Image.new("RGB", (64, 64)).save(tmp_path / "x.png")
    code, _, stderr = run(capsys, "steer", "--model", tmp_path / "llava", "--image", tmp_path / "x.png",
                          "--box", "0,0,1,1", "--heads", "all")
    assert code == 2 and "Unsupported architecture: LlamaForCausalLM" in stderr


def test_every_option_is_explained():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    assert set(subparsers) >= {"discover", "steer", "track"}
    assert set(subparsers) >= {"eval", "run", "data"}

    def check(name, parser):
        for action in parser._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"
            if isinstance(action, type(next(a for a in cli.build_parser()._actions if a.dest == "command"))):
                for sub_name, sub in action.choices.items():
                    check(f"{name} {sub_name}", sub)

    for name, sub in subparsers.items():
        check(name, sub)


def test_console_script_help_runs():
    out = subprocess.run([sys.executable, "-m", "gazeheads.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "discover" in out.stdout and "track" in out.stdout
