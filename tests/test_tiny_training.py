"""Training the tiny model: the emergent recipe is plain task training, runs are reproducible."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from gazeheads import synth, prompts
from gazeheads.tiny import build, reinforced, tasks, train, vocab

TINY_SIZES = '{"text_layers": 2, "vision_depth": 1, "deepstack": [0]}'


def _run(out, *extra: str) -> dict:
    argv = ["--out", str(out), "--steps", "3", "--batch", "4", "--threads", "1", "--eval-strips", "0",
            "--sizes", TINY_SIZES, *extra]
    assert train.main(argv) == 0
    return json.loads((out / "gazeheads.json").read_text())


def test_training_inputs_match_the_processor():
    encoder = train.Encoder(build.build_processor())
    rng = random.Random(0)
    encoder.check([tasks.sample_example(rng, task) for task in tasks.TASK_NAMES])


def _drawn(monkeypatch) -> list:
    """Record every strip and scene the task sampler draws: (captions, ...) of the last image."""
    drawn = []
    real_strip, real_scene = synth.make_strip, synth.make_scene

    def strip(rng, *a, **kw):
        s = real_strip(rng, *a, **kw)
        drawn.append(s.captions)
        return s

    def scene(rng, *a, **kw):
        image, objects = real_scene(rng, *a, **kw)
        drawn.append([o.caption for o in objects])
        return image, objects

    monkeypatch.setattr(synth, "make_strip", strip)
    monkeypatch.setattr(synth, "make_scene", scene)
    return drawn


def _said(answer: str) -> list[str]:
    """The captions of an answer: one, or a narration's, separated by " . " (ordinals, "panel" dropped)."""
    segments = [c.split() for c in answer.replace(f" {vocab.CAPTION_SEPARATOR}", " |").split("|") if c.strip()]
    return [" ".join(s[s.index(vocab.PANEL_WORD) + 1:] if vocab.PANEL_WORD in s else s) for s in segments]


def test_every_task_answers_with_captions_of_its_own_image(monkeypatch):
    drawn = _drawn(monkeypatch)
    rng = random.Random(5)
    for task in tasks.TASK_NAMES:
        for _ in range(30):
            ex = tasks.sample_example(rng, task, follow_prob=0.0)
            captions = drawn[-1]
            said = _said(ex.answer)
            assert said and all(c in captions for c in said), (task, ex.answer, captions)
            if task == "panel":
                assert said == [captions[ex.asked]]
            elif task in ("narration", "vqa"):
                assert said == [captions[0]]
            elif task == "narrate":
                assert said == captions
            elif task == "narrate_counted":
                assert said == captions
                assert ex.answer.split(f" {vocab.CAPTION_SEPARATOR}")[0] == f"1st panel {captions[0]}"
                assert ex.answer.split()[-5:-3] == [prompts.ordinal(len(captions)), "panel"]
            elif task == "narrate_marked":
                assert said == captions
                assert ex.answer == " ".join(f"panel {c} ." for c in captions)
            elif task == "narrate_any":
                assert sorted(said) == sorted(captions)  # every panel once
            elif task in ("scene", "scene_main"):
                assert said == [captions[0]]  # objects come largest first


def test_any_tasks_spread_their_answers_over_the_panels(monkeypatch):
    drawn = _drawn(monkeypatch)
    rng = random.Random(2)
    for task in ("narration_any", "vqa_any", "scene_any"):
        places = set()
        for _ in range(150):
            ex = tasks.sample_example(rng, task)
            places.add(drawn[-1].index(ex.answer))
        if task == "scene_any":
            assert places >= {0, 1, 2}, places  # scenes hold 3 or 4 objects (rarely 2)
        else:
            assert places == set(range(6)), (task, places)


def test_follow_examples_feed_another_colour_and_finish_its_caption(monkeypatch):
    drawn = _drawn(monkeypatch)
    rng = random.Random(4)
    for _ in range(60):
        ex = tasks.sample_example(rng, "panel", follow_prob=1.0)
        captions = drawn[-1]
        assert ex.forced == (0,) and ex.answer in captions and ex.answer != captions[ex.asked]
    ex = tasks.sample_example(rng, "narrate", follow_prob=1.0)
    (jump,) = ex.forced  # the forced colour starts the segment where the narration jumps
    said, captions = _said(ex.answer), drawn[-1]
    i, j = jump // 3, captions.index(_said(ex.answer)[jump // 3])
    assert said == captions[:i] + captions[j:] and j != i


def test_counted_narration_jumps_to_a_forced_colour_and_keeps_counting(monkeypatch):
    drawn = _drawn(monkeypatch)
    rng = random.Random(8)
    for _ in range(40):
        ex = tasks.sample_example(rng, "narrate_counted", follow_prob=1.0)
        captions, said, words = drawn[-1], _said(ex.answer), ex.answer.split()
        (forced,) = ex.forced
        i = forced // 5
        assert words[forced] == said[i].split()[0]  # the forced word is the colour of segment i
        assert said[i] in captions and said[i] != captions[i]  # another panel's caption
        assert said[:i] + said[i + 1:] == captions[:i] + captions[i + 1:]  # the other segments stay in order
        assert words[::5] == [prompts.ordinal(k) for k in range(1, 7)]


def test_marked_narration_jumps_to_a_forced_colour_after_the_panel_word_and_goes_on_from_there(monkeypatch):
    drawn = _drawn(monkeypatch)
    rng = random.Random(9)
    for _ in range(40):
        ex = tasks.sample_example(rng, "narrate_marked", follow_prob=1.0)
        captions, said, words = drawn[-1], _said(ex.answer), ex.answer.split()
        (forced,) = ex.forced
        i, j = forced // 4, captions.index(said[forced // 4])
        assert forced % 4 == 1 and words[forced] == said[i].split()[0]  # the colour, after "panel"
        assert j != i and said == captions[:i] + captions[j:]  # then on from panel j, as plain narration
        assert words[::4] == ["panel"] * len(said)


@pytest.mark.parametrize("task, question, places", [
    ("scene_named", prompts.SCENE_QUESTION, {0, 1, 2}),  # not only the largest object
    ("narration_named", prompts.NARRATION_QUESTION, set(range(6))),  # any panel: which one to name is never taught
])
def test_named_tasks_feed_the_colour_of_a_random_region_and_teach_only_the_shape(monkeypatch, task, question, places):
    drawn = _drawn(monkeypatch)
    rng = random.Random(6)
    seen = set()
    for _ in range(120):
        ex = tasks.sample_example(rng, task, follow_prob=0.0)  # the colour is always given
        assert ex.forced == (0,) and ex.question == question and ex.answer in drawn[-1]
        seen.add(drawn[-1].index(ex.answer))
    assert seen >= places


def test_the_main_object_question_teaches_scenes_without_the_box_steering_prompt(monkeypatch):
    drawn = _drawn(monkeypatch)
    rng = random.Random(3)
    followed = 0
    for _ in range(80):
        ex = tasks.sample_example(rng, "scene_main", follow_prob=0.5)
        assert ex.question == vocab.SCENE_MAIN_QUESTION != prompts.SCENE_QUESTION
        if ex.forced:  # goes on from another object's colour, fed as input
            followed += 1
            assert ex.forced == (0,) and ex.answer in drawn[-1][1:]
        else:
            assert ex.answer == drawn[-1][0]  # the largest object
    assert 20 < followed < 60
    assert all(w in vocab.vocabulary() for w in vocab.words(vocab.SCENE_MAIN_QUESTION))  # no unknown words


def test_a_narration_style_model_records_its_segment_length(tmp_path):
    meta = _run(tmp_path / "counted", "--tasks", '{"panel": 0.5, "narrate_counted": 0.5}')
    assert meta["layout"]["segment_tokens"] == 5
    assert _run(tmp_path / "plain")["layout"]["segment_tokens"] == 3
    marked = _run(tmp_path / "marked", "--tasks", '{"panel": 0.5, "narrate_marked": 0.5}')
    assert marked["layout"]["segment_tokens"] == 4  # "panel <colour> <shape> ."
    with pytest.raises(SystemExit, match="narrate and narrate_counted cannot be mixed"):
        _run(tmp_path / "both", "--tasks", '{"narrate": 0.5, "narrate_counted": 0.5}')
    with pytest.raises(SystemExit, match="narrate_counted and narrate_marked cannot be mixed"):
        _run(tmp_path / "both", "--tasks", '{"narrate_marked": 0.5, "narrate_counted": 0.5}')
    with pytest.raises(SystemExit, match="--tasks-later: narrate and narrate_marked cannot be mixed"):
        _run(tmp_path / "both", "--tasks-later", '{"narrate": 0.5, "narrate_marked": 0.5}', "--tasks-from", "0.5")


def test_the_task_curriculum_switches_weights_and_the_model_keeps_its_final_narration_style(tmp_path):
    recipe = train.Recipe(tasks={"panel": 0.5, "narrate": 0.5}, steps=10,
                          tasks_later={"panel": 0.5, "narrate_counted": 0.5}, tasks_from=0.4)
    assert [train.step_tasks(recipe, s) for s in (0, 3)] == [recipe.tasks] * 2
    assert [train.step_tasks(recipe, s) for s in (4, 9)] == [recipe.tasks_later] * 2
    assert train.switch_step(train.Recipe(tasks={"panel": 1.0}, steps=10)) is None  # no curriculum
    meta = _run(tmp_path / "switch", "--tasks", '{"panel": 0.5, "narrate": 0.5}',
                "--tasks-later", '{"panel": 0.5, "narrate_counted": 0.5}', "--tasks-from", "0.5")
    assert meta["layout"]["segment_tokens"] == 5  # the style it ends with
    assert meta["training"]["tasks_later"] == {"panel": 0.5, "narrate_counted": 0.5}
    card = (tmp_path / "switch" / "MODEL_CARD.md").read_text()
    assert meta["training"]["tasks_switch_step"] == 2  # ceil(0.5 * 3): steps 2 on use the later weights
    assert "| narrate_counted |" in card and "weight from step 2 |" in card
    for extra, match in ((["--tasks-later", '{"panel": 1}'], "go together"),
                         (["--tasks-later", "{panel", "--tasks-from", "0.5"], "not JSON"),
                         (["--tasks-later", '{"panel": 1}', "--tasks-from", "1.5"], "between 0 and 1")):
        with pytest.raises(SystemExit, match=match):
            _run(tmp_path / "bad", *extra)


def test_the_panel_curriculum_draws_panel_counts_and_then_six(monkeypatch):
    recipe = train.Recipe(tasks={"panel": 1.0}, steps=100, panels=(2, 3, 4), panels_until=0.5)
    rng = random.Random(0)
    early = {train.strip_panels(rng, recipe, step) for step in range(50)}
    assert early == {2, 3, 4} and {train.strip_panels(rng, recipe, step) for step in range(50, 100)} == {6}
    fixed = random.Random(1)
    assert train.strip_panels(fixed, train.Recipe(tasks={"panel": 1.0}), 0) == 6
    assert fixed.random() == random.Random(1).random()  # a fixed count draws nothing: old recipes' streams stay
    drawn = _drawn(monkeypatch)
    for task in ("panel", "narrate_counted"):
        ex = tasks.sample_example(random.Random(2), task, n_panels=3)
        assert len(drawn[-1]) == 3 and ex.image.size == (3 * synth.PANEL_SIZE, synth.STRIP_HEIGHT)
    assert "three-panel comic strip" in tasks.sample_example(random.Random(2), "panel", n_panels=3).question
    with pytest.raises(SystemExit, match="panel counts"):
        train.main(["--out", "unused", "--panels", "2,six"])


def test_unknown_tasks_and_head_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        tasks.sample_example(random.Random(0), "nonsense")
    with pytest.raises(SystemExit, match="unknown task"):
        _run(tmp_path / "a", "--tasks", '{"nonsense": 1}')
    for option in (["--steer-prob", "0.3"], ["--gaze-anchor", "0.1"], ["--steer-heads", "4"]):
        with pytest.raises(SystemExit, match="recipe reinforced"):
            _run(tmp_path / "b", *option)


def test_emergent_training_is_language_modelling_on_answers_only(tmp_path, monkeypatch):
    """No hook on any attention module, no steered example, and the loss is the answer cross-entropy."""
    seen = []
    real_loss = train.example_loss

    def spy(model, batch):
        layers = model.model.language_model.layers
        assert all(not layer.self_attn._forward_pre_hooks and not layer.self_attn._forward_hooks for layer in layers)
        assert set(batch) == set(train.MODEL_INPUTS) | {"labels"}  # nothing but model inputs and answer labels
        loss = real_loss(model, batch)
        seen.append(loss.item())
        return loss

    monkeypatch.setattr(train, "example_loss", spy)
    sampled = []
    real_sample = train.sample_example

    def sample(rng, task, **kw):
        ex = real_sample(rng, task, **kw)
        sampled.append(ex)
        return ex

    monkeypatch.setattr(train, "sample_example", sample)
    meta = _run(tmp_path)
    assert len(seen) == 3
    assert sampled and not any(ex.steer for ex in sampled)
    info = meta["training"]
    assert info["recipe"] == "emergent" and info["steer_prob"] == 0 and info["gaze_anchor"] == 0
    assert info["steer_selections"] == [] and "--steer" not in info["command"] and "anchor" not in info["command"]


def test_labels_cover_answer_words_only_and_skip_forced_ones():
    encoder = train.Encoder(build.build_processor())
    ex = tasks.Example(synth.make_strip(3).image, prompts.NARRATION_QUESTION, "red circle", "narration", forced=(0,))
    batch = encoder.batch([ex])
    labels = batch["labels"][0]
    learned = labels[labels != -100].tolist()
    assert learned == encoder.words("circle") + [encoder.im_end]  # the forced colour is input, not target


@pytest.mark.parametrize("recipe", ["emergent", "reinforced"])
def test_training_is_deterministic_and_saves_a_loadable_folder(tmp_path, recipe):
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    extra = ["--recipe", recipe] + (["--steer-start", "0"] if recipe == "reinforced" else [])
    meta = _run(tmp_path / "one", *extra)
    assert meta["training"]["recipe"] == recipe and meta["layout"]["strip_height"] == synth.STRIP_HEIGHT
    assert (tmp_path / "one" / "MODEL_CARD.md").is_file()
    AutoProcessor.from_pretrained(tmp_path / "one")
    Qwen3VLForConditionalGeneration.from_pretrained(tmp_path / "one")
    _run(tmp_path / "two", *extra)
    first = (tmp_path / "one" / "model.safetensors").read_bytes()
    assert (tmp_path / "two" / "model.safetensors").read_bytes() == first
    _run(tmp_path / "other-seed", *extra, "--seed", "1")
    assert (tmp_path / "other-seed" / "model.safetensors").read_bytes() != first


def test_steered_training_examples_describe_their_targets():
    """The reinforced recipe's steered examples: biased image keys only, answers about the targets."""
    rng = random.Random(1)
    names = ("panel", "narration", "vqa", "narrate", "scene")
    examples = [tasks.sample_example(rng, task, steer_prob=1.0) for task in names]
    encoder = train.Encoder(build.build_processor())
    batch = reinforced.add_steering_entries(encoder, examples, encoder.batch(examples), anchors=False)
    for i, ex in enumerate(examples):
        assert ex.steer and not ex.forced
        rows = batch["attention_mask"][i].bool()
        signs = batch["steer_signs"][i][rows]
        img = batch["input_ids"][i] == encoder.pad_img
        assert set(signs[:, img].unique().tolist()) == {-1.0, 1.0}
        assert not signs[:, ~img].any()  # text keys are never biased
    narrate = examples[names.index("narrate")]
    assert narrate.answer.split(" . ")[0] == synth.caption(*narrate.answer.split()[:2])


def test_gaze_anchor_recomputes_the_attention_discovery_measures():
    """The reinforced recipe's gaze anchor sees the same last-row attention as eager attention."""
    from transformers import Qwen3VLForConditionalGeneration

    torch.manual_seed(0)
    config = build.build_config({"text_layers": 2, "vision_depth": 1, "deepstack": [0]})
    config.text_config._attn_implementation = "eager"
    model = Qwen3VLForConditionalGeneration(config).eval()
    encoder = train.Encoder(build.build_processor())
    rng = random.Random(3)
    examples = [tasks.sample_example(rng, "panel") for _ in range(3)] + [tasks.sample_example(rng, "scene")]
    batch = reinforced.add_steering_entries(encoder, examples, encoder.batch(examples), anchors=True)
    rows, last, target = batch["gaze_anchor"]
    assert rows.tolist() == [0, 1, 2]  # only per-panel questions are anchored
    for row in range(3):
        assert target[row].sum() == 4  # a panel is 2 x 2 image tokens
        assert batch["input_ids"][row, last[row]] == encoder.assistant
        assert (batch["input_ids"][row][target[row].bool()] == encoder.pad_img).all()
    trainer = reinforced.SteeringTrainer(model, anchor=True)
    trainer.select([(1, 0), (1, 5)])
    trainer.set_batch(batch)
    with torch.no_grad():
        out = model(**{k: batch[k] for k in train.MODEL_INPUTS}, output_attentions=True)
    trainer.close()
    att = out.attentions[1][rows, :, last]  # (examples, heads, keys)
    expected = torch.stack([-torch.log((att[:, h] * target).sum(-1) + 1e-6).mean() for h in (0, 5)])
    assert torch.allclose(torch.stack(trainer.anchor_losses), expected, atol=1e-5)


def test_the_emergent_page_lists_every_attempt_as_the_card_does():
    """docs/emergent.md carries the same attempts table a trained emergent model's card carries."""
    from gazeheads.tiny.cards import ATTEMPTS, with_attempts

    page = Path(__file__).resolve().parents[1] / "docs" / "emergent.md"
    text = page.read_text(encoding="utf-8")
    assert with_attempts(text) == text, "run `python -m gazeheads.tiny.cards docs/emergent.md`"
    assert all(attempt["result"] in text for attempt in ATTEMPTS)


def test_the_model_card_describes_every_task():
    from gazeheads.tiny import cards

    assert set(cards.TASK_ROWS) == set(tasks.TASK_NAMES)  # a card lists each task of its recipe with its prompt
