"""LLM judges through the vendors' own clients, one request at a time, against a local fake server.

What is sent (prompt, image, model, key), how replies are read and cached, which answers cost
no request, and how errors surface. Batches and resumption: test_judges_vendors.py.
"""

from __future__ import annotations

import base64
import io
import json
import socket

import pytest
from PIL import Image

pytest.importorskip("anthropic")
pytest.importorskip("openai")

from fake_vendors import CAPTIONS, serve_fake  # noqa: E402

from gazeheads.evaluation.judges import (  # noqa: E402
    JudgeError,
    JudgeItem,
    OpenAIJudge,
    VerdictCache,
    judge_prompt,
    make_judge,
    parse_choice,
    parse_reply,
)


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """The fake vendor server (tests/fake_vendors.py); nothing reaches a network."""
    yield from serve_fake(monkeypatch, tmp_path)


STRIP = Image.new("RGB", (36, 6), (255, 255, 255))


def llm_item(text: str = "a purple cross", key: str = "vqa|gaze|k=4|s1|5", **kw) -> JudgeItem:
    kw.setdefault("image", STRIP)
    return JudgeItem(text=text, n_panels=6, key=key, **kw)


def claude(fake, tmp_path, options: str = "", **kw):
    kw.setdefault("api_key", "sk-test")
    return make_judge(f"anthropic:claude-test@{fake.url}{options}", cache_dir=tmp_path / "run", progress=False, **kw)


def gpt(fake, tmp_path, options: str = "", **kw):
    kw.setdefault("api_key", "sk-o")
    return make_judge(f"openai:gpt-test@{fake.url}/v1{options}", cache_dir=tmp_path / "run", progress=False, **kw)


# --------------------------------------------------------------------------- what is sent


def test_anthropic_request_and_verdict(fake, tmp_path):
    verdict = claude(fake, tmp_path).judge(llm_item(baseline="a red circle in panel one"))
    assert verdict.choice == 5 and verdict.hit(5) and verdict.judge == "anthropic:claude-test"
    assert verdict.detail["via"] == "direct" and verdict.detail["reason"] == "fake"
    (request,) = fake.state.seen("POST", "/v1/messages")
    assert "sk-test" in (request.headers.get("x-api-key", "") + request.headers.get("authorization", ""))
    assert request.headers["anthropic-version"]
    body = request.body
    assert body["model"] == "claude-test" and body["max_tokens"] == 1024 and "temperature" not in body
    image, text = body["messages"][0]["content"]
    assert image["source"]["media_type"] == "image/jpeg"
    assert Image.open(io.BytesIO(base64.b64decode(image["source"]["data"]))).size == STRIP.size
    prompt = text["text"]
    assert '"""a purple cross"""' in prompt and '"""a red circle in panel one"""' in prompt  # the baseline too
    assert "not by any panel number" in prompt and '"junk"' in prompt


def test_openai_compatible_request_object_naming_and_png(fake, tmp_path):
    judge = gpt(fake, tmp_path, ",image_format=png")
    judge.check_ready()
    assert judge.judge(llm_item("a green square")).choice == 3
    request = fake.state.seen("POST", "/v1/chat/completions")[0]
    assert request.headers["authorization"] == "Bearer sk-o"
    body = request.body
    assert body["temperature"] == 0.0 and body["max_tokens"] == 1024  # a compatible server: reproducible
    text, image = body["messages"][0]["content"]
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    coco = judge.judge(JudgeItem(text="a square", n_panels=0, image=STRIP, key="coco|1",
                                 category_names=["circle", "square"]))
    assert coco.choice == 1  # the prompt numbers from 1; verdicts index category_names
    assert "2. square" in fake.state.seen("POST", "/v1/chat/completions")[1].body["messages"][0]["content"][0]["text"]


def test_openai_official_endpoint_params():
    official = OpenAIJudge("gpt-x")
    params = official._params("p", "data", "image/jpeg")
    assert official.base_url == "https://api.openai.com/v1" and official.batch_supported
    assert "max_completion_tokens" in params and "max_tokens" not in params and "temperature" not in params
    local = OpenAIJudge("m", base_url="http://localhost:8000/v1", temperature=0.3)
    assert not local.batch_supported and local._params("p", "d", "image/png")["temperature"] == 0.3


def test_large_images_are_scaled_down_before_sending(fake, tmp_path):
    big = Image.new("RGB", (3200, 400), (10, 200, 10))
    claude(fake, tmp_path).judge(llm_item(image=big))
    data = fake.state.seen("POST", "/v1/messages")[0].body["messages"][0]["content"][0]["source"]["data"]
    assert Image.open(io.BytesIO(base64.b64decode(data))).size == (1568, 196)


def test_the_prompt_for_panels_and_categories():
    panel = judge_prompt(llm_item("the third one", baseline=None))
    assert "6 panels" in panel and "unsteered" not in panel and "without any intervention" not in panel
    coco = judge_prompt(JudgeItem(text="a dog", n_panels=0, category_names=["cat", "dog"]))
    assert "1. cat\n2. dog" in coco and '"category"' in coco


# --------------------------------------------------------------------------- replies and the cache


@pytest.mark.parametrize("reply, expected", [
    ('{"panel": 3}', (3, "ok")),
    ('The answer is {"panel": 4}.', (4, "ok")),
    ('```json\n{"panel": 5}\n```', (5, "ok")),
    ('{"panel": "2"}', (2, "ok")),
    ('{"category": 1}', (1, "ok")),
    ('{"panel": null}', (None, "null")),
    ("6", (6, "ok")),
    ('"panel": 6', (6, "ok")),
    ('{"panel": 9}', (None, "unparsed")),
    ('{"panel": true}', (None, "unparsed")),
    ("no idea", (None, "unparsed")),
])
def test_parse_choice(reply, expected):
    assert parse_choice(reply, 6) == expected


@pytest.mark.parametrize("reply, expected", [
    ('{"panel": 2, "junk": false, "reason": "the star"}', (2, "ok", "the star")),
    ('{"panel": 2, "junk": true, "reason": "a loop"}', (None, "junk", "a loop")),
    ('{"matched_panel": 4, "is_junk": false}', (4, "ok", "")),  # the published code's keys
    ('{"panel": null, "junk": true}', (None, "junk", "")),
])
def test_parse_reply_reads_the_junk_flag(reply, expected):
    assert parse_reply(reply, 6) == expected


def test_verdicts_are_cached_on_disk_and_keyed_by_answer_and_baseline(fake, tmp_path):
    judge = claude(fake, tmp_path)
    first = judge.judge_many([llm_item(), llm_item()])  # the same answer twice: asked once
    assert [v.choice for v in first] == [5, 5] and len(fake.state.seen("POST", "/v1/messages")) == 1
    reopened = claude(fake, tmp_path)  # a new process re-judging the same run
    again = reopened.judge(llm_item())
    assert again.choice == 5 and again.detail["cached"] and len(fake.state.requests) == 1
    reopened.judge(llm_item(baseline="a blue star"))  # another baseline changes the prompt: a new request
    reopened.judge(llm_item(key="vqa|gaze|k=4|s2|5"))  # another item: a new request
    assert len(fake.state.seen("POST", "/v1/messages")) == 3
    lines = (tmp_path / "run" / "verdicts.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["choice"] == 5


def test_rule_misses_cost_no_request(fake, tmp_path):
    judge = claude(fake, tmp_path)
    junk = judge.judge(llm_item("  "))
    same = judge.judge(llm_item("A purple cross!", baseline="a purple cross"))
    assert junk.junk and same.same_as_baseline and same.choice is None and not same.hit(5)
    assert same.detail["baseline_jaccard"] == 1.0 and fake.state.requests == []
    asked = claude(fake, tmp_path, ",ask_same_as_baseline=true").judge(llm_item("A purple cross!",
                                                                              baseline="a purple cross"))
    assert asked.choice == 5 and asked.same_as_baseline and not asked.hit(5)  # kept for the record, still a miss
    assert len(fake.state.requests) == 1


def test_junk_and_null_replies_are_junk_and_unreadable_replies_are_asked_again(fake, tmp_path):
    verdict = claude(fake, tmp_path).judge(llm_item("a dog barks at the moon"))  # the fake finds no caption
    assert verdict.junk and verdict.choice is None and verdict.detail["status"] == "junk"
    replies = iter(["I cannot tell.", '{"panel": 3, "junk": false}'])
    fake.state.answer = lambda prompt: next(replies)
    judge = claude(fake, tmp_path)
    unread = judge.judge(llm_item(key="other"))
    assert unread.choice is None and not unread.junk and unread.detail["status"] == "unparsed"
    assert judge.judge(llm_item(key="other")).choice == 3  # not cached: asked again


def test_a_torn_cache_line_is_ignored(tmp_path):
    path = tmp_path / "verdicts.jsonl"
    cache = VerdictCache(path)
    cache.put("a", {"choice": 1})
    with open(path, "a") as handle:
        handle.write('{"key": "b", "choi')  # killed mid-write
    reopened = VerdictCache(path)
    assert len(reopened) == 1 and reopened.get("a")["choice"] == 1 and "b" not in reopened


def test_the_verdict_cache_lives_in_the_callers_folder(fake, tmp_path):
    judge = make_judge(f"anthropic:claude-test@{fake.url}", cache_dir=tmp_path, api_key="k")
    assert judge.cache.path == tmp_path / "verdicts.jsonl"


# --------------------------------------------------------------------------- errors


def test_client_errors_are_not_retried(fake, tmp_path):
    fake.state.fail("POST", "/v1/messages", 401)
    with pytest.raises(JudgeError) as info:
        claude(fake, tmp_path).judge(llm_item())
    assert "HTTP 401" in info.value.problem and "ANTHROPIC_API_KEY" in info.value.fix
    assert len(fake.state.requests) == 1


def test_server_errors_are_retried_then_reported(fake, tmp_path):
    fake.state.fail("POST", "/v1/chat/completions", 503, {"retry-after-ms": "5"}, times=3)
    with pytest.raises(JudgeError) as info:
        gpt(fake, tmp_path, ",max_retries=2").judge(llm_item())
    assert "HTTP 503" in info.value.problem and "rerun" in info.value.fix.lower()
    assert len(fake.state.requests) == 3  # the first try and two retries, by the openai client


def test_an_unreachable_endpoint_is_reported(tmp_path, fake):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    judge = make_judge(f"anthropic:claude-test@http://127.0.0.1:{port},max_retries=0", api_key="k")
    with pytest.raises(JudgeError, match="could not reach"):
        judge.judge(llm_item())


def test_check_ready_fails_before_generation(fake, monkeypatch):
    with pytest.raises(JudgeError) as info:
        make_judge("anthropic:claude-test").check_ready()
    assert "ANTHROPIC_API_KEY" in info.value.fix
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-env")
    make_judge("anthropic:claude-test").check_ready()
    with pytest.raises(JudgeError) as info:
        make_judge("openai:gpt-test@http://localhost:8000/v1").check_ready()
    assert "OPENAI_API_KEY" in info.value.fix and "require_key=false" in info.value.fix
    make_judge("openai:local@http://localhost:8000/v1,require_key=false").check_ready()
    make_judge("openai:local@http://localhost:8000/v1,key_env=MY_KEY", api_key="x").check_ready()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "localhost:9")  # a bad endpoint from the environment
    with pytest.raises(JudgeError, match="not an http"):
        make_judge("anthropic:claude-test").check_ready()


def test_llm_judge_needs_the_image(fake, tmp_path):
    with pytest.raises(JudgeError, match="image"):
        claude(fake, tmp_path).judge(JudgeItem(text="a red circle", n_panels=6, key="k"))
    assert fake.state.requests == []


def test_nothing_reaches_a_network(fake, tmp_path):
    judge = make_judge("anthropic:claude-test,max_retries=0", api_key="k")  # the real endpoint
    with pytest.raises(JudgeError, match="could not reach https://api.anthropic.com"):
        judge.judge(llm_item())


def test_anthropic_takes_no_temperature():
    with pytest.raises(JudgeError, match="temperature"):
        make_judge("anthropic:claude-test", temperature=0.0)


def test_the_fake_answers_like_a_judge():
    assert json.loads(fake_answer(CAPTIONS[1]))["panel"] == 2


def fake_answer(text: str) -> str:
    from fake_vendors import judge_like

    return judge_like(judge_prompt(llm_item(f"it shows a {text}")))
