"""One way through (issue 12): one model layout, one --comics grammar for every command, one verdict cache.

The bundled model states its layout (64-px strips, no band) in its folder's gazeheads.json; every
path reads it from `GazeModel.layout`, so folder strips written by `gazeheads data synth` and
`synth:` strips of the same seeds are the same images and get the same answers and scores.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import gazeheads as gh
from gazeheads import cli, prompts
from gazeheads.data import resolve_comics, save_strip_folder
from gazeheads.discovery import strip_matrices
from gazeheads.synth import write_synthetic_comics


@pytest.fixture(scope="module")
def bundled():
    return gh.load()


def test_folder_strips_equal_synth_strips_on_the_bundled_model(bundled, tmp_path):
    gm = bundled
    write_synthetic_comics(tmp_path / "comics", 3, seed=100_000)
    folder = resolve_comics(tmp_path / "comics", gm.layout.strip)
    synth = resolve_comics("synth:100000[0:3]", gm.layout.strip)
    assert folder.ids == synth.ids == ["synth_100000", "synth_100001", "synth_100002"]
    for a, b in zip(folder, synth):
        assert a.image.size == b.image.size == (384, 64)  # 6 panels of 64 px, no band: the bundled layout
        assert a.image.tobytes() == b.image.tobytes() and a.panel_boxes == b.panel_boxes
        assert np.array_equal(strip_matrices(gm, a), strip_matrices(gm, b))
    question = gm.layout.narration_question
    answers = [gm.generate(gm.encode(list(strips), question), max_new_tokens=4) for strips in (folder, synth)]
    assert answers[0] == answers[1]
    assert answers[0][0].startswith(synth[0].captions[0])  # and they are right: unsteered, the first panel


def test_every_command_reads_the_models_layout(bundled, tmp_path, capsys):
    """`steer --comic FOLDER` on a `data synth` folder names the panel's object (wrong before: 6-px gaps)."""
    assert cli.main(["data", "synth", "--out", str(tmp_path), "--n-strips", "1", "--scenes", "0",
                     "--seed", "100003"]) == 0
    comic = tmp_path / "comics" / "synth_100003"
    strip = resolve_comics("synth:100003", bundled.layout.strip, limit=1)[0]
    assert cli.main(["steer", "--comic", str(comic), "--heads", "all", "--panel", "2", "--max-new-tokens", "2",
                     "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["question"] == bundled.layout.narration_question
    ranking_dir = tmp_path / "rank"
    assert cli.main(["discover", "--comics", "synth:300000[0:4]", "--out", str(ranking_dir), "--no-plots"]) == 0
    capsys.readouterr()
    assert cli.main(["steer", "--comic", str(comic), "--ranking", str(ranking_dir / "ranking.json"), "-k", "4",
                     "--panel", "2", "--max-new-tokens", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["steered"].startswith(strip.captions[1]), (result["steered"], strip.captions)


# --- one --comics grammar for every command --------------------------------------------------------


def _hub_dataset(n_rows: int = 3):
    datasets = pytest.importorskip("datasets")
    from gazeheads.synth import make_strip_panels

    columns: dict = {"comic_id": [f"row{r}" for r in range(n_rows)]}
    for k in range(1, 7):
        columns[f"panel_{k}"] = [make_strip_panels(400 + r)[0][k - 1] for r in range(n_rows)]
        columns[f"caption_{k}"] = [make_strip_panels(400 + r)[1][k - 1] for r in range(n_rows)]
    features = {"comic_id": datasets.Value("string"), **{f"panel_{k}": datasets.Image() for k in range(1, 7)},
                **{f"caption_{k}": datasets.Value("string") for k in range(1, 7)}}
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


@pytest.fixture(scope="module")
def forms(tmp_path_factory, bundled):
    """Each --comics form naming 2 strips, and the comic ids each must give."""
    root = tmp_path_factory.mktemp("forms")
    write_synthetic_comics(root / "folder", 3, seed=500)
    corpus = root / "corpus"
    for page in range(3):
        (corpus / "book").mkdir(parents=True, exist_ok=True)
        for panel, image in enumerate(gh.synth.make_strip_panels(600 + page)[0]):
            image.save(corpus / "book" / f"{page}_{panel}.png")
    return {
        "folder": (f"{root / 'folder'}[1:3]", ["synth_000501", "synth_000502"]),
        "hf": ("hf:test/strips[1:3]", ["row1", "row2"]),
        "comics": (f"comics:{corpus}[0:2]", None),  # sampled pages: any 2 distinct
        "synth": ("synth:700[0:2]", ["synth_000700", "synth_000701"]),
    }


@pytest.fixture
def fake_hub(monkeypatch):
    import gazeheads.data.hub as hub

    dataset = _hub_dataset()
    monkeypatch.setattr(hub, "open_dataset", lambda name, split="train", given=None: dataset)


@pytest.mark.parametrize("form", ["folder", "hf", "comics", "synth"])
def test_every_comics_form_works_in_discover_eval_and_presence(forms, form, fake_hub, tmp_path, capsys):
    spec, ids = forms[form]
    out = tmp_path / "discover"
    assert cli.main(["discover", "--comics", spec, "--out", str(out), "--no-plots"]) == 0
    ranking = gh.Ranking.load(out / "ranking.json")
    assert len(ranking.strips) == 2 and (ids is None or ranking.strip_ids == ids)
    assert cli.main(["presence", "--comics", spec, "--permutations", "20", "--out", str(tmp_path / "presence")]) == 0
    capsys.readouterr()
    if form == "comics":  # the raw corpus has no captions: the ground-truth judge refuses before the model loads
        code = cli.main(["eval", "vqa", "--ranking", str(out / "ranking.json"), "--comics", spec,
                         "--conditions", "gaze", "--out", str(tmp_path / "eval")])
        err = capsys.readouterr().err
        assert code == 2 and "needs per-panel captions" in err and "loading" not in err
        return
    # evaluating on the discovery strips is refused; on another slice of the same form it runs
    code = cli.main(["eval", "vqa", "--ranking", str(out / "ranking.json"), "--comics", spec,
                     "--conditions", "gaze", "--out", str(tmp_path / "overlap")])
    assert code == 2 and "discovered on" in capsys.readouterr().err
    disjoint = {"folder": f"{spec.split('[')[0]}[0:1]", "hf": "hf:test/strips[0:1]", "synth": "synth:700[2:3]"}[form]
    assert cli.main(["eval", "vqa", "--ranking", str(out / "ranking.json"), "--comics", disjoint,
                     "--conditions", "gaze", "--out", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["results"][0]["n_clusters"] == 1


def test_every_comics_form_works_in_run_and_demo(forms, fake_hub, tmp_path, monkeypatch):
    spec, _ = forms["folder"]
    # run with --comics on a model that states its layout: discovery and evaluation slices are disjoint
    assert cli.main(["run", "--comics", spec.split("[")[0], "--discover-strips", "1", "--n-strips", "1",
                     "--out-root", str(tmp_path), "--name", "folder"]) == 0
    summary = json.loads((tmp_path / "folder" / "summary.json").read_text())
    assert "[0:1]" in summary["settings"]["data"] and "[1:2]" in summary["settings"]["data"]
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: served.setdefault("app", self.config.app))
    for form in ("folder", "hf", "comics", "synth"):
        assert cli.main(["demo", "--comics", forms[form][0], "--port", "0", "--runs", str(tmp_path),
                         "--audit-log", str(tmp_path / "audit.jsonl")]) == 0
        from fastapi.testclient import TestClient

        with TestClient(served.pop("app"), base_url="http://127.0.0.1") as client:
            sources = {entry["source"] for entry in client.get("/api/images").json()["images"]}
        assert "comics" in sources, form


# --- one verdict cache -------------------------------------------------------------------------------


def test_gazeheads_run_keeps_its_llm_verdicts_and_a_rerun_pays_nothing(tmp_path, monkeypatch):
    pytest.importorskip("anthropic")
    from fake_vendors import serve_fake

    fake = next(serve_fake(monkeypatch, tmp_path))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    argv = ["run", "--quick", "--discover-strips", "2", "--n-strips", "1", "--scenes", "1", "--out-root",
            str(tmp_path), "--name", "llm", "--judge", f"anthropic:claude-test@{fake.url}"]
    assert cli.main(argv) == 0
    verdicts = (tmp_path / "llm" / "verdicts.jsonl").read_text().splitlines()
    asked = fake.state.count("POST", "/v1/messages")
    assert verdicts and asked >= 1
    assert cli.main(argv) == 0  # resumed: every verdict comes from the cache
    assert fake.state.count("POST", "/v1/messages") == asked
