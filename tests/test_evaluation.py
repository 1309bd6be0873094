"""Evaluation runner: durable records, resume after SIGKILL, 2-process sharding, re-judging."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import gazeheads as gh
from gazeheads.evaluation.judges import make_judge
from gazeheads.evaluation.runner import EvalSettings, evaluate_strips
from gazeheads.evaluation.session import ProcessInfo, finish, open_store
from gazeheads.evaluation.store import JsonlStore
from gazeheads.specs import HeadSpec, SteerSpec
from gazeheads.synth import make_strip

from factories import save_qwen

N_STRIPS = 6


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny random Qwen3-VL on disk, its ranking, and the strips (synthetic, seeded)."""
    root = tmp_path_factory.mktemp("evaluation")
    save_qwen(root / "model", layers=2, heads=4, kv_heads=2, seed=3)
    gm = gh.load(root / "model")
    ranking = gh.discover(gm, [make_strip(300_000 + i) for i in range(2)], progress=False)
    ranking.save(root / "ranking.json")
    return root, gm, ranking


def strips():
    return [make_strip(100_000 + i, comic_id=f"synth_{100_000 + i:06d}") for i in range(N_STRIPS)]


SETTINGS = dict(protocol="narration", heads=HeadSpec(k=2, percentile=50), max_new_tokens=3)


def records_by_key(path):
    return {r["key"]: r for r in JsonlStore(path)}


def test_store_ignores_a_torn_last_line(tmp_path):
    path = tmp_path / "g.jsonl"
    store = JsonlStore(path)
    store.add([{"key": "a", "v": 1}, {"key": "b", "v": 2}])
    with open(path, "a") as handle:
        handle.write('{"key": "c", "v"')  # killed mid-write
    again = JsonlStore(path)
    assert sorted(again.records) == ["a", "b"]
    again.add([{"key": "c", "v": 3}])
    assert sorted(JsonlStore(path).records) == ["a", "b", "c"]


def test_rerun_skips_what_is_done(saved, tmp_path):
    _, gm, ranking = saved
    settings = EvalSettings(**SETTINGS)
    store = open_store(tmp_path, ProcessInfo(), resume=True)
    evaluate_strips(gm, ranking, strips()[:2], settings, make_judge("truth"), store, progress=False)
    first = len(store)
    assert first == 2 * (1 + 3 * 6)  # baseline + 3 conditions x 6 targets per strip
    seen = []
    evaluate_strips(gm, ranking, strips()[:2], settings, make_judge("truth"), store, progress=False,
                    on_record=seen.append)
    assert seen == [] and len(store) == first


def test_several_strips_per_batch_equal_one_strip_at_a_time(saved, tmp_path):
    _, gm, ranking = saved
    for protocol in ("narration", "dynamic"):
        results = []
        for per_batch in (1, 3):
            extra = dict(max_new_tokens=None, segment_tokens=1) if protocol == "dynamic" else {}
            settings = EvalSettings(**dict(SETTINGS, protocol=protocol, strips_per_batch=per_batch, **extra))
            out = tmp_path / f"{protocol}-{per_batch}"
            evaluate_strips(gm, ranking, strips(), settings, make_judge("truth"), open_store(out, ProcessInfo(), resume=True),
                            progress=False)
            results.append(records_by_key(out / "generations.jsonl"))
        assert results[0] == results[1]


KILLABLE = textwrap.dedent("""
    import sys, time
    import gazeheads as gh
    from gazeheads.evaluation.judges import make_judge
    from gazeheads.evaluation.runner import EvalSettings, evaluate_strips
    from gazeheads.evaluation.session import ProcessInfo, open_store
    from gazeheads.specs import HeadSpec
    from gazeheads.synth import make_strip
    root, out = sys.argv[1], sys.argv[2]
    gm = gh.load(root + "/model")
    ranking = gh.Ranking.load(root + "/ranking.json")
    truth = make_judge("truth")

    class SlowJudge:
        name = truth.name  # the same verdicts, slower: a resume with the truth judge may continue it

        def judge(self, item):
            time.sleep(0.15)
            return truth.judge(item)

    strips = [make_strip(100_000 + i, comic_id=f"synth_{100_000 + i:06d}") for i in range(N)]
    settings = EvalSettings(**SETTINGS)
    evaluate_strips(gm, ranking, strips, settings, SlowJudge(), open_store(__import__("pathlib").Path(out),
                    ProcessInfo(), resume=True), progress=False)
""")


def test_sigkill_then_resume_equals_an_uninterrupted_run(saved, tmp_path):
    root, gm, ranking = saved
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE.replace("N)", f"{N_STRIPS})").replace("**SETTINGS", f"**{SETTINGS!r}"))
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(killed)])
    path = killed / "generations.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:
        if path.exists() and path.read_text().count("\n") >= 10:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = records_by_key(path)
    total = N_STRIPS * (1 + 3 * 6)
    assert 10 <= len(partial) < total, "the run must be killed mid-way"

    settings = EvalSettings(**SETTINGS)
    store = open_store(killed, ProcessInfo(), resume=True)
    added = []
    evaluate_strips(gm, ranking, strips(), settings, make_judge("truth"), store, progress=False,
                    on_record=added.append)
    assert len(store) == total and len(added) == total - len(partial)
    assert {r["key"] for r in added}.isdisjoint(partial)

    clean = tmp_path / "clean"
    evaluate_strips(gm, ranking, strips(), settings, make_judge("truth"), open_store(clean, ProcessInfo(), resume=True),
                    progress=False)
    assert records_by_key(path) == records_by_key(clean / "generations.jsonl")
    assert path.read_text().count("\n") == total  # nothing lost, nothing duplicated
    assert finish(killed, ProcessInfo(), title="t", settings={}, echo=False) == \
        finish(clean, ProcessInfo(), title="t", settings={}, echo=False)


def test_two_process_shard_equals_one_process(saved, tmp_path):
    root, _, _ = saved
    args = ["eval", "narration", "--model", str(root / "model"), "--ranking", str(root / "ranking.json"),
            "--comics", "synth", "--n-strips", "4", "-k", "2", "--control-percentile", "50",
            "--max-new-tokens", "3"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "-m", "gazeheads.cli"]
    two = subprocess.run(launch + args + ["--out", str(tmp_path / "two")], env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    assert len(list((tmp_path / "two").glob("generations.rank*-of-2.jsonl"))) == 2
    one = subprocess.run([sys.executable, "-m", "gazeheads.cli"] + args + ["--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    assert records_by_key(tmp_path / "two" / "generations.jsonl") == records_by_key(tmp_path / "one" / "generations.jsonl")
    summary = lambda d: json.loads((tmp_path / d / "summary.json").read_text())["results"]  # noqa: E731
    assert summary("two") == summary("one")


def test_missing_llm_key_fails_before_any_generation(saved, tmp_path, capsys, monkeypatch):
    from gazeheads import cli

    root, _, _ = saved
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    code = cli.main(["eval", "narration", "--model", str(root / "model"), "--ranking", str(root / "ranking.json"),
                     "--comics", "synth", "--judge", "anthropic:claude-sonnet-4", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "ANTHROPIC_API_KEY" in capsys.readouterr().err
    assert not (tmp_path / "x" / "generations.jsonl").exists()


def test_rejudge_from_jsonl_without_generating(saved, tmp_path, monkeypatch):
    from gazeheads import cli

    root, _, _ = saved
    base = ["eval", "narration", "--model", str(root / "model"), "--ranking", str(root / "ranking.json"),
            "--comics", "synth", "--n-strips", "2", "-k", "2", "--control-percentile", "50",
            "--max-new-tokens", "3", "--out", str(tmp_path)]
    assert cli.main(base) == 0
    before = records_by_key(tmp_path / "generations.jsonl")

    class Always3:
        name = "always3"

        def check_ready(self):
            pass

        def judge(self, item):
            from gazeheads.evaluation.judges import Verdict
            return Verdict(3, junk=False, same_as_baseline=False, judge="always3", detail={})

    import gazeheads.evaluation.judges as judges

    monkeypatch.setattr(judges, "make_judge", lambda spec, **kw: Always3())
    assert cli.main(base + ["--rejudge"]) == 0
    after = records_by_key(tmp_path / "generations.jsonl")
    assert after.keys() == before.keys()
    steered = [r for r in after.values() if r["condition"] != "baseline"]
    assert all(r["text"] == before[r["key"]]["text"] for r in steered)  # nothing regenerated
    assert all(r["hit"] == (r["target"] == 3) for r in steered)
    summary = json.loads((tmp_path / "summary.json").read_text())["results"]
    assert all(abs(row["accuracy"] - 1 / 6) < 1e-9 for row in summary)
    settings_after = json.loads((tmp_path / "generations.settings.json").read_text())
    assert settings_after["narration"]["judge"] == "always3"  # a later --resume continues with this judge


def test_store_refuses_a_corrupt_line_in_the_middle(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b", oops\n{"key": "c"}\n')
    with pytest.raises(gh.GazeheadsError, match="line 2 is not valid JSON, and 1 records follow"):
        JsonlStore(path)
    assert path.read_text().count("\n") == 3  # nothing was cut away


def test_resume_refuses_other_settings_but_may_add_conditions(saved, tmp_path):
    from gazeheads.evaluation.store import SettingsMismatch

    _, gm, ranking = saved
    two = strips()[:1]
    gaze_only = EvalSettings(**dict(SETTINGS, conditions=("gaze",)))
    evaluate_strips(gm, ranking, two, gaze_only, make_judge("truth"), open_store(tmp_path, ProcessInfo(), resume=True),
                    progress=False)
    store = open_store(tmp_path, ProcessInfo(), resume=True)
    for changed, field in ((dict(heads=HeadSpec(k=2, percentile=50, seed=7)), "seed"),
                           (dict(steer=SteerSpec(mode="suppress_image")), "mode"), (dict(max_new_tokens=4), "max_new_tokens"),
                           (dict(question="Describe."), "question")):
        with pytest.raises(SettingsMismatch, match=f"narration records made with other settings .*{field}"):
            evaluate_strips(gm, ranking, two, EvalSettings(**dict(SETTINGS, **changed)), make_judge("truth"), store,
                            progress=False)
    assert len(store) == 1 + 6  # the refused runs added nothing
    # another K is new records beside the old (keys hold K), as in a top-K sweep: allowed
    evaluate_strips(gm, ranking, two, EvalSettings(**SETTINGS), make_judge("truth"), store, progress=False)
    assert len(store) == 1 + 3 * 6  # random and all heads added to the gaze records
    saved_heads = json.loads((tmp_path / "generations.settings.json").read_text())["narration"]["heads"]
    assert set(saved_heads) == {"gaze@2", "random@2", "all@8"}
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(gh.GazeheadsError, match="already holds generations") as info:
        open_store(tmp_path, ProcessInfo())  # neither resume nor restart: refused, nothing touched
    assert "--resume" in info.value.fix and "--restart" in info.value.fix
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    fresh = open_store(tmp_path, ProcessInfo(), restart=True)  # asked for: a new run
    assert len(fresh) == 0 and not (tmp_path / "generations.settings.json").exists()


def test_resume_sees_the_shards_of_another_process_count(tmp_path):
    for rank in range(2):
        shard = JsonlStore(tmp_path / f"generations.rank{rank}-of-2.jsonl")
        shard.claim("vqa", {"seed": 0})
        shard.add([{"key": f"vqa|{rank}"}])
    with pytest.raises(gh.GazeheadsError, match="seed: 0 -> 1"):  # the shards' settings travel with them
        open_store(tmp_path, ProcessInfo(), resume=True).claim("vqa", {"seed": 1})
    for process in (ProcessInfo(), ProcessInfo(index=1, count=3)):
        store = open_store(tmp_path, process, resume=True)
        assert sorted(store.records) == ["vqa|0", "vqa|1"]
    open_store(tmp_path, ProcessInfo(), restart=True)  # a restarted one-process run clears every old shard
    assert not list(tmp_path.glob("generations.rank*"))


def test_dynamic_narration_generates_one_segment_per_panel(saved, tmp_path):
    _, gm, ranking = saved
    settings = EvalSettings(protocol="dynamic", heads=HeadSpec(k=2, percentile=50), conditions=("gaze",),
                            segment_tokens=2)
    store = evaluate_strips(gm, ranking, strips()[:1], settings, make_judge("truth"),
                            open_store(tmp_path, ProcessInfo(), resume=True), progress=False)
    steered = [r for r in store if r["condition"] == "gaze"]
    assert len(steered) == 1 and len(steered[0]["segments"]) == len(steered[0]["schedule"]) == 6
    assert len(steered[0]["verdicts"]) == 6
    with pytest.raises(gh.GazeheadsError, match="segment per panel"):
        EvalSettings(protocol="dynamic", max_new_tokens=100)


def test_records_without_saved_settings_cannot_be_resumed(tmp_path):
    from gazeheads.evaluation.store import SettingsMismatch

    store = JsonlStore(tmp_path / "generations.jsonl")
    store.add([{"key": "vqa|gaze|k=2|s|1"}])  # as written before settings were saved beside records
    with pytest.raises(SettingsMismatch, match="no record of the settings"):
        store.claim("vqa", {"seed": 0})
    store.claim("narration", {"seed": 0})  # a section with no records yet starts its settings


def test_no_process_writes_its_shard_before_the_main_process_has_checked_the_folder(tmp_path, monkeypatch):
    """A second process that starts first must not make the main process refuse its own run."""
    from gazeheads.evaluation import session

    events = []

    def checked(run_dir, **kw):
        events.append("checked")
        return check(run_dir, **kw)

    def barrier():
        events.append("barrier")
        if "checked" in events:  # the other process starts as soon as the main one has checked
            (tmp_path / "generations.rank1-of-2.jsonl").write_text('{"key": "x"}\n')

    check = session.check_store_policy
    monkeypatch.setattr(session, "check_store_policy", checked)
    monkeypatch.setattr(session, "wait_for_everyone", barrier)
    store = session.open_store(tmp_path, session.ProcessInfo(0, 2))
    assert events == ["checked", "barrier"] and store is not None
    (tmp_path / "generations.rank0-of-2.jsonl").write_text('{"key": "y"}\n')
    with pytest.raises(gh.GazeheadsError, match="already holds generations"):  # a later run is still refused
        session.open_store(tmp_path, session.ProcessInfo(0, 2))
