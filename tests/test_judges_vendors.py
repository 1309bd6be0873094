"""A small batch of verdicts through each vendor's own client, against a local fake server.

Each test runs for Anthropic (Messages, Message Batches) and OpenAI (Chat Completions,
Files + Batch API): a retry after a 429, one vendor batch, and a batch resumed after the run
stopped waiting, after the server died, and after the results stream broke, without a
second batch being paid for. Last, a run generated with placeholder verdicts and judged
afterwards by `rejudge` in one batch, as `gazeheads eval` can do with an LLM judge.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

pytest.importorskip("anthropic")
pytest.importorskip("openai")

from fake_vendors import CAPTIONS, serve_fake  # noqa: E402

from gazeheads.evaluation.judges import JudgeError, JudgeItem, make_judge  # noqa: E402


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """The fake vendor server (tests/fake_vendors.py); nothing reaches a network."""
    yield from serve_fake(monkeypatch, tmp_path)


VENDORS = {
    "anthropic": {"spec": "anthropic:claude-test@{url}", "one": "/v1/messages", "create": "/v1/messages/batches",
                  "batch_prefix": "msgbatch_"},
    "openai": {"spec": "openai:gpt-test@{url}/v1", "one": "/v1/chat/completions", "create": "/v1/batches",
               "batch_prefix": "batch_"},
}


@pytest.fixture(params=sorted(VENDORS))
def vendor(request) -> dict:
    return {"name": request.param, **VENDORS[request.param]}


def strip_items(n_strips: int = 2) -> tuple[list[JudgeItem], list[int]]:
    """Six answers per strip, one naming each panel's caption; the panels they name."""
    items, targets = [], []
    for s in range(n_strips):
        image = Image.new("RGB", (48, 8), (s * 40, 100, 200))
        for target, caption in enumerate(CAPTIONS, start=1):
            items.append(JudgeItem(text=f"the panel shows a {caption}", n_panels=6, image=image,
                                   key=f"vqa|gaze|k=4|s{s}|{target}"))
            targets.append(target)
    return items, targets


def make(vendor, fake, tmp_path, options: str = "", **kw):
    kw.setdefault("api_key", "sk-test")
    kw.setdefault("sleep", lambda seconds: None)
    spec = vendor["spec"].format(url=fake.url) + options
    return make_judge(spec, cache_dir=tmp_path / "run", progress=False, **kw)


def ledger(tmp_path) -> list[dict]:
    path = tmp_path / "run" / "judge-batches.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def cached_lines(tmp_path) -> list[dict]:
    path = tmp_path / "run" / "verdicts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_one_at_a_time_retries_a_429(vendor, fake, tmp_path):
    items, targets = strip_items()
    fake.state.fail("POST", vendor["one"], 429, {"retry-after-ms": "10", "retry-after": "1"})
    verdicts = make(vendor, fake, tmp_path, ",batch=never").judge_many(items)
    assert [v.choice for v in verdicts] == targets and all(v.hit(t) for v, t in zip(verdicts, targets))
    sent = fake.state.seen("POST", vendor["one"])
    assert len(sent) == len(items) + 1  # the rate-limited request was sent again by the client
    assert sent[0].body == sent[1].body and sent[1].headers.get("x-stainless-retry-count") == "1"
    assert len(cached_lines(tmp_path)) == len(items)
    again = make(vendor, fake, tmp_path).judge_many(items)  # a resumed run: everything from the cache
    assert [v.choice for v in again] == targets and all(v.detail["cached"] for v in again)
    assert len(fake.state.requests) == len(sent)


def test_a_batch_of_verdicts(vendor, fake, tmp_path):
    items, targets = strip_items()
    verdicts = make(vendor, fake, tmp_path, ",batch=always").judge_many(items)
    assert [v.choice for v in verdicts] == targets
    (batch_id,) = fake.state.batches
    assert batch_id.startswith(vendor["batch_prefix"]) and len(fake.state.batches[batch_id]["requests"]) == len(items)
    assert {v.detail["via"] for v in verdicts} == {f"batch:{batch_id}"}
    assert fake.state.seen("POST", vendor["one"]) == []  # nothing sent one at a time
    assert [e["event"] for e in ledger(tmp_path)] == ["submitted", "collected"]
    assert len(cached_lines(tmp_path)) == len(items)


def test_auto_batches_above_the_threshold_where_the_endpoint_has_batches(vendor, fake, tmp_path):
    items, targets = strip_items()
    assert [v.choice for v in make(vendor, fake, tmp_path, ",batch_min=5").judge_many(items[:4])] == targets[:4]
    assert fake.state.batches == {}  # below the threshold: one at a time
    assert [v.choice for v in make(vendor, fake, tmp_path, ",batch_min=5").judge_many(items)] == targets
    # Anthropic always has batches; an OpenAI-compatible server other than api.openai.com is not assumed to
    assert len(fake.state.batches) == (1 if vendor["name"] == "anthropic" else 0)


def test_an_interrupted_batch_is_resumed_not_paid_again(vendor, fake, tmp_path):
    items, targets = strip_items()
    fake.state.polls_to_end = 2
    with pytest.raises(JudgeError) as info:
        make(vendor, fake, tmp_path, ",batch=always,batch_wait_s=0").judge_many(items)  # stop at the first poll
    (batch_id,) = fake.state.batches
    assert "still" in info.value.problem and batch_id in info.value.fix and "Rerun" in info.value.fix
    assert [e["event"] for e in ledger(tmp_path)] == ["submitted"]
    resumed = make(vendor, fake, tmp_path, ",batch=always").judge_many(items)  # a new run, same folder
    assert [v.choice for v in resumed] == targets and len(fake.state.batches) == 1
    assert {v.detail["via"] for v in resumed} == {f"batch:{batch_id}"}
    assert fake.state.count("POST", vendor["create"]) == 1
    assert [e["event"] for e in ledger(tmp_path)] == ["submitted", "collected"]
    before = len(fake.state.requests)
    assert [v.choice for v in make(vendor, fake, tmp_path).judge_many(items)] == targets
    assert len(fake.state.requests) == before  # all cached now


def test_a_batch_survives_the_server_dying_mid_batch(vendor, fake, tmp_path):
    items, targets = strip_items()
    fake.state.polls_to_end = 2
    judge = make(vendor, fake, tmp_path, ",batch=always,max_retries=1", sleep=lambda seconds: fake.kill())
    with pytest.raises(JudgeError) as info:
        judge.judge_many(items)  # polls once, the server dies while it waits, the next poll fails
    (batch_id,) = fake.state.batches
    assert "could not reach" in info.value.problem and batch_id in info.value.fix
    fake.restart()
    resumed = make(vendor, fake, tmp_path, ",batch=always").judge_many(items)
    assert [v.choice for v in resumed] == targets and list(fake.state.batches) == [batch_id]
    assert fake.state.count("POST", vendor["create"]) == 1


def test_a_broken_results_stream_keeps_what_arrived(vendor, fake, tmp_path):
    items, targets = strip_items()
    fake.state.cut_results_after = 8  # the connection drops after 8 of 12 result lines
    with pytest.raises(JudgeError) as info:
        make(vendor, fake, tmp_path, ",batch=always,max_retries=0").judge_many(items)
    (batch_id,) = fake.state.batches
    assert "batch" in info.value.problem and f"resumes batch {batch_id}" in info.value.fix
    arrived = len(cached_lines(tmp_path))
    # Anthropic's client streams the results (each verdict is written as it arrives); OpenAI's reads
    # the whole output file first (it retries a broken read itself unless max_retries=0)
    assert 0 < arrived <= 8 if vendor["name"] == "anthropic" else arrived == 0
    resumed = make(vendor, fake, tmp_path, ",batch=always").judge_many(items)
    assert [v.choice for v in resumed] == targets and len(fake.state.batches) == 1
    assert sum(v.detail["cached"] for v in resumed) == arrived
    assert len(cached_lines(tmp_path)) == len(items)  # nothing written twice


def test_errored_requests_are_asked_directly_and_expired_ones_batched_again(vendor, fake, tmp_path):
    items, targets = strip_items()
    state = fake.state
    state.outcome = lambda i: {0: "errored", 1: "expired"}.get(i, "succeeded") if len(state.batches) == 1 \
        else "succeeded"
    verdicts = make(vendor, fake, tmp_path, ",batch=always").judge_many(items)
    assert [v.choice for v in verdicts] == targets
    first, second = state.batches
    assert len(state.batches[second]["requests"]) == 1  # the expired request, in a new batch
    assert verdicts[1].detail["via"] == f"batch:{second}" and verdicts[0].detail["via"] == "direct"
    assert len(state.seen("POST", vendor["one"])) == 1  # the errored one, asked directly


def test_large_runs_are_split_into_several_batches(vendor, fake, tmp_path):
    items, targets = strip_items(n_strips=3)
    verdicts = make(vendor, fake, tmp_path, ",batch=always,batch_size=7").judge_many(items)
    assert [v.choice for v in verdicts] == targets
    assert sorted(len(b["requests"]) for b in fake.state.batches.values()) == [4, 7, 7]
    assert [e["event"] for e in ledger(tmp_path)].count("collected") == 3


def test_a_batch_the_vendor_forgot_is_sent_again(vendor, fake, tmp_path):
    items, targets = strip_items(n_strips=1)
    fake.state.polls_to_end = 2
    with pytest.raises(JudgeError):
        make(vendor, fake, tmp_path, ",batch=always,batch_wait_s=0").judge_many(items)
    fake.state.batches.clear()  # e.g. another account, or results older than the vendor keeps
    verdicts = make(vendor, fake, tmp_path, ",batch=always").judge_many(items)
    assert [v.choice for v in verdicts] == targets and len(fake.state.batches) == 1
    assert [e["event"] for e in ledger(tmp_path)] == ["submitted", "lost", "submitted", "collected"]


# --------------------------------------------------------------------------- a run judged afterwards


def write_run(run_dir, judge, shards: int = 1) -> list:
    """A small run's generations (VQA and dynamic records of two strips), judged by `judge`.

    With `shards` > 1 the records are spread over per-process files, as `accelerate launch` writes them.
    """
    from gazeheads.data import stitch
    from gazeheads.layout import StripLayout
    from gazeheads.evaluation.protocols import Protocol
    from gazeheads.evaluation.runner import GeneratedText, dynamic_record, record_key, static_record
    from gazeheads.evaluation.store import JsonlStore

    vqa, dynamic = Protocol("vqa", "", 0), Protocol("dynamic", "", 0, 3)
    strips, records = [], []
    for s in range(2):
        panels = [Image.new("RGB", (32, 32), (40 * k, 30 * s, 90)) for k in range(6)]
        strip = stitch(panels, StripLayout(height=32, gap=0), comic_id=f"s{s}", captions=list(CAPTIONS))
        strips.append(strip)
        baseline = f"a {CAPTIONS[0]}"
        records.append({"key": record_key("vqa", "baseline", 0, strip.comic_id, "-"), "protocol": "vqa",
                        "condition": "baseline", "k": 0, "strip": strip.comic_id, "text": baseline,
                        "segments": [], "n_tokens": 3})
        for target in range(1, 7):  # target 1 repeats the baseline: a miss, never sent to the judge
            text = baseline if target == 1 else f"it shows a {CAPTIONS[target - 1]}"
            records.append(static_record(vqa, "gaze", 4, strip, target, GeneratedText(text, [], 3), baseline, judge))
        order = [2, 1, 4, 3, 6, 5]
        segments = [f"now a {CAPTIONS[p - 1]}" for p in order]
        records.append({"key": record_key("dynamic", "baseline", 0, strip.comic_id, "-"), "protocol": "dynamic",
                        "condition": "baseline", "k": 0, "strip": strip.comic_id, "text": "", "n_tokens": 18,
                        "segments": [f"then a {c}" for c in CAPTIONS]})
        base = GeneratedText(records[-1]["text"], records[-1]["segments"])
        records.append(dynamic_record(dynamic, "gaze", 4, strip, GeneratedText(" ".join(segments), segments), base,
                                      order, judge))
    for rank in range(shards):
        name = "generations.jsonl" if shards == 1 else f"generations.rank{rank}-of-{shards}.jsonl"
        JsonlStore(run_dir / name).add([r for r in records if r["strip"] == f"s{rank % 2}" or shards == 1])
    return strips


def test_a_run_generated_with_a_deferred_judge_is_judged_in_one_batch(vendor, fake, tmp_path):
    from gazeheads.evaluation.judges import DeferredJudge
    from gazeheads.evaluation.rejudge import rejudge
    from gazeheads.evaluation.store import JsonlStore

    run = tmp_path / "run"
    judge = make(vendor, fake, tmp_path, ",batch_min=5,batch=always")
    strips = write_run(run, DeferredJudge(judge))  # generation: placeholders, no request
    assert fake.state.requests == []
    rejudge(run, judge, strips)
    (batch_id,) = fake.state.batches
    # a strip: 5 steered VQA answers (the 6th repeats the baseline) and 6 segments, and its unsteered
    # answers too (1 VQA answer, 6 segments), which the report shows
    assert len(fake.state.batches[batch_id]["requests"]) == 2 * (5 + 6 + 1 + 6)
    records = {r["key"]: r for r in JsonlStore(run / "generations.jsonl")}
    vqa = [r for r in records.values() if r["protocol"] == "vqa" and r["condition"] == "gaze"]
    assert [r["hit"] for r in sorted(vqa, key=lambda r: (r["strip"], r["target"]))] == [False] + [True] * 5 + \
        [False] + [True] * 5
    assert all(r["verdict"]["same_as_baseline"] for r in vqa if r["target"] == 1)
    dynamic = [r for r in records.values() if r["protocol"] == "dynamic" and r["condition"] == "gaze"]
    assert all(r["judged"] == [2, 1, 4, 3, 6, 5] and r["hit"] == 1.0 and r["spearman"] == 1.0 for r in dynamic)
    before = len(fake.state.requests)
    rejudge(run, make(vendor, fake, tmp_path, ",batch=always"), strips)  # re-judging again: all cached
    assert len(fake.state.requests) == before
    assert {r["key"]: r.get("hit") for r in JsonlStore(run / "generations.jsonl")} == \
        {k: r.get("hit") for k, r in records.items()}


def test_rejudging_a_sharded_run_merges_and_replaces_its_shards(tmp_path):
    from gazeheads.evaluation.judges import DeferredJudge, GroundTruthJudge
    from gazeheads.evaluation.rejudge import rejudge
    from gazeheads.evaluation.session import shard_files
    from gazeheads.evaluation.store import JsonlStore

    run = tmp_path / "run"
    strips = write_run(run, DeferredJudge(GroundTruthJudge()), shards=2)
    rejudge(run, GroundTruthJudge(), strips)
    assert shard_files(run) == []  # a later finish() merges nothing old back over the new verdicts
    gaze = [r for r in JsonlStore(run / "generations.jsonl") if r["condition"] == "gaze" and r["protocol"] == "vqa"]
    assert len(gaze) == 12 and sum(r["hit"] for r in gaze) == 12  # the truth judge keeps baseline repeats
