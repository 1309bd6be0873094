"""gazeheads on replicas of real checkpoints, one per supported family, in float32 and bfloat16.

Each replica is built from the published configuration of a named checkpoint (tests/replicas,
sources in docs/replicas.md): these tests first hold the replica to the published numbers, then
run gazeheads on it: the adapter counts every image token of the prompt, every panel of a strip
maps to tokens, captured attention rows equal eager attention rows, and a steering bias on three
heads of the last layer changes exactly those heads.
"""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import pytest
import torch

import gazeheads as gh
from gazeheads import hook, prompts
from gazeheads.heads import HeadSet
from gazeheads.regions import UnseenPixelsWarning

from conftest import draw_strip
from replicas import CUTTABLE, REPLICAS, build_replica, cast_model, render, resolve, same
from replicas.core import WORD_ID_BASE
from replicas.runtime import fast_products, vision_once

NAMES = list(REPLICAS)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# Eager attention in bf16 computes the logits in bf16 and rounds the probabilities to bf16 (8 bits of
# mantissa: up to 2^-8 of a probability); the captured rows are float32 softmaxes of the same bf16 q and k.
ATOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}
QUESTION = prompts.discovery_question(3, 6)
STRIP = draw_strip(widths=(64,) * 6, height=64, gap=0)  # 384x64 px, panel k at x = 64(k-1)..64k


def config_roots(name):
    replica = REPLICAS[name]
    processor = replica.make_processor()
    return {"config": replica.build_config(), "image_processor": processor.image_processor,
            "processor": processor, "tokenizer": processor.tokenizer}


# the published numbers (no model needed) ------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_replica_keeps_the_published_numbers(name):
    replica = REPLICAS[name]
    roots = config_roots(name)
    cuts = {cut.path: cut for cut in replica.cuts}
    checked = 0
    for fact in replica.facts:
        assert fact.source in replica.sources, f"{fact.path}: unknown source {fact.source!r}"
        if fact.path.startswith("attention."):
            continue  # needs the model: test_built_model_has_the_published_attention_shape
        expected = fact.value
        if fact.path in cuts:
            assert same(cuts[fact.path].published, fact.value), f"{fact.path}: the cut misstates the published value"
            expected = cuts[fact.path].replica
        actual = resolve(roots, fact.path)
        assert same(actual, expected), f"{replica.checkpoint} {fact.path}: {actual!r}, published {expected!r}"
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("name", NAMES)
def test_only_depth_mlp_width_and_tying_are_cut(name):
    replica = REPLICAS[name]
    facts = {fact.path: fact for fact in replica.facts}
    for cut in replica.cuts:
        assert cut.path.rsplit(".", 1)[-1] in CUTTABLE, f"{cut.path} may not be cut"
        assert cut.path in facts, f"{cut.path}: a cut needs the published fact it replaces"
    kept = ("num_attention_heads", "num_key_value_heads", "hidden_size", "vocab_size", "head_dim", "patch_size")
    assert not [c.path for c in replica.cuts if c.path.rsplit(".", 1)[-1] in kept]


@pytest.mark.parametrize("name", NAMES)
def test_chat_template_renders_like_the_published_one(name):
    replica = REPLICAS[name]
    tokenizer = replica.make_processor().tokenizer
    assert render(tokenizer, QUESTION) == replica.prompt.format(question=QUESTION)
    system = "Answer in one word."
    assert render(tokenizer, QUESTION, system) == replica.system_turn.format(system=system, question=QUESTION)
    if replica.system_prompt is not None:  # the default system turn, replaced by a given one
        assert replica.system_prompt in render(tokenizer, QUESTION)
        assert replica.system_prompt not in render(tokenizer, QUESTION, system)


@pytest.mark.parametrize("name", NAMES)
def test_tokenizer_keeps_the_published_special_ids(name):
    replica = REPLICAS[name]
    vocab = replica.make_processor().tokenizer.get_vocab()
    published = {f.path[len("token:"):]: f.value for f in replica.facts if f.path.startswith("token:")}
    assert published and all(vocab.get(token) == token_id for token, token_id in published.items())
    assert len(set(vocab.values())) == len(vocab)  # no word shares an id with a special token
    vocab_size = replica.build_config().get_text_config().vocab_size
    assert max(vocab.values()) < vocab_size and min(v for t, v in vocab.items() if t not in published) >= WORD_ID_BASE


# gazeheads on each replica, in float32 and bfloat16 -------------------------------------------------


class Run:
    """A built replica, its encoded strip prompt and the forwards the checks share (computed once)."""

    def __init__(self, name: str, dtype: torch.dtype, built=None) -> None:
        self.replica, self.dtype = REPLICAS[name], dtype
        if built is None:
            model, processor = build_replica(name, dtype=dtype)
        else:  # the float32 replica, rounded: what build_replica(name, dtype) gives, without a second init
            model, processor = cast_model(built[0], dtype), built[1]
        self.gm = gh.GazeModel(model, processor)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnseenPixelsWarning)
            self.encoded = self.gm.encode(STRIP, QUESTION)
        self.base = self.gm.adapter.base_model(model)
        self._results: dict = {}
        self._products = fast_products(dtype)  # one context for all forwards: weights converted once
        self._image_features: dict = {}  # and one vision pass

    def target(self):
        if self.replica.name == "llava":  # the center crop shows x = 160..224 only
            return gh.Box(168, 8, 216, 56)
        return gh.Panel(4)

    def heads(self) -> HeadSet:
        n = self.gm.shape.n_heads
        return HeadSet.of([(1, 0), (1, n // 2 + 1), (1, n - 1)], self.gm.shape)

    def _steered(self):
        """Captured rows of both layers in one forward that steers three heads of the last layer."""
        rows = {}
        request = hook.CaptureRequest(frozenset(range(self.gm.shape.n_layers)),
                                      lambda layer, probs, value: rows.__setitem__(layer, probs))
        with hook.attach_plan(self.gm.attention_modules()) as plan:
            plan.captures.append(request)
            with gh.steer(self.gm, self.heads(), self.target(), self.encoded), warnings.catch_warnings():
                warnings.simplefilter("ignore", UnseenPixelsWarning)
                self.base(**self.encoded.inputs)
        return rows

    def _eager(self):
        model = self.gm.model
        model.set_attn_implementation({"text_config": "eager"})
        try:
            attentions = self.base(**self.encoded.inputs, output_attentions=True).attentions
        finally:
            self.gm.adapter.set_attention(model, hook.ATTENTION_NAME)
        return [a[:, :, -1, :].float() for a in attentions]

    def result(self, key: str):
        if key not in self._results:
            compute = {"steered": self._steered, "eager": self._eager}[key]
            with torch.no_grad(), self._products, vision_once(self.base, self._image_features):
                self._results[key] = compute()
        return self._results[key]


_FLOAT32_MODELS: dict = {}  # the last float32 replica, handed to its bf16 run


@pytest.fixture(scope="module", params=[(n, d) for n in NAMES for d in DTYPES], ids=lambda p: f"{p[0]}-{p[1]}")
def run(request):
    name, dtype = request.param
    previous = _FLOAT32_MODELS.pop(name, None) if dtype == "bf16" else None
    _FLOAT32_MODELS.clear()
    current = Run(name, DTYPES[dtype], previous)
    yield current
    if dtype == "fp32":
        _FLOAT32_MODELS[name] = (current.gm.model, current.gm.processor)
    del current
    gc.collect()


def test_built_model_has_the_published_attention_shape(run):
    replica, gm = run.replica, run.gm
    attention = gm.attention_modules()[0]
    roots = {"attention": attention}
    for fact in replica.facts:
        if fact.path.startswith("attention."):
            assert same(resolve(roots, fact.path), fact.value), fact.path
    text = gm.adapter.text_config(gm.model)
    assert gm.shape.n_layers == 2 == len(gm.attention_modules())
    assert attention.q_proj.weight.shape == (text.num_attention_heads * attention.head_dim, text.hidden_size)
    assert attention.k_proj.weight.shape == (text.num_key_value_heads * attention.head_dim, text.hidden_size)
    embedding = gm.model.get_input_embeddings().weight
    assert embedding.shape == (text.vocab_size, text.hidden_size) and embedding.dtype == run.dtype
    assert gm.model.get_output_embeddings().weight is embedding
    assert all(p.dtype == run.dtype for p in gm.model.parameters() if p.is_floating_point())


def test_adapter_counts_every_image_token_of_the_prompt(run):
    replica, encoded = run.replica, run.encoded
    in_prompt = int((encoded.inputs["input_ids"][0] == run.gm.model.config.image_token_id).sum())
    assert in_prompt == replica.strip_tokens, replica.strip_note
    geometry = encoded.geometries[0]
    newlines = 0
    if replica.name in ("llava_next", "llava_onevision"):  # anyres: every row of the tile grid ends in a newline
        tiles = geometry.views[1:]  # one view, or one per tile: count the grid's rows by their cells' centres
        newlines = len({round(float(y), 6) for view in tiles for y in view.cell_centres()[1]})
    assert geometry.n_tokens + newlines == in_prompt
    assert len(set(geometry.positions.tolist())) == geometry.n_tokens


def test_every_panel_of_the_strip_maps_to_tokens(run):
    geometry = run.encoded.geometries[0]
    if run.replica.name == "llava":
        # The published LLaVA-1.5 processor center-crops: of the 384x64 strip the model sees x = 160..224,
        # half of panel 3 and half of panel 4. The adapter reports the rest as unseen instead of mapping it.
        assert geometry.unseen() == [(0.0, 0.0, 160.0, 64.0), (224.0, 0.0, 384.0, 64.0)]
        for k in (1, 2, 5, 6):
            with pytest.raises(gh.RegionError, match="crops away"):
                geometry.positions_of(gh.Panel(k))
        visible = (3, 4)
    elif run.replica.name == "llava_onevision":
        # SigLIP's 27 patches of 14 px read 378 of the 384 px of the base image and of the tile: the strip's last
        # 6 px columns are never seen (1.6% of panel 6)
        assert geometry.unseen() == [(378.0, 0.0, 384.0, 63.0), (378.0, 63.0, 384.0, 64.0)]
        visible = range(1, 7)
    else:
        assert geometry.unseen() == []
        visible = range(1, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnseenPixelsWarning)
        owned = {k: set(geometry.positions_of(gh.Panel(k)).tolist()) for k in visible}
    assert all(owned.values())
    image = set(geometry.positions.tolist())
    assert set().union(*owned.values()) <= image


def test_captured_rows_equal_eager_attention_rows(run):
    """Every row the steering leaves alone (all of layer 0, the unchosen heads of layer 1) is captured
    as eager attention computes it."""
    captured, eager = run.result("steered"), run.result("eager")
    assert len(captured) == len(eager) == 2
    unchosen = [h for h in range(run.gm.shape.n_heads) if h not in {head for _, head in run.heads()}]
    for layer, heads in ((0, list(range(run.gm.shape.n_heads))), (1, unchosen)):
        assert captured[layer].dtype == torch.float32 and captured[layer].shape == eager[layer].shape
        error = float((captured[layer][:, heads] - eager[layer][:, heads]).abs().max())
        assert error <= ATOL[run.dtype], f"layer {layer}: max |captured - eager| = {error:.2e}"


def test_bias_changes_exactly_the_chosen_heads(run):
    """The heads whose attention departs from the unsteered (eager) rows are exactly the three chosen,
    and each now puts at least 99% of its image attention on the target."""
    captured, eager = run.result("steered"), run.result("eager")
    chosen = {head for _, head in run.heads()}
    # changed: the chosen heads' rows move by a large total variation (a diffuse head over ~2,000 keys
    # moves by less than ATOL per key even when fully steered); unchanged: every other head within ATOL
    moved = (captured[1][0] - eager[1][0]).abs().sum(-1) > 0.1
    kept = (captured[1][0] - eager[1][0]).abs().amax(-1) <= ATOL[run.dtype]
    assert set(moved.nonzero().flatten().tolist()) == chosen
    assert set((~kept).nonzero().flatten().tolist()) <= chosen
    assert float((captured[0] - eager[0]).abs().max()) <= ATOL[run.dtype]  # the layer before: untouched
    geometry = run.encoded.geometries[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnseenPixelsWarning)
        target = geometry.positions_of(run.target())
    for head in chosen:
        row = captured[1][0, head]
        assert float(row[target].sum() / row[geometry.positions].sum()) >= 0.99


def test_docs_describe_every_replica():
    text = (Path(__file__).resolve().parents[1] / "docs" / "replicas.md").read_text()
    for replica in REPLICAS.values():
        assert f"### {replica.name}: `{replica.checkpoint}`" in text
