"""A catalogue of bad inputs (issue 15): every one gets the problem and the fix, never a traceback.

CLI cases run `gazeheads` in-process on a workspace of files made here; each must exit non-zero
with `error:` and `fix:` lines, print no traceback, leave every existing file byte-for-byte as it
was, and (for mistakes the command can see without a model) fail before the model loads. API cases
must raise the package's own errors, with a fix.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gazeheads as gh
from gazeheads import cli
from gazeheads.data import save_strip_folder
from gazeheads.synth import write_synthetic_comics


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG file whose header declares `width` x `height` pixels (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    write_synthetic_comics(root / "comics", 2, seed=100_000)
    save_strip_folder(root / "broken", [Image.new("RGB", (64, 64)) for _ in range(5)])  # p6 missing
    huge_comic = root / "huge_comic"
    write_synthetic_comics(huge_comic, 1, seed=100_005)
    png_header_only(next((huge_comic).iterdir()) / "p3.png", 20000, 20000)
    png_header_only(root / "huge.png", 20000, 20000)
    (root / "not_an_image.png").write_text("hello")
    Image.new("RGB", (64, 64), (200, 30, 30)).save(root / "small.png")
    (root / "a_file.txt").write_text("I am a file")
    (root / "empty_model").mkdir()
    # rankings: a good one, and broken variants
    gm = gh.load()
    strips = gh.data.resolve_comics("synth:300000[0:2]", gm.layout.strip)
    good = gh.discover(gm, strips, progress=False).save(root / "rank" / "ranking.json")
    (root / "list.json").write_text("[1, 2, 3]")
    (root / "binary.json").write_bytes(bytes(range(256)))
    meta = json.loads(good.read_text())
    (root / "noarrays").mkdir()
    (root / "noarrays" / "ranking.json").write_text(json.dumps(meta))
    (root / "corrupt").mkdir()
    (root / "corrupt" / "ranking.json").write_text(json.dumps(meta))
    (root / "corrupt" / "ranking.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (root / "disagree").mkdir()
    (root / "disagree" / "ranking.json").write_text(json.dumps(meta))
    np.savez(root / "disagree" / "ranking.npz", matrices=np.zeros((3, 8, 6, 6), dtype=np.float32))
    (root / "other_scores").mkdir()
    (root / "other_scores" / "ranking.json").write_text(json.dumps({**meta, "scores": [[0.5] * 8] * 6}))
    np.savez(root / "other_scores" / "ranking.npz", **dict(np.load(good.with_suffix(".npz"))))
    no_model = dict(meta)
    no_model.pop("model")
    (root / "no_model.json").write_text(json.dumps(no_model))
    # an evaluation folder that already holds records
    (root / "done").mkdir()
    (root / "done" / "generations.jsonl").write_text('{"key": "narration|baseline|k=0|s|-"}\n')
    # COCO annotations
    coco = {"images": [{"id": 1, "file_name": "small.png", "width": 64, "height": 64}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 99, "bbox": [1, 1, 20, 20], "area": 400}],
            "categories": [{"id": 1, "name": "thing"}]}
    (root / "coco_missing_category.json").write_text(json.dumps(coco))
    (root / "coco_empty.json").write_text(json.dumps({**coco, "annotations": []}))
    return root


def R(ws: Path, name: str = "rank/ranking.json") -> str:
    return str(ws / name)


# (id, argv builder, expected message, fails before the model loads)
CLI_CASES = [
    # images and strips
    ("huge-panel", lambda w: ["discover", "--comics", str(w / "huge_comic"), "--out", str(w / "o1")], "MP", True),
    ("huge-image", lambda w: ["steer", "--image", str(w / "huge.png"), "--box", "0,0,5,5", "--heads", "all"], "MP", True),
    ("not-an-image", lambda w: ["steer", "--image", str(w / "not_an_image.png"), "--box", "0,0,5,5", "--heads", "all"],
     "Cannot read image", True),
    ("image-is-folder", lambda w: ["steer", "--image", str(w / "comics"), "--box", "0,0,5,5", "--heads", "all"],
     "folder", True),
    ("image-missing", lambda w: ["steer", "--image", str(w / "nope.png"), "--box", "0,0,5,5", "--heads", "all"],
     "does not exist", True),
    ("comic-and-image", lambda w: ["steer", "--image", str(w / "small.png"), "--comic", "synth:1", "--panel", "1",
                                   "--heads", "all"], "Both --comic and --image", True),
    ("no-image", lambda w: ["steer", "--panel", "1", "--heads", "all"], "No image given", True),
    ("missing-panel", lambda w: ["steer", "--comic", str(w / "broken"), "--panel", "1", "--heads", "all"],
     "missing panel(s) p6", True),
    ("comic-missing", lambda w: ["steer", "--comic", str(w / "nowhere"), "--panel", "1", "--heads", "all"],
     "no such folder", True),
    ("panel-beyond-strip", lambda w: ["steer", "--comic", "synth:1", "--panel", "9", "--heads", "all"],
     "Panel 9 asked of a 6-panel strip", True),
    ("panel-zero", lambda w: ["steer", "--comic", "synth:1", "--panel", "0", "--heads", "all"], "--panel 0", True),
    ("panel-on-image", lambda w: ["steer", "--image", str(w / "small.png"), "--panel", "2", "--heads", "all"],
     "needs a comic strip", True),
    ("box-outside", lambda w: ["steer", "--comic", "synth:1", "--box", "500,0,600,10", "--heads", "all"],
     "outside the", True),
    ("box-negative-outside", lambda w: ["steer", "--comic", "synth:1", "--box", "-100,-100,-5,-5", "--heads", "all"],
     "outside the", True),
    ("box-malformed", lambda w: ["steer", "--comic", "synth:1", "--box", "1,2,3", "--heads", "all"],
     "Cannot read box", True),
    ("box-no-area", lambda w: ["steer", "--comic", "synth:1", "--box", "5,5,1,1", "--heads", "all"], "no area", True),
    ("box-nan", lambda w: ["steer", "--comic", "synth:1", "--box", "nan,0,5,5", "--heads", "all"], "finite", True),
    ("schedule-malformed", lambda w: ["steer", "--comic", "synth:1", "--schedule", "0-3", "--heads", "all"],
     "Cannot read schedule", True),
    ("schedule-late-start", lambda w: ["steer", "--comic", "synth:1", "--schedule", "4:3", "--heads", "all"],
     "Start the schedule at step 0", True),
    ("schedule-panel-beyond", lambda w: ["steer", "--comic", "synth:1", "--schedule", "0:1,3:8", "--heads", "all"],
     "Panel 8 asked", True),
    ("schedule-repeat", lambda w: ["steer", "--comic", "synth:1", "--schedule", "0:1,0:2", "--heads", "all"],
     "names one step twice", True),
    ("no-target", lambda w: ["steer", "--comic", "synth:1", "--heads", "all"], "one of the arguments", True),
    ("two-targets", lambda w: ["steer", "--comic", "synth:1", "--panel", "1", "--box", "0,0,5,5"], "not allowed", True),
    # numbers
    ("max-new-tokens-0", lambda w: ["steer", "--comic", "synth:1", "--panel", "1", "--heads", "all",
                                    "--max-new-tokens", "0"], "--max-new-tokens 0", True),
    ("k-0", lambda w: ["steer", "--comic", "synth:1", "--panel", "1", "--ranking", R(w), "-k", "0"], "-k 0", True),
    ("k-too-large", lambda w: ["steer", "--comic", "synth:1", "--panel", "1", "--ranking", R(w), "-k", "99"],
     "K=99 heads asked of a model with 48 heads", True),
    ("k-not-a-number", lambda w: ["steer", "--comic", "synth:1", "--panel", "1", "-k", "many"], "invalid int", True),
    ("strength-negative", lambda w: ["steer", "--comic", "synth:1", "--panel", "1", "--heads", "all",
                                     "--strength", "-3"], "positive finite", True),
    ("strength-inf", lambda w: ["steer", "--comic", "synth:1", "--panel", "1", "--heads", "all", "--strength", "inf"],
     "positive finite", True),
    ("phase-bogus", lambda w: ["steer", "--comic", "synth:1", "--panel", "1", "--phase", "later"], "invalid choice", True),
    ("percentile-negative", lambda w: ["steer", "--comic", "synth:1", "--panel", "1", "--ranking", R(w),
                                       "--heads", "random", "--control-percentile", "-5"], "percentile", True),
    ("percentile-over-100", lambda w: ["steer", "--comic", "synth:1", "--panel", "1", "--ranking", R(w),
                                       "--heads", "random", "--control-percentile", "150"], "percentile", True),
    ("strip-height-huge", lambda w: ["discover", "--comics", "synth", "--strip-height", "20000", "--out", str(w / "o2")],
     "Strip height 20000", True),
    ("strip-height-0", lambda w: ["discover", "--comics", "synth", "--strip-height", "0", "--out", str(w / "o3")],
     "Strip height 0", True),
    ("strip-gap-too-wide", lambda w: ["discover", "--comics", "synth", "--strip-gap", "40", "--out", str(w / "o4")],
     "band of 40 px", True),
    ("n-panels-0", lambda w: ["discover", "--comics", "synth", "--n-panels", "0", "--out", str(w / "o5")],
     "0 panels per strip", True),
    ("n-strips-0", lambda w: ["discover", "--comics", "synth", "--n-strips", "0", "--out", str(w / "o6")],
     "--n-strips 0", True),
    ("show-0", lambda w: ["discover", "--comics", "synth", "--show", "0", "--out", str(w / "o7")], "--show 0", True),
    # data specs
    ("synth-bad-seed", lambda w: ["discover", "--comics", "synth:abc", "--out", str(w / "o8")], "seed", True),
    ("slice-empty", lambda w: ["discover", "--comics", "synth:3[5:2]", "--out", str(w / "o9")], "selects no strip", True),
    ("slice-negative", lambda w: ["discover", "--comics", "synth[-3:]", "--out", str(w / "o10")], "counts from the end",
     True),
    ("hf-no-name", lambda w: ["discover", "--comics", "hf:", "--out", str(w / "o11")], "No dataset name", True),
    ("comics-no-root", lambda w: ["discover", "--comics", "comics:", "--out", str(w / "o12")], "No corpus folder", True),
    ("comics-missing-root", lambda w: ["discover", "--comics", f"comics:{w / 'nowhere'}", "--out", str(w / "o13")],
     "no such COMICS corpus folder", True),
    ("comics-folder-missing", lambda w: ["discover", "--comics", str(w / "nowhere"), "--out", str(w / "o14")],
     "no such folder", True),
    ("comics-is-a-file", lambda w: ["discover", "--comics", str(w / "a_file.txt"), "--out", str(w / "o15")],
     "no such folder", True),
    ("comics-without-panels", lambda w: ["discover", "--comics", str(w / "empty_model"), "--out", str(w / "o16")],
     "No comic folders", True),
    ("comics-slice-beyond", lambda w: ["discover", "--comics", f"{w / 'comics'}[5:9]", "--out", str(w / "o17")],
     "selects none", True),
    # models and devices
    ("model-empty-folder", lambda w: ["discover", "--model", str(w / "empty_model"), "--comics", "synth",
                                      "--out", str(w / "o18")], "holds no config.json", True),
    ("model-is-a-file", lambda w: ["discover", "--model", str(w / "a_file.txt"), "--comics", "synth",
                                   "--out", str(w / "o19")], "is a file", True),
    ("model-missing-path", lambda w: ["discover", "--model", str(w / "no" / "such" / "model"), "--comics", "synth",
                                      "--out", str(w / "o20")], "no such folder", True),
    ("device-cuda-absent", lambda w: ["discover", "--comics", "synth", "--device", "cuda", "--out", str(w / "o21")],
     "no usable CUDA GPU", True),
    ("device-bogus", lambda w: ["discover", "--comics", "synth", "--device", "bogus", "--out", str(w / "o22")],
     "not a torch device", True),
    ("dtype-bogus", lambda w: ["discover", "--comics", "synth", "--dtype", "int3", "--out", str(w / "o23")],
     "invalid choice", True),
    # rankings
    ("ranking-missing", lambda w: ["steer", "--comic", "synth:1", "--panel", "1", "--ranking", R(w, "nope.json")],
     "Ranking not found", True),
    ("ranking-is-folder", lambda w: ["steer", "--comic", "synth:1", "--panel", "1", "--ranking", R(w, "rank")],
     "is a folder", True),
    ("ranking-json-list", lambda w: ["steer", "--comic", "synth:1", "--panel", "1", "--ranking", R(w, "list.json")],
     "not a gazeheads ranking", True),
    ("ranking-binary", lambda w: ["steer", "--comic", "synth:1", "--panel", "1", "--ranking", R(w, "binary.json")],
     "not a JSON ranking", True),
    ("ranking-no-arrays", lambda w: ["steer", "--comic", "synth:1", "--panel", "1",
                                     "--ranking", R(w, "noarrays/ranking.json")], "is missing next to", True),
    ("ranking-corrupt-npz", lambda w: ["steer", "--comic", "synth:1", "--panel", "1",
                                       "--ranking", R(w, "corrupt/ranking.json")], "not a readable .npz", True),
    ("ranking-parts-disagree", lambda w: ["steer", "--comic", "synth:1", "--panel", "1",
                                          "--ranking", R(w, "disagree/ranking.json")], "inconsistent", True),
    ("ranking-scores-disagree", lambda w: ["steer", "--comic", "synth:1", "--panel", "1",
                                           "--ranking", R(w, "other_scores/ranking.json")], "do not match", True),
    ("ranking-without-model", lambda w: ["steer", "--comic", "synth:1", "--panel", "1",
                                         "--ranking", R(w, "no_model.json")], "lacks its 'model'", True),
    ("gaze-without-ranking", lambda w: ["steer", "--comic", "synth:1", "--panel", "1"], "needs a ranking", True),
    ("random-without-ranking", lambda w: ["track", "--comic", "synth:1", "--heads", "random", "--out", str(w / "t1")],
     "needs a ranking", True),
    # outputs
    ("out-is-a-file", lambda w: ["discover", "--comics", "synth", "--out", str(w / "a_file.txt")],
     "existing file, not a folder", True),
    ("track-out-is-a-file", lambda w: ["track", "--comic", "synth:1", "--heads", "all", "--out", str(w / "a_file.txt")],
     "existing file, not a folder", True),
    ("discover-overwrite", lambda w: ["discover", "--comics", "synth", "--out", str(w / "rank")],
     "Pass --overwrite", True),
    ("eval-rerun-without-resume", lambda w: ["eval", "narration", "--ranking", R(w), "--comics", "synth",
                                             "--n-strips", "1", "--out", str(w / "done")], "--resume", True),
    ("eval-resume-and-restart", lambda w: ["eval", "narration", "--ranking", R(w), "--comics", "synth", "--n-strips",
                                           "1", "--out", str(w / "done"), "--resume", "--restart"],
     "Both --resume and --restart", True),
    ("run-name-escapes", lambda w: ["run", "--quick", "--out-root", str(w / "runs"), "--name", "../escape"],
     "not a plain folder name", True),
    ("run-name-nested", lambda w: ["run", "--quick", "--out-root", str(w / "runs"), "--name", "a/b"],
     "not a plain folder name", True),
    ("synth-out-is-a-file", lambda w: ["data", "synth", "--out", str(w / "a_file.txt")], "existing file", True),
    ("synth-nothing", lambda w: ["data", "synth", "--out", str(w / "s1"), "--n-strips", "0", "--scenes", "0"],
     "Nothing to write", True),
    ("synth-negative", lambda w: ["data", "synth", "--out", str(w / "s2"), "--n-strips", "-1"], "negative", True),
    ("synth-over-existing", lambda w: ["data", "synth", "--out", str(w), "--n-strips", "1", "--scenes", "0"],
     "Pass --overwrite", True),
    # evaluation settings
    ("eval-n-strips-0", lambda w: ["eval", "vqa", "--ranking", R(w), "--comics", "synth", "--n-strips", "0",
                                   "--out", str(w / "e1")], "--n-strips 0", True),
    ("eval-ks-bad", lambda w: ["eval", "topk", "--ranking", R(w), "--comics", "synth", "--ks", "0,abc",
                               "--out", str(w / "e2")], "--ks", True),
    ("eval-ks-zero", lambda w: ["eval", "topk", "--ranking", R(w), "--comics", "synth", "--ks", "0,4",
                                "--out", str(w / "e3")], "at least 1", True),
    ("eval-conditions-bogus", lambda w: ["eval", "vqa", "--ranking", R(w), "--comics", "synth", "--conditions",
                                         "gaze,lucky", "--out", str(w / "e4")], "lucky", True),
    ("eval-conditions-empty", lambda w: ["eval", "vqa", "--ranking", R(w), "--comics", "synth", "--conditions", ",",
                                         "--out", str(w / "e5")], "condition", True),
    ("eval-judge-bogus", lambda w: ["eval", "vqa", "--ranking", R(w), "--comics", "synth", "--judge", "oracle",
                                    "--out", str(w / "e6")], "oracle", True),
    ("eval-segments-0", lambda w: ["eval", "dynamic", "--ranking", R(w), "--comics", "synth", "--segment-tokens", "0",
                                   "--out", str(w / "e7")], "--segment-tokens 0", True),
    ("eval-dynamic-max-tokens", lambda w: ["eval", "dynamic", "--ranking", R(w), "--comics", "synth",
                                           "--max-new-tokens", "9", "--out", str(w / "e8")], "segment per panel", True),
    ("eval-batch-0", lambda w: ["eval", "vqa", "--ranking", R(w), "--comics", "synth", "--strips-per-batch", "0",
                                "--out", str(w / "e9")], "--strips-per-batch 0", True),
    ("eval-repetition-0", lambda w: ["eval", "vqa", "--ranking", R(w), "--comics", "synth", "--repetition-penalty",
                                     "0", "--out", str(w / "e10")], "repetition_penalty", True),
    ("eval-overlap", lambda w: ["eval", "vqa", "--ranking", R(w), "--comics", "synth:300000", "--n-strips", "2",
                                "--out", str(w / "e11")], "discovered on", True),
    ("eval-coco-missing-args", lambda w: ["eval", "coco", "--ranking", R(w), "--out", str(w / "e12")],
     "coco needs --coco-instances", True),
    ("eval-coco-missing-file", lambda w: ["eval", "coco", "--ranking", R(w), "--coco-instances", str(w / "nope.json"),
                                          "--coco-images", str(w), "--out", str(w / "e13")], "does not exist", True),
    ("eval-coco-images-not-folder", lambda w: ["eval", "coco", "--ranking", R(w), "--coco-instances",
                                               str(w / "coco_empty.json"), "--coco-images", str(w / "a_file.txt"),
                                               "--out", str(w / "e14")], "is not a folder", True),
    ("eval-coco-missing-category", lambda w: ["eval", "coco", "--ranking", R(w), "--coco-instances",
                                              str(w / "coco_missing_category.json"), "--coco-images", str(w),
                                              "--out", str(w / "e15")], "category", False),
    ("eval-coco-empty", lambda w: ["eval", "coco", "--ranking", R(w), "--coco-instances", str(w / "coco_empty.json"),
                                   "--coco-images", str(w), "--out", str(w / "e16")], "no objects", False),
    # presence, run, demo
    ("presence-alpha", lambda w: ["presence", "--ranking", R(w), "--alpha", "2", "--out", str(w / "p1")],
     "--alpha 2", True),
    ("presence-permutations-0", lambda w: ["presence", "--ranking", R(w), "--permutations", "0",
                                           "--out", str(w / "p2")], "--permutations 0", True),
    ("presence-nothing", lambda w: ["presence", "--out", str(w / "p3")], "Nothing to test", True),
    ("run-k-0", lambda w: ["run", "--quick", "-k", "0", "--out-root", str(w / "runs")], "at least 1", True),
    ("run-scenes-negative", lambda w: ["run", "--quick", "--scenes", "-1", "--out-root", str(w / "runs")],
     "--scenes -1", True),
    ("run-judge-bogus", lambda w: ["run", "--quick", "--judge", "oracle", "--out-root", str(w / "runs")],
     "oracle", True),
    ("run-hub-model-without-comics", lambda w: ["run", "--model", "someone/some-vlm", "--out-root", str(w / "runs")],
     "needs real strips", True),
    ("demo-port", lambda w: ["demo", "--port", "70000"], "--port 70000", True),
    ("demo-upload-size", lambda w: ["demo", "--max-upload-mb", "0"], "--max-upload-mb", True),
    ("unknown-command", lambda w: ["explain"], "invalid choice", True),
    ("unknown-option", lambda w: ["discover", "--comics", "synth", "--colour", "red"], "unrecognized arguments", True),
]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case, argv, message, early", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_bad_cli_input_gets_the_problem_and_the_fix(ws, capsys, case, argv, message, early):
    before = snapshot(ws)
    try:
        code = cli.main(argv(ws))
    except SystemExit as exc:  # argparse's own errors exit through our Parser
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code not in (0, None), err
    assert "Traceback" not in err
    assert lines[-2].startswith("error: ") and lines[-1].startswith("fix: "), err[-600:]
    assert message in err, err[-600:]
    if early:
        assert "loading" not in err, "the model was loaded before the mistake was caught"
    assert snapshot(ws) == before, "an existing file was changed or deleted"


def _gm():
    return gh.load()


API_CASES = [
    ("panel-str", lambda: gh.Panel("3"), "whole number"),
    ("panel-zero", lambda: gh.Panel(0), "counted from 1"),
    ("panel-bool", lambda: gh.Panel(True), "whole number"),
    ("box-str", lambda: gh.Box("a", 0, 5, 5), "finite number"),
    ("box-no-area", lambda: gh.Box(5, 5, 5, 9), "no area"),
    ("box-inf", lambda: gh.Box(0, 0, float("inf"), 5), "finite number"),
    ("schedule-empty", lambda: gh.Schedule([]), "empty schedule"),
    ("schedule-late", lambda: gh.Schedule([(2, gh.Panel(1))]), "step 0"),
    ("schedule-not-region", lambda: gh.Schedule([(0, "panel 1")]), "not a region"),
    ("schedule-negative-step", lambda: gh.Schedule([(-1, gh.Panel(1))]), "not a generation step"),
    ("schedule-not-pairs", lambda: gh.Schedule([1, 2]), "pairs"),
    ("schedule-every-0", lambda: gh.Schedule.every(0, [gh.Panel(1)]), "every 0"),
    ("headspec-k-0", lambda: gh.HeadSpec(k=0), "K must be"),
    ("headspec-k-str", lambda: gh.HeadSpec(k="10"), "K must be"),
    ("headspec-percentile-negative", lambda: gh.HeadSpec(percentile=-1), "percentile"),
    ("headspec-kind", lambda: gh.HeadSpec("best"), "Unknown head set"),
    ("steerspec-mode", lambda: gh.SteerSpec(mode="push"), "Unknown steering mode"),
    ("steerspec-phase", lambda: gh.SteerSpec(phase="later"), "Unknown steering phase"),
    ("steerspec-numerics", lambda: gh.SteerSpec(numerics="fast"), "Unknown numerics"),
    ("steerspec-strength-str", lambda: gh.SteerSpec(strength="big"), "must be a number"),
    ("steerspec-strength-zero", lambda: gh.SteerSpec(strength=0), "positive finite"),
    ("steerspec-from-dict-unknown", lambda: gh.SteerSpec.from_dict({"mode": "boost_suppress", "size": 1}),
     "Unknown SteerSpec field"),
    ("layout-height", lambda: gh.StripLayout(height=0), "Strip height"),
    ("layout-gap", lambda: gh.StripLayout(gap=33), "band of 33 px"),
    ("layout-panels", lambda: gh.StripLayout(n_panels=0), "panels per strip"),
    ("headset-empty", lambda: gh.HeadSet.of([], _gm().shape), "empty head set"),
    ("headset-missing-head", lambda: gh.HeadSet.of([(99, 0)], _gm().shape), "does not exist"),
    ("headset-duplicate", lambda: gh.HeadSet.of([(0, 0), (0, 0)], _gm().shape), "twice"),
    ("encode-none", lambda: _gm().encode(None, "What?"), "one item or a list"),
    ("encode-path", lambda: _gm().encode("strip.png", "What?"), "not a PIL image"),
    ("encode-no-question", lambda: _gm().encode(Image.new("RGB", (64, 64)), ""), "non-empty string"),
    ("encode-counts", lambda: _gm().encode([Image.new("RGB", (64, 64))] * 2, ["a?", "b?", "c?"]), "2 images for 3"),
    ("encode-huge", lambda: _gm().encode(Image.new("1", (10000, 5000)), "What?"), "MP"),
    ("generate-zero", lambda: _gm().generate(_gm().encode(Image.new("RGB", (64, 64)), "What?"), 0), "max_new_tokens"),
    ("resolve-synth-endless", lambda: gh.data.resolve_comics("synth"), "endless"),
    ("resolve-limit-0", lambda: gh.data.resolve_comics("synth", limit=0), "at least 1"),
    ("stitch-nothing", lambda: gh.data.stitch([]), "No panels"),
    ("ranking-top-0", lambda: _ranking().top(0), "K=0"),
    ("ranking-control-percentile", lambda: _ranking().select(gh.HeadSpec("random", k=2, percentile=-5)), "percentile"),
    ("load-missing", lambda: gh.load("/no/such/model/folder"), "Cannot load a model config"),
    ("steer-not-heads", lambda: _steer(heads="top"), "Not a head set"),
    ("steer-target-count", lambda: _steer(targets=[gh.Panel(1)] * 3), "3 targets for a batch of 2"),
    ("steer-bad-target", lambda: _steer(targets="panel 2"), "Not a steering target"),
    ("steer-bad-option", lambda: _steer(push=3), "Unknown steering option"),
    ("steer-nested", lambda: _steer(nested=True), "already being steered"),
    ("track-region-rows", lambda: _track_rows(), "region lists for a batch"),
]

_CACHE: dict = {}


def _ranking():
    if "ranking" not in _CACHE:
        gm = _gm()
        _CACHE["ranking"] = gh.discover(gm, gh.data.resolve_comics("synth:300000[0:1]", gm.layout.strip),
                                        progress=False)
    return _CACHE["ranking"]


def _steer(heads=None, targets=None, nested=False, **options):
    gm = _gm()
    strip = gh.data.resolve_comics("synth:1", gm.layout.strip, limit=1)[0]
    enc = gm.encode([strip, strip], "What?")
    heads = heads if heads is not None else gh.HeadSet.of([(0, 0)], gm.shape)
    targets = targets if targets is not None else gh.Panel(1)
    with gh.steer(gm, heads, targets, enc, **options):
        if nested:
            with gh.steer(gm, heads, targets, enc):
                pass


def _track_rows():
    gm = _gm()
    strip = gh.data.resolve_comics("synth:1", gm.layout.strip, limit=1)[0]
    enc = gm.encode([strip, strip], "What?")
    with gh.track(gm, gh.HeadSet.of([(0, 0)], gm.shape), enc, regions=[[gh.Panel(1)]] * 3):
        pass


@pytest.mark.parametrize("case, call, message", API_CASES, ids=[c[0] for c in API_CASES])
def test_bad_api_input_raises_the_packages_errors(case, call, message):
    with pytest.raises(gh.GazeheadsError) as info:
        call()
    assert message in str(info.value), str(info.value)
    assert info.value.fix, "every error says how to fix it"


def test_the_catalogue_is_large():
    assert len(CLI_CASES) + len(API_CASES) >= 80
