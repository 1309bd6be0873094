"""The first bundled model's recipe ("reinforced"): task training plus two objectives on its gaze heads.

Kept so that `assets/tiny-qwen3vl` can be rebuilt and compared with the emergent model; the
default recipe (`--recipe emergent`) imports nothing from here. From a share of the steps on,
the model's current top heads by gaze score (`gaze_scores`, docs/method.md) are

* trained to be causally sufficient (`SteeringTrainer`): in steered examples they get the
  steering bias towards random target regions and the answer describes the targets, an
  interchange-intervention objective (Geiger et al. 2022);
* anchored (`--gaze-anchor`): their attention from the last prompt token of a per-panel question
  is pulled toward the panel asked about.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import prompts, synth
from . import vocab
from .tasks import SEGMENT_WORDS, Example

TRAINING_ONLY = ("labels", "steer_signs", "gaze_anchor")  # batch entries that are not model inputs


def add_steering_entries(encoder, examples: list[Example], batch: dict, anchors: bool) -> dict:
    """Add what the two objectives need to an `Encoder.batch` of `examples`.

    steer_signs (batch, query rows, keys): +1 on the target region's image tokens, -1 on the other
    image tokens, 0 elsewhere, per query row (answer token j belongs to segment j // 3);
    gaze_anchor (with `anchors`): rows of per-panel questions, their last prompt position and a
    0/1 mask of the asked panel's image tokens.
    """
    ids, grids = batch["input_ids"], batch["image_grid_thw"]
    length = ids.shape[1]
    signs, anchor_rows = None, []
    for row, ex in enumerate(examples):
        grid = tuple(grids[row].tolist())
        image = (ids[row] == encoder.pad_img).nonzero().flatten()
        first_img, n_img = int(image[0]), len(image)
        prompt_len = first_img + n_img + 1 + len(encoder.words(ex.question)) + 3
        if ex.steer:
            if signs is None:
                signs = torch.zeros(len(examples), length, length)
            answer_len = len(encoder.words(ex.answer)) + 1
            per_region = {t: torch.tensor(encoder.region_signs(grid, ex.regions[t])) for t in set(ex.steer)}
            for r in range(prompt_len + answer_len):
                j = max(0, r + 1 - prompt_len)  # row r predicts token r + 1
                target = ex.steer[min(j // SEGMENT_WORDS["plain"], len(ex.steer) - 1)]
                signs[row, r, first_img : first_img + n_img] = per_region[target]
        if anchors and ex.asked is not None:
            owned = encoder.region_signs(grid, ex.regions[ex.asked])
            anchor_rows.append((row, prompt_len - 1, [first_img + j for j, v in enumerate(owned) if v > 0]))
    if signs is not None:
        batch["steer_signs"] = signs
    if anchor_rows:
        target = torch.zeros(len(anchor_rows), length)
        for i, (_, _, positions) in enumerate(anchor_rows):
            target[i, positions] = 1.0
        batch["gaze_anchor"] = (torch.tensor([a[0] for a in anchor_rows]), torch.tensor([a[1] for a in anchor_rows]),
                                target)
    return batch


@torch.no_grad()
def gaze_scores(model, encoder, strips: list) -> np.ndarray:
    """(layers, heads) gaze scores: docs/method.md, on `strips`, with eager attention.

    For each strip and panel k: the discovery prompt for k, the last prompt token's attention
    summed over each panel's image tokens; averaged over strips; the mean of the diagonal.
    """
    was_training = model.training
    model.eval()
    model.set_attn_implementation("eager")
    tc = model.config.text_config
    n = strips[0].n_panels
    mats = np.zeros((tc.num_hidden_layers, tc.num_attention_heads, n, n))
    for strip in strips:
        examples = [
            Example(strip.image, prompts.discovery_question(k, n), "", "panel", (), tuple(strip.panel_boxes))
            for k in range(1, n + 1)
        ]
        batch = encoder.batch(examples)
        ids = batch["input_ids"][0]
        last = int((ids == encoder.assistant).nonzero().max())
        img = (ids == encoder.pad_img).nonzero().flatten()
        grid = tuple(batch["image_grid_thw"][0].tolist())
        owner = [np.array(encoder.region_signs(grid, box)) > 0 for box in strip.panel_boxes]
        inputs = {k: v for k, v in batch.items() if k not in TRAINING_ONLY}
        out = model(**inputs, output_attentions=True)
        for layer, att in enumerate(out.attentions):
            a = att[:, :, last, img].float().numpy()  # (queried panel, heads, image tokens)
            for j in range(n):
                mats[layer, :, :, j] += a[:, :, owner[j]].sum(-1).T
    model.set_attn_implementation("sdpa")
    model.train(was_training)
    mats /= len(strips)
    return np.einsum("lhkk->lh", mats) / n


def top_heads(scores: np.ndarray, k: int) -> list[tuple[int, int]]:
    flat = np.argsort(-scores, axis=None)[:k]
    return [tuple(int(v) for v in np.unravel_index(i, scores.shape)) for i in flat]


class SteeringTrainer:
    """Steering-consistency training on the model's own top gaze heads.

    An interchange-intervention objective (Geiger et al., 2022, "Inducing causal structure for
    interpretable neural networks"): in steered examples the selected heads get the steering
    bias of docs/method.md (+B on the target region's image tokens, -B on the other image tokens, at
    every query row: prefill and answer alike), and the answer is the caption of the target. The
    heads are not chosen by hand: they are the current top heads by gaze score, re-measured during
    training. Holds forward pre-hooks on the text attention modules until `close()`.
    """

    def __init__(self, model, bias: float = 10000.0, anchor: bool = False) -> None:
        self.heads: dict[int, list[int]] = {}
        self.signs: torch.Tensor | None = None
        self.anchor: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.anchor_enabled = anchor
        self.anchor_losses: list[torch.Tensor] = []
        self.bias = bias
        self.n_heads = model.config.text_config.num_attention_heads
        self.handles = [
            layer.self_attn.register_forward_pre_hook(self._hook, with_kwargs=True)
            for layer in model.model.language_model.layers
        ]

    def select(self, heads: list[tuple[int, int]]) -> None:
        self.heads = {}
        for layer, head in heads:
            self.heads.setdefault(layer, []).append(head)

    def set_batch(self, batch: dict) -> None:
        self.signs = batch.get("steer_signs")
        self.anchor = batch.get("gaze_anchor") if self.anchor_enabled and self.heads else None
        self.anchor_losses = []

    def anchor_loss(self) -> torch.Tensor | None:
        """Mean -log(attention mass on the asked panel) of the selected heads in this batch."""
        return torch.stack(self.anchor_losses).mean() if self.anchor_losses else None

    def _gaze_anchor(self, module, kwargs, heads: list[int]) -> None:
        """The selected heads' last-prompt-row attention, recomputed as the SDPA call sees it."""
        from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb

        rows, last, target = self.anchor
        hidden = kwargs["hidden_states"][rows]  # (m, L, d)
        cos, sin = (t[rows] for t in kwargs["position_embeddings"])
        m, length, _ = hidden.shape
        pick = torch.arange(m)
        d = module.head_dim
        q = module.q_norm(module.q_proj(hidden[pick, last]).view(m, 1, -1, d)).transpose(1, 2)  # (m, H, 1, d)
        k = module.k_norm(module.k_proj(hidden).view(m, length, -1, d)).transpose(1, 2)  # (m, KV, L, d)
        q = apply_rotary_pos_emb(q, q, cos[pick, last][:, None], sin[pick, last][:, None])[0]
        k = apply_rotary_pos_emb(k, k, cos, sin)[0]
        groups = module.num_key_value_groups
        future = torch.arange(length)[None, :] > last[:, None]  # keys after the last prompt token
        for head in heads:
            logits = (q[:, head, 0, None, :] * k[:, head // groups]).sum(-1) * module.scaling  # (m, L)
            probs = logits.masked_fill(future, float("-inf")).softmax(-1)
            self.anchor_losses.append(-torch.log((probs * target).sum(-1) + 1e-6).mean())

    def _hook(self, module, args, kwargs):
        heads = self.heads.get(module.layer_idx)
        if heads and self.anchor is not None:
            self._gaze_anchor(module, kwargs, heads)
        if not heads or self.signs is None:
            return None
        hidden = kwargs["hidden_states"]
        q = hidden.shape[1]
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones(q, q, dtype=torch.bool).tril()[None, None]
        if mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, dtype=hidden.dtype).masked_fill(~mask, torch.finfo(hidden.dtype).min)
        select = torch.zeros(self.n_heads, dtype=hidden.dtype)
        select[heads] = self.bias
        kwargs["attention_mask"] = mask + self.signs[:, None, :q, :q] * select[None, :, None, None]
        return args, kwargs

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def reinforced_card(info: dict, metrics: dict) -> str:
    """The card of the reinforced model (its recipe, tasks, both objectives, unsteered accuracies)."""
    from .cards import pct as _pct

    tasks = info["tasks"]
    s = info["sizes"]
    return f"""# tiny-qwen3vl: a gaze-capable Qwen3-VL trained from scratch

A {info['parameters'] / 1e6:.2f}M-parameter model of the Qwen3-VL architecture
(`Qwen3VLForConditionalGeneration`), trained from scratch on the CPU by
`python -m gazeheads.tiny.train --recipe reinforced` on synthetic comic strips and scenes made by
`gazeheads.synth`. It exists so that the gazeheads tools can show gaze heads at work on any
machine without downloading weights. It knows nothing beyond its synthetic world.

Load it like any Hugging Face model:

```python
from transformers import AutoProcessor, Qwen3VLForConditionalGeneration
processor = AutoProcessor.from_pretrained(path)
model = Qwen3VLForConditionalGeneration.from_pretrained(path)  # attn_implementation="sdpa" or "eager"
```

## Data

* Strips: 6 panels of 64 x 64 px stitched with `stitch(panels, height=64, gap=0)` into a
  384 x 64 image (2 x 12 image tokens; panel k owns token columns 2k-2 and 2k-1). Each panel
  shows one object: colour (8: {', '.join(synth.COLOURS)}) x shape (6: {', '.join(synth.SHAPES)}),
  on one of 5 light backgrounds, with jittered size and position. Colours are distinct within a
  strip. Caption: `"<colour> <shape>"`, e.g. `red circle`.
* Scenes: 192 x 192 px (6 x 6 tokens), 3-4 objects of distinct shapes and colours (2 when one
  finds no room), none narrower than about 1.5 tokens, the largest at least 1.5 times the radius
  of any other; COCO-style boxes from `write_synthetic_scenes`.
* Training draws from `synth.training_rng(seed)`; every evaluation below uses integer-seeded
  strips and scenes (`synth.make_strip(seed)`, `synth.make_scene(seed)`), never seen in training.
* `gazeheads.json` records this layout (strip height 64, gap 0) and the narration prompt.

## Tasks (mixed in every batch; weights)

| task | prompt | answer | weight |
| --- | --- | --- | --- |
| per-panel | `prompts.discovery_question(k, 6)` | caption of panel k | {tasks['panel']} |
| ambiguous | `prompts.NARRATION_QUESTION` | caption of panel 1 | {tasks['narration']} |
| VQA | `prompts.VQA_QUESTION` | caption of panel 1 | {tasks['vqa']} |
| narration | `"{vocab.NARRATE_PROMPT}"` | all captions in order, `" . "` after each | {tasks['narrate']} |
| scene | `prompts.SCENE_QUESTION` | caption of the largest object | {tasks['scene']} |

The first answer word (the colour) depends on the panel or object asked about, so the last
prompt token must attend to it: this is what makes query-dependent gaze heads appear at the
position where gaze scores are measured.

Two augmentations shape how answers follow the model's gaze:

* **Follow** ({info.get('follow_prob', 0.2):.0%} of unsteered examples): the first word of a caption is replaced by
  another object's colour, fed as input and not learned; the model learns to finish the caption of
  the object it has named (in narration: and to go on from there). Without it the model gathered
  colour and shape at the last prompt token and, under steering at decode time, repeated colours.
* **Steering consistency** ({info.get('steer_prob', 0):.0%} of examples once active), an interchange-intervention objective
  (Geiger et al. 2022): the model's own current top-{len(info.get('steer_selections', [{}])[-1].get('heads', [])) if info.get('steer_selections') else 0} heads by gaze score (measured
  as in docs/method.md on 12 training-stream strips; selections: {len(info.get('steer_selections', []))}) get the steering bias
  (+10000 on a random target region's image tokens, -10000 on the other image tokens, at every
  query row), and the answer describes the target (per segment for narration, with a random
  panel order; a random object's box for scenes). Head selections:
  {info.get('steer_selections', [])}.
* **Gaze anchor** (weight {info.get('gaze_anchor', 0)}, once heads are selected): in unsteered per-panel
  questions, the selected heads' attention from the last prompt token is pulled toward the panel
  asked about (loss: -log of its attention mass there, the quantity the gaze score averages).

Why both. Without steering consistency, query-dependent gaze heads emerged (a trial of 1,532
steps: 8-12 heads in layers 2-3 with gaze scores 0.65-0.88) but the answer was spread over
all of them, so steering 5 heads moved only 4-10% of answers. With steering consistency alone,
the selected heads became causally sufficient but some of them lost gaze score afterwards: in
an earlier run without the anchor (scene objects then placed freely), two of the four trained heads fell from 0.64 to 0.28-0.30
(at the last prompt token they gave 45% of their attention to text tokens and only 55-60% of
the rest to the panel asked about),
discovery ranked two other heads above them, and steering the top 4 by gaze score redirected
60% of answers (38% junk) while steering the 4 trained heads redirected 98%. The anchor keeps
the heads discovery finds and the heads that steer the same. So this model's gaze heads are
partly made by training: they emerge first (they are chosen by gaze score mid-training), then
training reinforces both what discovery measures and what steering uses.

## Architecture

* Language model: {s['text_layers']} layers x {s['text_heads']} query heads ({s['text_kv_heads']} KV heads),
  head_dim {s['head_dim']}, hidden {s['text_hidden']}, MLP {s['text_intermediate']}; rope theta
  {s['rope_theta']} (the default 5e5 cannot tell image columns apart at head_dim 16), interleaved
  M-RoPE sections {s['mrope_section']}.
* Vision tower: depth {s['vision_depth']}, hidden {s['vision_hidden']}, {s['vision_heads']} heads, patch 16,
  temporal patch 2, spatial merge 2 (32 x 32 px per language-model token), DeepStack from
  vision layers {s['deepstack']}.
* Word-level tokenizer (`tokenizer.json`, {len(vocab.vocabulary())} tokens) with the Qwen-VL special tokens and a
  Qwen-style chat template; processor min/max pixels keep 64-px strips and 192-px scenes at size.
* Weights stored in float32.

## Recipe

`{info.get('command', '')}`:
AdamW (lr {info['lr']}, betas 0.9/0.98, weight decay {info['weight_decay']}), {info['warmup']} warm-up steps,
cosine decay to 5%, gradient clipping 1.0, loss on answer tokens only. Trained {info['steps']} steps in
{info['train_minutes']} min on {info['threads']} CPU threads (torch {info['torch']}); final smoothed loss
{info['final_smoothed_loss']}. Deterministic for a given seed and thread count.

## Results (held-out, greedy decoding)

Strip seeds {metrics.get('held_out', {}).get('strip_seeds', '-')}, scene seeds {metrics.get('held_out', {}).get('scene_seeds', '-')}.

| question | exact-match accuracy |
| --- | --- |
| per-panel discovery question (answer = caption of panel k) | {_pct(metrics, 'panel')} |
| ambiguous question, unsteered (answer = caption of panel 1) | {_pct(metrics, 'narration')} |
| VQA question, unsteered (answer = caption of panel 1) | {_pct(metrics, 'vqa')} |
| panel-by-panel narration (whole answer) | {_pct(metrics, 'narrate')} |
| scene question (answer = largest object) | {_pct(metrics, 'scene')} |
"""
