"""Judges: shared rules, ground truth, caption similarity, judge specs and make_judge.

The LLM judges are tested against a local fake vendor server in test_judges_llm.py and
test_judges_vendors.py.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from gazeheads.evaluation.judges import (
    AnthropicJudge,
    CaptionSimilarityJudge,
    DeferredJudge,
    GroundTruthJudge,
    JudgeError,
    JudgeItem,
    JudgeSpec,
    OpenAIJudge,
    Verdict,
    junk_reason,
    make_judge,
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


def test_judge_many_equals_judge_one_by_one():
    texts = ["a blue star", "", "red circle " * 6, "an orange ring and a red circle", "a cat on a sofa"]
    items = [item(t, baseline="a blue star") for t in texts]
    judge = GroundTruthJudge(baseline_threshold=0.85)
    assert judge.judge_many(items) == [judge.judge(it) for it in items]
    encoder = BagOfWords()
    captions = CaptionSimilarityJudge(encoder=encoder)
    sims = [sim_item(t) for t in ("red circle", "a big blue star", "green square", "")]
    assert captions.judge_many(sims) == [captions.judge(it) for it in sims]


# --------------------------------------------------------------------------- specs and make_judge


def test_make_judge_specs():
    assert isinstance(make_judge("truth"), GroundTruthJudge)
    captions = make_judge("captions:/models/minilm")
    assert isinstance(captions, CaptionSimilarityJudge) and captions.name == "captions:/models/minilm"
    claude = make_judge("anthropic:claude-x")
    assert isinstance(claude, AnthropicJudge) and claude.model == "claude-x" and claude.name == "anthropic:claude-x"
    local = make_judge("openai:org/model@7b@https://host:8443/v1/")
    assert isinstance(local, OpenAIJudge)
    assert (local.model, local.base_url) == ("org/model@7b", "https://host:8443/v1")


def test_anthropic_defaults_to_the_published_judge_model():
    assert make_judge("anthropic").model == "claude-sonnet-4-6"
    assert JudgeSpec.parse("anthropic@http://127.0.0.1:9").base_url == "http://127.0.0.1:9"


@pytest.mark.parametrize("text", [
    "truth", "truth,baseline_threshold=0.85", "captions:/m/st,device=cpu,min_similarity=0.3",
    "anthropic:claude-x", "anthropic:claude-x@http://127.0.0.1:8080,batch=always,batch_wait_s=none",
    "openai:gpt-x@https://api.openai.com/v1,temperature=auto,require_key=false,batch_min=5",
])
def test_spec_round_trip(text):
    spec = JudgeSpec.parse(text)
    assert JudgeSpec.parse(str(spec)) == spec
    assert hash(spec) == hash(JudgeSpec.parse(str(spec)))  # frozen, usable as a key


def test_spec_options_are_typed_and_reach_the_judge(tmp_path):
    spec = JudgeSpec.parse("anthropic:claude-x,batch=ALWAYS,batch_min=5,poll_s=0.5,batch_wait_s=none,"
                           "require_key=no,image_format=png")
    assert spec.kwargs() == {"batch": "always", "batch_min": 5, "poll_s": 0.5, "batch_wait_s": None,
                             "require_key": False, "image_format": "png"}
    assert spec.calls_model and spec.name == "anthropic:claude-x"
    judge = make_judge(spec, cache_dir=tmp_path, batch_min=7)  # keyword arguments win over the spec
    assert (judge.batch, judge.batch_min, judge.poll_s, judge.require_key) == ("always", 7, 0.5, False)
    assert judge.cache.path == tmp_path / "verdicts.jsonl" and judge.ledger.path == tmp_path / "judge-batches.jsonl"
    truth = make_judge("truth,baseline_threshold=0.85", cache_dir=tmp_path)  # no model, no cache
    assert truth.baseline_threshold == 0.85 and not JudgeSpec.parse("truth").calls_model
    assert make_judge("captions:/m,min_similarity=0.5", encoder=BagOfWords()).min_similarity == 0.5


@pytest.mark.parametrize("spec, problem, fix", [
    ("gpt", "unknown judge kind 'gpt'", "truth"),
    ("", "empty", "anthropic"),
    ("captions:", "no embedding model", "captions:<sentence-transformers"),
    ("truth:x", "takes no model", "truth"),
    ("openai:", "no model named", "openai:<model>"),
    ("openai:m@localhost:8000/v1", "has no scheme", "http://"),
    ("anthropic:m@ftp://host", "not an http(s) URL", "http://localhost:8000/v1"),
    ("anthropic:m,colour=red", "no option 'colour'", "batch=<auto | always | never>"),
    ("anthropic:m,batch=sometimes", "bad value 'sometimes' for batch", "batch=<auto | always | never>"),
    ("anthropic:m,batch_min=0", "bad value '0' for batch_min", "batch_min=<int>"),
    ("anthropic:m,temperature=0", "no option 'temperature'", "max_tokens"),
    ("truth,device=cpu", "no option 'device'", "baseline_threshold"),
])
def test_bad_specs_say_what_is_wrong_and_how_to_write_them(spec, problem, fix):
    with pytest.raises(JudgeError) as info:
        make_judge(spec)
    assert problem in info.value.problem and fix in info.value.fix


def test_specs_parse_without_the_vendor_packages(monkeypatch):
    monkeypatch.setitem(sys.modules, "anthropic", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "openai", None)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk")
    judge = make_judge("anthropic:claude-x,batch=always")  # parsing and building need no client package
    with pytest.raises(JudgeError) as info:
        judge.check_ready()
    assert 'pip install "gazeheads[anthropic]"' in info.value.fix
    with pytest.raises(JudgeError) as info:
        make_judge("openai:gpt-x", api_key="sk").check_ready()
    assert 'pip install "gazeheads[openai]"' in info.value.fix


def test_deferred_judge_gives_placeholders_under_the_same_name():
    class Ready(GroundTruthJudge):
        checked = False

        def check_ready(self):
            Ready.checked = True

    deferred = DeferredJudge(Ready())
    verdicts = deferred.judge_many([item("a blue star"), item("")])
    assert [v.choice for v in verdicts] == [None, None] and all(v.detail["deferred"] for v in verdicts)
    assert deferred.name == "truth" and not verdicts[0].hit(2)
    deferred.check_ready()
    assert Ready.checked
