"""Judges: shared rules, ground truth, caption similarity, LLM judges against a fake server."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from gazeheads.evaluation.judges import (
    AnthropicJudge,
    CaptionSimilarityJudge,
    GroundTruthJudge,
    JudgeError,
    JudgeItem,
    OpenAICompatibleJudge,
    Verdict,
    junk_reason,
    make_judge,
    parse_choice,
    plural_forms,
    word_jaccard,
)

CAPTIONS = ["red circle", "blue star", "green square", "yellow triangle", "purple cross", "orange ring"]


def item(text: str, **kw) -> JudgeItem:
    kw.setdefault("captions", CAPTIONS)
    return JudgeItem(text=text, n_panels=len(kw["captions"] or CAPTIONS), **kw)


# --------------------------------------------------------------------------- shared rules


def test_word_jaccard():
    assert word_jaccard("The red circle.", "the RED circle") == 1.0
    assert word_jaccard("a b c", "b c d") == pytest.approx(0.5)
    assert word_jaccard("red", "blue") == 0.0
    assert word_jaccard("", "...") == 1.0


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    (" ... !! ", "empty"),
    ("123 4 56", "no alphabetic word"),
    ("red red red red blue star", "repetition"),             # one word is 4/6 > 50%
    ("red circle " * 6, "repetition"),                        # a loop: 2 distinct of 12 words
    ("red red red blue star", None),                          # fewer than 6 words
    ("a red circle sits on a blue background", None),
])
def test_junk_rules(text, reason):
    assert junk_reason(text) == reason


def test_verdict_hit_and_round_trip():
    assert Verdict(3).hit(3) and not Verdict(3).hit(2)
    assert not Verdict(None).hit(1)
    assert not Verdict(3, junk=True).hit(3)
    assert not Verdict(3, same_as_baseline=True).hit(3)
    v = Verdict(2, same_as_baseline=True, judge="truth", detail={"baseline_jaccard": 1.0})
    assert Verdict.from_dict(json.loads(json.dumps(v.to_dict()))) == v


def test_judge_item_round_trip_with_and_without_image():
    image = Image.new("RGB", (12, 4), (200, 10, 10))
    it = item("red circle", baseline="blue star", image=image, key="vqa|gaze|s1|1", attributes=[{"colour": "red"}])
    plain = JudgeItem.from_dict(json.loads(json.dumps(it.to_dict())))
    assert plain.image is None and plain.key == it.key and plain.captions == CAPTIONS
    full = JudgeItem.from_dict(json.loads(json.dumps(it.to_dict(include_image=True))))
    assert full.image.size == (12, 4) and full.image.getpixel((0, 0)) == (200, 10, 10)


# --------------------------------------------------------------------------- ground truth


@pytest.mark.parametrize("text, panel", [
    ("A Blue Star!", 2),
    ("the orange ring.", 6),
    ("a red circle next to a blue star", 1),       # the first caption mentioned
    ("There is a PURPLE-cross here", 5),
])
def test_ground_truth_picks_the_first_caption_mentioned(text, panel):
    verdict = GroundTruthJudge().judge(item(text))
    assert verdict.choice == panel and verdict.hit(panel) and not verdict.junk
    assert verdict.judge == "truth"


def test_ground_truth_records_every_panel_mentioned():
    verdict = GroundTruthJudge().judge(item("an orange ring, then a red circle and a blue star"))
    assert verdict.choice == 6
    assert verdict.detail["mentioned"] == [6, 1, 2]


def test_longest_overlapping_caption_wins():
    captions = ["circle", "red circle", "blue star"]
    assert GroundTruthJudge().judge(item("a big red circle", captions=captions)).choice == 2
    assert GroundTruthJudge().judge(item("a circle", captions=captions)).choice == 1


def test_identical_captions_pick_the_first_and_record_ambiguity():
    captions = ["red circle", "blue star", "red circle"]
    verdict = GroundTruthJudge().judge(item("a red circle", captions=captions))
    assert verdict.choice == 1
    assert verdict.detail["ambiguous"] is True and verdict.detail["tied"] == [1, 3]


def test_answer_matching_no_panel_is_junk():
    verdict = GroundTruthJudge().judge(item("a cat sleeps on a sofa"))
    assert verdict.junk and verdict.choice is None
    assert not any(verdict.hit(k) for k in range(1, 7))


def test_junk_rules_come_first():
    verdict = GroundTruthJudge().judge(item("red circle " * 6))
    assert verdict.junk and verdict.detail["junk"] == "repetition"


def test_attributes_stand_in_for_captions():
    attributes = [{"colour": c.split()[0], "shape": c.split()[1], "background": "sky"} for c in CAPTIONS]
    verdict = GroundTruthJudge().judge(item("green square", captions=None, attributes=attributes))
    assert verdict.choice == 3


def test_ground_truth_needs_captions_or_attributes():
    with pytest.raises(JudgeError, match="captions or attributes"):
        GroundTruthJudge().judge(JudgeItem(text="red circle", n_panels=6))


def test_answer_identical_to_baseline_is_a_miss_but_keeps_its_choice():
    paper_rule = GroundTruthJudge(baseline_threshold=0.85)
    verdict = paper_rule.judge(item("Red circle.", baseline="red circle"))
    assert verdict.choice == 1 and verdict.same_as_baseline and not verdict.hit(1)
    assert verdict.detail["baseline_jaccard"] == 1.0
    assert paper_rule.judge(item("blue star", baseline="red circle")).hit(2)


def test_exact_ground_truth_does_not_apply_the_baseline_rule_by_default():
    verdict = GroundTruthJudge().judge(item("Red circle.", baseline="red circle"))
    assert verdict.hit(1) and not verdict.same_as_baseline
    assert verdict.detail["baseline_jaccard"] == 1.0


@pytest.mark.parametrize("shared, same", [(17, True), (16, False)])  # Jaccard 17/20 = 0.85, 16/20 = 0.8
def test_baseline_rule_threshold_is_word_jaccard_085(shared, same):
    vocab = [f"w{i}" for i in range(20)]
    captions = ["w0", "x1", "x2"]
    verdict = GroundTruthJudge(baseline_threshold=0.85).judge(
        item(" ".join(vocab[:shared]), captions=captions, baseline=" ".join(vocab)))
    assert verdict.choice == 1 and verdict.same_as_baseline is same and verdict.hit(1) is not same


def test_plural_forms():
    assert {"box", "boxes"} <= plural_forms("box")
    assert "ponies" in plural_forms("pony") and "knives" in plural_forms("knife")
    assert "people" in plural_forms("person") and "mice" in plural_forms("mouse")


COCO = ["person", "bicycle", "dog", "hot dog", "knife", "teddy bear", "bear"]


@pytest.mark.parametrize("text, index", [
    ("Two men riding bikes", 0),       # synonym, irregular plural
    ("a hot dog on a plate", 3),       # longest overlapping name wins
    ("a dog on a bicycle", 2),         # the first named
    ("some knives on a table", 4),
    ("a teddy bear and a bear", 5),
    ("A brown BEAR.", 6),
    ("puppies", 2),                    # synonym plural
])
def test_object_naming_by_category_synonym_and_plural(text, index):
    verdict = GroundTruthJudge().judge(JudgeItem(text=text, n_panels=0, category_names=COCO))
    assert verdict.choice == index and verdict.hit(index)


def test_object_naming_with_custom_synonyms_and_nothing_named():
    judge = GroundTruthJudge(synonyms={"circle": ["disc", "round thing"]})
    shapes = ["circle", "square"]
    assert judge.judge(JudgeItem(text="a red round thing", n_panels=0, category_names=shapes)).choice == 0
    assert judge.judge(JudgeItem(text="two squares", n_panels=0, category_names=shapes)).choice == 1
    verdict = judge.judge(JudgeItem(text="a green star", n_panels=0, category_names=shapes))
    assert verdict.junk and verdict.choice is None


# --------------------------------------------------------------------------- caption similarity


class BagOfWords:
    """A fake sentence encoder: word counts over a fixed vocabulary; records what it encodes."""

    vocab = ["red", "blue", "green", "circle", "star", "square", "big", "small"]

    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        rows = [[t.lower().split().count(w) for w in self.vocab] for t in texts]
        return np.asarray(rows, dtype=float)


SIM_CAPTIONS = ["a red circle", "a blue star", "a green square"]


def sim_item(text: str, **kw) -> JudgeItem:
    return JudgeItem(text=text, n_panels=3, captions=SIM_CAPTIONS, **kw)


def test_caption_similarity_forced_choice():
    judge = CaptionSimilarityJudge(encoder=BagOfWords(), min_similarity=0.1)
    verdict = judge.judge(sim_item("there is a big blue star here"))
    assert verdict.choice == 2 and verdict.hit(2)
    assert len(verdict.detail["similarities"]) == 3
    assert np.argmax(verdict.detail["similarities"]) == 1


def test_caption_similarity_junk_below_threshold_and_by_rule():
    encoder = BagOfWords()
    judge = CaptionSimilarityJudge(encoder=encoder, min_similarity=0.3)
    verdict = judge.judge(sim_item("the weather is nice today"))
    assert verdict.junk and verdict.choice is None and verdict.detail["junk"] == "below min_similarity"
    encoder.seen.clear()
    assert judge.judge(sim_item("")).junk
    assert encoder.seen == []  # rule junk needs no embedding


def test_caption_similarity_baseline_rule():
    judge = CaptionSimilarityJudge(encoder=BagOfWords())
    verdict = judge.judge(sim_item("a red circle", baseline="A red circle."))
    assert verdict.choice == 1 and verdict.same_as_baseline and not verdict.hit(1)


def test_caption_embeddings_are_computed_once():
    encoder = BagOfWords()
    judge = CaptionSimilarityJudge(encoder=encoder)
    judge.judge_many([sim_item("red circle"), sim_item("blue star"), sim_item("green square")])
    assert sorted(encoder.seen) == sorted(SIM_CAPTIONS + ["red circle", "blue star", "green square"])


def test_caption_similarity_object_naming():
    judge = CaptionSimilarityJudge(encoder=BagOfWords())
    verdict = judge.judge(JudgeItem(text="a green square", n_panels=0, category_names=["circle", "square"]))
    assert verdict.choice == 1


def test_caption_similarity_needs_captions_and_a_model():
    with pytest.raises(JudgeError, match="captions"):
        CaptionSimilarityJudge(encoder=BagOfWords()).judge(JudgeItem(text="red circle", n_panels=3))
    with pytest.raises(JudgeError, match="embedding model"):
        CaptionSimilarityJudge()


def test_missing_sentence_transformers_is_a_clear_error(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(JudgeError) as info:
        make_judge(f"captions:{tmp_path}").check_ready()
    assert "pip install" in info.value.fix


def build_tiny_sentence_transformer(path) -> None:
    """A 1-layer BERT with a word-level tokenizer, wrapped as a sentence-transformers model."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    try:
        from sentence_transformers.sentence_transformer import modules
    except ImportError:  # sentence-transformers < 5.4
        from sentence_transformers import models as modules
    from sentence_transformers import SentenceTransformer

    words = sorted({w for c in CAPTIONS for w in c.split()} | {"a", "the", "is", "there"})
    vocab = {tok: i for i, tok in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(path / "bert")
    tokenizer.save_pretrained(path / "bert")
    model = SentenceTransformer(modules=[modules.Transformer(str(path / "bert")), modules.Pooling(32, "mean")],
                                device="cpu")
    model.save(str(path / "st"))


def test_caption_similarity_with_a_tiny_local_sentence_transformer(tmp_path):
    pytest.importorskip("sentence_transformers")
    build_tiny_sentence_transformer(tmp_path)
    judge = make_judge(f"captions:{tmp_path / 'st'}", device="cpu", min_similarity=-1.0)
    judge.check_ready()
    for k, caption in enumerate(CAPTIONS, start=1):  # identical text, identical embedding
        verdict = judge.judge(item(caption))
        assert verdict.choice == k and verdict.detail["similarities"][k - 1] == pytest.approx(1.0, abs=1e-4)


# --------------------------------------------------------------------------- LLM judges


class FakeChatServer(ThreadingHTTPServer):
    """Answers POSTs with canned (status, body, headers) replies in order; records every request."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies: list[tuple[int, dict, dict]] = []
        self.requests: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                     "body": body})
        status, reply, headers = self.server.replies.pop(0) if self.server.replies else (500, {}, {})
        data = json.dumps(reply).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = FakeChatServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def anthropic_reply(text: str) -> tuple[int, dict, dict]:
    return 200, {"content": [{"type": "text", "text": text}]}, {}


def openai_reply(text: str) -> tuple[int, dict, dict]:
    return 200, {"choices": [{"message": {"role": "assistant", "content": text}}]}, {}


STRIP = Image.new("RGB", (36, 6), (255, 255, 255))


def llm_item(text: str = "a purple cross", key: str = "vqa|gaze|100|s1|5", **kw) -> JudgeItem:
    return JudgeItem(text=text, n_panels=6, image=STRIP, key=key, **kw)


def anthropic(server, tmp_path, sleeps=None, **kw) -> AnthropicJudge:
    kw.setdefault("cache", tmp_path / "verdicts.jsonl")
    return AnthropicJudge("claude-test", api_key="sk-test", base_url=server.url,
                          sleep=(sleeps.append if sleeps is not None else lambda s: None), **kw)


def test_anthropic_request_and_verdict(server, tmp_path):
    server.replies = [anthropic_reply('{"panel": 5}')]
    verdict = anthropic(server, tmp_path).judge(llm_item())
    assert verdict.choice == 5 and verdict.hit(5) and verdict.judge == "anthropic:claude-test"
    request = server.requests[0]
    assert request["path"] == "/v1/messages"
    assert request["headers"]["x-api-key"] == "sk-test" and request["headers"]["anthropic-version"]
    image, text = request["body"]["messages"][0]["content"]
    png = Image.open(io.BytesIO(base64.b64decode(image["source"]["data"])))
    assert png.size == STRIP.size and image["source"]["media_type"] == "image/png"
    assert "a purple cross" in text["text"] and '{"panel"' in text["text"]
    assert request["body"]["model"] == "claude-test"


def test_retries_429_and_5xx_with_backoff(server, tmp_path):
    server.replies = [(429, {"error": "rate"}, {"Retry-After": "3"}), (503, {"error": "busy"}, {}),
                      anthropic_reply('{"panel": 2}')]
    sleeps: list[float] = []
    verdict = anthropic(server, tmp_path, sleeps, backoff_s=0.5).judge(llm_item())
    assert verdict.choice == 2
    assert len(server.requests) == 3
    assert sleeps == [3.0, 1.0]  # Retry-After honoured, then 0.5 * 2**1


def test_gives_up_after_max_retries(server, tmp_path):
    server.replies = [(500, {}, {})] * 3
    sleeps: list[float] = []
    with pytest.raises(JudgeError, match="after 3 attempts"):
        anthropic(server, tmp_path, sleeps, max_retries=2, backoff_s=1.0).judge(llm_item())
    assert len(server.requests) == 3 and sleeps == [1.0, 2.0]


def test_network_errors_are_retried(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []
    judge = AnthropicJudge("claude-test", api_key="k", base_url=f"http://127.0.0.1:{port}", max_retries=2,
                           sleep=sleeps.append, timeout_s=5)
    with pytest.raises(JudgeError, match="after 3 attempts"):
        judge.judge(llm_item())
    assert len(sleeps) == 2


def test_client_errors_are_not_retried(server, tmp_path):
    server.replies = [(401, {"error": "bad key"}, {})]
    with pytest.raises(JudgeError) as info:
        anthropic(server, tmp_path).judge(llm_item())
    assert "401" in info.value.problem and "ANTHROPIC_API_KEY" in info.value.fix
    assert len(server.requests) == 1


def test_verdicts_are_cached_in_memory_and_on_disk(server, tmp_path):
    server.replies = [anthropic_reply('{"panel": 5}'), anthropic_reply('{"panel": 1}')]
    judge = anthropic(server, tmp_path)
    first = judge.judge(llm_item())
    again = judge.judge(llm_item(baseline="a purple cross"))  # cached choice, rules re-applied
    assert len(server.requests) == 1
    assert again.choice == 5 and again.detail["cached"] and again.same_as_baseline and not first.detail["cached"]
    reopened = anthropic(server, tmp_path)  # a new process re-judging the same run
    assert reopened.judge(llm_item()).choice == 5 and len(server.requests) == 1
    reopened.judge(llm_item(key="vqa|gaze|100|s2|5"))  # another item: a new request
    assert len(server.requests) == 2
    lines = (tmp_path / "verdicts.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["choice"] == 5


def test_junk_answers_cost_no_request(server, tmp_path):
    verdict = anthropic(server, tmp_path).judge(llm_item("  "))
    assert verdict.junk and server.requests == []


def test_null_reply_is_junk_and_unreadable_reply_is_asked_again(server, tmp_path):
    server.replies = [anthropic_reply('{"panel": null}')]
    verdict = anthropic(server, tmp_path).judge(llm_item())
    assert verdict.junk and verdict.choice is None and not verdict.hit(5)
    server.replies = [anthropic_reply("I cannot tell."), anthropic_reply('{"panel": 3}')]
    judge = anthropic(server, tmp_path)
    unread = judge.judge(llm_item(key="other"))
    assert unread.choice is None and not unread.junk and unread.detail["status"] == "unparsed"
    assert judge.judge(llm_item(key="other")).choice == 3  # not cached: asked again


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


def test_openai_compatible_request_and_object_naming(server, tmp_path):
    server.replies = [openai_reply('```json\n{"panel": "2"}\n```'), openai_reply('{"category": 2}')]
    judge = make_judge(f"openai:tiny-vlm@{server.url}/v1", api_key="sk-o", cache=tmp_path / "v.jsonl",
                       sleep=lambda s: None)
    assert isinstance(judge, OpenAICompatibleJudge)
    judge.check_ready()
    assert judge.judge(llm_item()).choice == 2
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-o"
    text, image = request["body"]["messages"][0]["content"]
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    coco = judge.judge(JudgeItem(text="a square", n_panels=0, image=STRIP, key="coco|1",
                                 category_names=["circle", "square"]))
    assert coco.choice == 1  # the prompt numbers from 1; verdicts index category_names
    assert "2. square" in server.requests[1]["body"]["messages"][0]["content"][0]["text"]


def test_missing_key_or_endpoint_fails_in_check_ready(monkeypatch):
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(JudgeError) as info:
        make_judge("anthropic:claude-test").check_ready()
    assert "ANTHROPIC_API_KEY" in info.value.fix
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-env")
    make_judge("anthropic:claude-test").check_ready()
    with pytest.raises(JudgeError, match="API key"):
        make_judge("openai:gpt-test@http://localhost:8000/v1").check_ready()
    with pytest.raises(JudgeError, match="endpoint"):
        make_judge("openai:gpt-test", api_key="sk").check_ready()
    make_judge("openai:local@http://localhost:8000/v1", require_key=False).check_ready()


def test_llm_judge_needs_the_image(server, tmp_path):
    with pytest.raises(JudgeError, match="image"):
        anthropic(server, tmp_path).judge(JudgeItem(text="a red circle", n_panels=6, key="k"))


# --------------------------------------------------------------------------- make_judge


def test_make_judge_specs():
    assert isinstance(make_judge("truth"), GroundTruthJudge)
    captions = make_judge("captions:/models/minilm")
    assert isinstance(captions, CaptionSimilarityJudge) and captions.name == "captions:/models/minilm"
    claude = make_judge("anthropic:claude-x")
    assert isinstance(claude, AnthropicJudge) and claude.model == "claude-x"
    local = make_judge("openai:org/model@7b@https://host:8443/v1")
    assert (local.model, local.base_url) == ("org/model@7b", "https://host:8443/v1")


@pytest.mark.parametrize("spec", ["gpt", "captions:", "truth:x", "anthropic:", ""])
def test_unknown_judge_spec_is_a_clear_error(spec):
    with pytest.raises(JudgeError) as info:
        make_judge(spec)
    assert "truth" in info.value.fix
