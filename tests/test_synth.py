"""Synthetic data and the bundled tiny model: what they promise, checked fast."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gazeheads import prompts, synth
from gazeheads.tiny import model_path, vocab


def test_strips_are_deterministic_per_seed():
    a_panels, a_caps, a_attrs = synth.make_strip_panels(7)
    b_panels, b_caps, b_attrs = synth.make_strip_panels(7)
    assert a_caps == b_caps and a_attrs == b_attrs
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a_panels, b_panels))
    assert synth.make_strip_panels(8)[1] != a_caps


def test_captions_follow_attributes_and_name_one_panel_each():
    for seed in range(20):
        panels, caps, attrs = synth.make_strip_panels(seed, n_panels=6)
        assert len(panels) == len(caps) == len(attrs) == 6
        assert caps == [f"{a['colour']} {a['shape']}" for a in attrs]
        assert len({a["colour"] for a in attrs}) == 6  # the first word alone names the panel
        assert all(a["colour"] in synth.COLOURS and a["shape"] in synth.SHAPES for a in attrs)
        assert all(p.size == (synth.PANEL_SIZE, synth.PANEL_SIZE) for p in panels)


def test_panel_shows_its_colour():
    panels, _, attrs = synth.make_strip_panels(3)
    for panel, a in zip(panels, attrs):
        centre_pixels = {panel.getpixel((x, y)) for x in range(28, 37) for y in range(28, 37)}
        shape_outline_only = a["shape"] == "ring"  # a ring's centre is background
        assert shape_outline_only or synth.COLOURS[a["colour"]] in centre_pixels


def test_strip_layout_puts_each_panel_on_two_token_columns():
    strip = synth.make_strip(5)
    assert strip.image.size == (6 * 64, 64)
    assert strip.panel_boxes == [(64 * k, 0, 64 * (k + 1), 64) for k in range(6)]
    assert strip.captions == synth.make_strip_panels(5)[1]


def test_write_synthetic_comics_layout(tmp_path):
    folders = synth.write_synthetic_comics(tmp_path, n_strips=2, seed=11)
    assert [f.name for f in folders] == ["synth_000011", "synth_000012"]
    for folder, seed in zip(folders, (11, 12)):
        assert sorted(p.name for p in folder.glob("p*.png")) == [f"p{k}.png" for k in range(1, 7)]
        caps = json.loads((folder / "captions.json").read_text())
        attrs = json.loads((folder / "attributes.json").read_text())
        assert caps == synth.make_strip_panels(seed)[1]
        assert [f"{a['colour']} {a['shape']}" for a in attrs] == caps


def test_scenes_coco_json_is_valid(tmp_path):
    path = synth.write_synthetic_scenes(tmp_path, n_images=12, seed=3)
    coco = json.loads(path.read_text())
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    assert set(cats.values()) == set(synth.SHAPES)
    images = {im["id"]: im for im in coco["images"]}
    assert len(images) == 12 and all((tmp_path / im["file_name"]).is_file() for im in images.values())
    per_image: dict[int, list] = {}
    for ann in coco["annotations"]:
        im = images[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0
        assert x + w <= im["width"] and y + h <= im["height"]
        assert 0 < ann["area"] <= w * h
        assert ann["category_id"] in cats and ann["caption"] == f"{ann['colour']} {cats[ann['category_id']]}"
        per_image.setdefault(ann["image_id"], []).append(ann)
    for anns in per_image.values():
        assert 2 <= len(anns) <= 4
        assert len({a["category_id"] for a in anns}) == len(anns)  # a category names one object
    again = json.loads(synth.write_synthetic_scenes(tmp_path / "again", n_images=12, seed=3).read_text())
    assert again["annotations"] == coco["annotations"]


def test_scene_answer_is_the_clearly_largest_object():
    for seed in range(30):
        _, objects = synth.make_scene(seed)
        areas = [o.bbox[2] * o.bbox[3] for o in objects]
        assert synth.scene_answer(objects) == objects[0].caption
        assert areas[0] >= 1.4 * max(areas[1:])


def test_vocabulary_covers_every_prompt_and_answer():
    vocabulary = vocab.vocabulary()
    for text in vocab.corpus():
        assert all(w in vocabulary for w in vocab.words(text)), text
    tok = vocab.build_tokenizer()
    ids = tok.encode(prompts.discovery_question(3, 6)).ids
    assert vocabulary[vocab.UNK] not in ids


# ------------------------------------------------------------------ the bundled model


@pytest.fixture(scope="module")
def tiny():
    import torch
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    path = model_path()
    if not (path / "model.safetensors").is_file():
        pytest.fail(f"the bundled tiny model is missing from {path}")
    torch.manual_seed(0)
    processor = AutoProcessor.from_pretrained(path)
    model = Qwen3VLForConditionalGeneration.from_pretrained(path, attn_implementation="sdpa").eval()
    return processor, model


def _greedy(processor, model, images, questions, max_new_tokens=4):
    import torch

    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for q in questions
    ]
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True)
    assert "mm_token_type_ids" in inputs
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return [s.strip() for s in processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)]


def test_bundled_model_is_small_and_standard():
    path = model_path()
    files = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "MODEL_CARD.md"} <= files
    assert sum(p.stat().st_size for p in path.iterdir()) <= 20 * 2**20
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl"


def test_bundled_model_answers_the_per_panel_question(tiny):
    processor, model = tiny
    strips = [synth.make_strip(seed) for seed in (900_001, 900_002)]  # never training strips
    images, questions, expected = [], [], []
    for strip in strips:
        for k in range(1, strip.n_panels + 1):
            images.append(strip.image)
            questions.append(prompts.discovery_question(k, strip.n_panels))
            expected.append(strip.captions[k - 1])
    got = _greedy(processor, model, images, questions)
    assert sum(g == e for g, e in zip(got, expected)) >= len(expected) - 1, list(zip(got, expected))


def test_bundled_model_answers_the_ambiguous_question_from_panel_one(tiny):
    processor, model = tiny
    strips = [synth.make_strip(seed) for seed in (900_003, 900_004, 900_005)]
    got = _greedy(processor, model, [s.image for s in strips], [prompts.NARRATION_QUESTION] * 3)
    assert got == [s.captions[0] for s in strips]


def test_bundled_model_loads_with_eager_attention(tiny):
    from transformers import Qwen3VLForConditionalGeneration

    processor, _ = tiny
    model = Qwen3VLForConditionalGeneration.from_pretrained(model_path(), attn_implementation="eager").eval()
    strip = synth.make_strip(900_006)
    assert _greedy(processor, model, [strip.image], [prompts.discovery_question(2, 6)]) == [strip.captions[1]]
