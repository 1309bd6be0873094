"""Train the tiny gaze-capable Qwen3-VL from scratch on synthetic comics and scenes (CPU).

    python -m gazeheads.tiny.train --out src/gazeheads/assets/tiny-qwen3vl --seed 0 --threads 2

Every batch mixes five tasks (weights in TASKS):
  panel     the discovery prompt for panel k             -> caption of panel k
  narration "What is happening in this panel ...?"       -> caption of panel 1
  vqa       "What is the main action or event ...?"      -> caption of panel 1
  narrate   "Narrate this comic strip panel by panel."   -> all captions, " . " between
  scene     "What is in this picture?" (a scene)         -> caption of the largest object
Captions are "<colour> <shape>", so the first answer word already depends on the panel asked
about: the last prompt token has to look at that panel, which is where gaze heads are scored.

From --steer-start on, the current top heads by gaze score are trained to be causally
sufficient (SteeringTrainer: steered examples describe a random target) and to keep looking at
the panel asked about (--gaze-anchor); the model card explains why both.

Deterministic for a given --seed and --threads (data from `synth.training_rng(seed)`, weights
from `torch.manual_seed(seed)`); --minutes only caps the wall time as a safety net. The output
is a standard Hugging Face folder plus MODEL_CARD.md, README.md and gazeheads.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import prompts, synth
from . import build, vocab

TASKS = {"panel": 0.45, "narration": 0.08, "vqa": 0.05, "narrate": 0.12, "scene": 0.3}
EVAL_STRIP_SEEDS = range(100_000, 100_200)  # held out: integer seeds are never training strips
EVAL_SCENE_SEEDS = range(200_000, 200_200)


# --------------------------------------------------------------------------- examples


@dataclass
class Example:
    image: Image.Image
    question: str
    answer: str
    task: str
    forced: tuple[int, ...] = ()  # indices of answer words fed to the model but not learned
    regions: tuple[tuple[int, int, int, int], ...] = ()  # pixel boxes (x0, y0, x1, y1) of panels/objects
    steer: tuple[int, ...] = ()  # steered examples: target region of each answer segment (3 words)
    asked: int | None = None  # per-panel question: index of the panel asked about


FOLLOW_PROB = 0.2  # share of examples whose answer continues from a forced, off-target colour
TRAINING_ONLY = ("labels", "steer_signs", "gaze_anchor")  # batch entries that are not model inputs


def narrate_answer(captions: list[str]) -> str:
    """The panel-by-panel narration: every caption in order, each followed by the separator."""
    return " ".join(f"{c} {vocab.CAPTION_SEPARATOR}" for c in captions)


def _follow_single(rng: random.Random, captions: list[str], intended: int) -> tuple[str, tuple[int, ...]]:
    """Answer `intended`, or (FOLLOW_PROB) continue from another object's colour, given as input."""
    if rng.random() >= FOLLOW_PROB or len(captions) < 2:
        return captions[intended], ()
    j = rng.choice([i for i in range(len(captions)) if i != intended])
    return captions[j], (0,)


def _follow_narration(rng: random.Random, captions: list[str]) -> tuple[str, tuple[int, ...]]:
    """Narrate in order, or (FOLLOW_PROB) jump at segment i to a forced panel j and go on from j."""
    if rng.random() >= FOLLOW_PROB:
        return narrate_answer(captions), ()
    i = rng.randrange(len(captions))
    j = rng.choice([p for p in range(len(captions)) if p != i])
    order = list(range(i)) + list(range(j, len(captions)))
    return narrate_answer([captions[p] for p in order]), (3 * i,)  # 3 words a segment


def sample_example(rng: random.Random, task: str | None = None, steer_prob: float = 0.0) -> Example:
    """One training example drawn from `rng` (task drawn by TASKS weights unless given).

    In a share FOLLOW_PROB of examples the first word of a caption is replaced by the colour of
    another object and fed as input only; the model learns to finish the caption of the object it
    has named (and, in narration, to go on from there). Answers thus follow what the model is
    describing, as they must when steering redirects it mid-answer.

    With probability `steer_prob` the example is a steered one instead (see SteeringTrainer):
    random target regions, and the answer describes them.
    """
    if task is None:
        task = rng.choices(list(TASKS), weights=list(TASKS.values()))[0]
    steered = rng.random() < steer_prob
    if task == "scene":
        image, objects = synth.make_scene(rng)  # largest first
        regions = tuple((x, y, x + w, y + h) for x, y, w, h in (o.bbox for o in objects))
        if steered:
            t = rng.randrange(len(objects))
            return Example(image, prompts.SCENE_QUESTION, objects[t].caption, task, (), regions, (t,))
        answer, forced = _follow_single(rng, [o.caption for o in objects], 0)
        return Example(image, prompts.SCENE_QUESTION, answer, task, forced, regions)
    strip = synth.make_strip(rng)
    caps, regions = strip.captions, tuple(strip.panel_boxes)
    if task == "narrate":
        if steered:
            order = list(range(strip.n_panels))
            rng.shuffle(order)
            answer = narrate_answer([caps[p] for p in order])
            return Example(strip.image, vocab.NARRATE_PROMPT, answer, task, (), regions, tuple(order))
        answer, forced = _follow_narration(rng, caps)
        return Example(strip.image, vocab.NARRATE_PROMPT, answer, task, forced, regions)
    if task == "panel":
        k = rng.randint(1, strip.n_panels)
        question = prompts.discovery_question(k, strip.n_panels)
    elif task in ("narration", "vqa"):
        k = 1
        question = prompts.NARRATION_QUESTION if task == "narration" else prompts.VQA_QUESTION
    else:
        raise ValueError(task)
    if steered:
        t = rng.randrange(strip.n_panels)
        return Example(strip.image, question, caps[t], task, (), regions, (t,))
    answer, forced = _follow_single(rng, caps, k - 1)
    return Example(strip.image, question, answer, task, forced, regions, asked=k - 1 if task == "panel" else None)


# --------------------------------------------------------------------------- batching


class Encoder:
    """Turns examples into model inputs exactly as the saved processor does, but faster.

    `check()` compares against the real processor once, so the fast path cannot drift.
    """

    def __init__(self, processor) -> None:
        self.processor = processor
        self.tok = processor.tokenizer
        ids = self.tok.convert_tokens_to_ids
        self.im_start, self.im_end = ids("<|im_start|>"), ids("<|im_end|>")
        self.v_start, self.v_end, self.pad_img = ids("<|vision_start|>"), ids("<|vision_end|>"), ids("<|image_pad|>")
        self.pad = self.tok.pad_token_id
        self.user, self.assistant = ids("user"), ids("assistant")
        self._cache: dict[str, list[int]] = {}

    def words(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = self.tok(text, add_special_tokens=False)["input_ids"]
        return self._cache[text]

    @staticmethod
    def patchify(image: Image.Image) -> tuple[np.ndarray, tuple[int, int, int]]:
        """pixel_values rows and (t, h, w) grid of one image whose sides are multiples of 32."""
        a = (np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 - 0.5) / 0.5
        h, w, c = a.shape
        p, m, t = build.PATCH_SIZE, build.MERGE_SIZE, build.TEMPORAL_PATCH_SIZE
        if h % (p * m) or w % (p * m):
            raise ValueError(f"image {w}x{h} is not a multiple of {p * m} pixels")
        gh, gw = h // p, w // p
        x = a.transpose(2, 0, 1).reshape(c, gh // m, m, p, gw // m, m, p)
        x = x.transpose(1, 4, 2, 5, 0, 3, 6)[:, :, :, :, :, None]
        x = np.repeat(x, t, axis=5)
        return x.reshape(gh * gw, c * t * p * p), (1, gh, gw)

    def prompt_ids(self, n_image_tokens: int, question: str) -> list[int]:
        return (
            [self.im_start, self.user, self.v_start]
            + [self.pad_img] * n_image_tokens
            + [self.v_end]
            + self.words(question)
            + [self.im_end, self.im_start, self.assistant]
        )

    @staticmethod
    def region_signs(grid: tuple[int, int, int], box: tuple[int, int, int, int]) -> list[float]:
        """+1 for the image tokens whose 32-px cell centre lies in `box`, -1 for the others."""
        _, gh, gw = grid
        m = build.MERGE_SIZE
        px = build.PIXELS_PER_TOKEN
        x0, y0, x1, y1 = box
        signs = []
        for r in range(gh // m):
            for c in range(gw // m):
                cx, cy = (c + 0.5) * px, (r + 0.5) * px
                signs.append(1.0 if (x0 <= cx < x1 and y0 <= cy < y1) else -1.0)
        if max(signs) < 0:  # a box smaller than a cell: its nearest cell
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            d = [((c + 0.5) * px - cx) ** 2 + ((r + 0.5) * px - cy) ** 2 for r in range(gh // m) for c in range(gw // m)]
            signs[int(np.argmin(d))] = 1.0
        return signs

    def batch(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        pixels, grids, seqs, labels, steer_rows, anchors = [], [], [], [], [], []
        for row, ex in enumerate(examples):
            pv, grid = self.patchify(ex.image)
            pixels.append(pv)
            grids.append(grid)
            n_img = grid[1] * grid[2] // build.MERGE_SIZE**2
            prompt = self.prompt_ids(n_img, ex.question)
            first_img = prompt.index(self.pad_img)
            words = self.words(ex.answer)
            answer = words + [self.im_end]
            learned = [-100 if i in ex.forced else t for i, t in enumerate(answer)]
            seqs.append(prompt + answer)
            labels.append([-100] * len(prompt) + learned)
            if ex.steer:
                # row r predicts token r + 1; answer token j belongs to segment j // 3
                segs = []
                for r in range(len(prompt) + len(answer)):
                    j = max(0, r + 1 - len(prompt))
                    segs.append(ex.steer[min(j // 3, len(ex.steer) - 1)])
                steer_rows.append((first_img, n_img, grid, ex.regions, segs))
            else:
                steer_rows.append(None)
            if ex.asked is not None:  # the last prompt token and the asked panel's image tokens
                signs = self.region_signs(grid, ex.regions[ex.asked])
                anchors.append((row, len(prompt) - 1, [first_img + j for j, v in enumerate(signs) if v > 0]))
        length = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), length), self.pad, dtype=torch.long)
        label_t = torch.full((len(seqs), length), -100, dtype=torch.long)
        mask = torch.zeros((len(seqs), length), dtype=torch.long)
        for i, (s, lab) in enumerate(zip(seqs, labels)):
            input_ids[i, : len(s)] = torch.tensor(s)
            label_t[i, : len(s)] = torch.tensor(lab)
            mask[i, : len(s)] = 1
        out = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "mm_token_type_ids": (input_ids == self.pad_img).long(),
            "pixel_values": torch.from_numpy(np.concatenate(pixels)),
            "image_grid_thw": torch.tensor(grids, dtype=torch.long),
            "labels": label_t,
        }
        if any(steer_rows):
            # (batch, query rows, keys): +1 target image tokens, -1 other image tokens, 0 elsewhere
            signs = torch.zeros(len(seqs), length, length)
            for i, item in enumerate(steer_rows):
                if item is None:
                    continue
                first_img, n_img, grid, regions, segs = item
                per_region = {t: torch.tensor(self.region_signs(grid, regions[t])) for t in set(segs)}
                for r, t in enumerate(segs):
                    signs[i, r, first_img : first_img + n_img] = per_region[t]
            out["steer_signs"] = signs
        if anchors:
            target = torch.zeros(len(anchors), length)
            for row, (_, _, positions) in enumerate(anchors):
                target[row, positions] = 1.0
            out["gaze_anchor"] = (torch.tensor([a[0] for a in anchors]), torch.tensor([a[1] for a in anchors]), target)
        return out

    def check(self, examples: list[Example]) -> None:
        """Assert that the fast path equals the processor + chat template on `examples`."""
        for ex in examples:
            mine = self.batch([ex])
            ref = self.processor(
                text=[chat_prompt(self.processor, ex.question)], images=[ex.image], return_tensors="pt"
            )
            n = ref["input_ids"].shape[1]
            assert torch.equal(mine["input_ids"][0, :n], ref["input_ids"][0]), "prompt ids differ"
            assert torch.equal(mine["mm_token_type_ids"][0, :n], ref["mm_token_type_ids"][0])
            assert torch.equal(mine["image_grid_thw"], ref["image_grid_thw"])
            assert torch.allclose(mine["pixel_values"], ref["pixel_values"], atol=1e-5), "pixels differ"


def chat_prompt(processor, question: str) -> str:
    """The chat-formatted prompt (one image, then the question) with the assistant turn opened."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def answer(model, processor, images: list[Image.Image], questions: list[str], max_new_tokens: int = 4) -> list[str]:
    """Greedy answers, batched (left padding), through the saved processor."""
    texts = [chat_prompt(processor, q) for q in questions]
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return [s.strip() for s in processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)]


def evaluate(model, processor, n_strips: int = 200, n_scenes: int = 200, batch: int = 60) -> dict:
    """Held-out accuracies: per-panel question (exact), unsteered answers, narration, scenes."""
    model.eval()
    strips = [synth.make_strip(s) for s in list(EVAL_STRIP_SEEDS)[:n_strips]]
    jobs = []  # (image, question, expected, task)
    for st in strips:
        for k in range(1, st.n_panels + 1):
            jobs.append((st.image, prompts.discovery_question(k, st.n_panels), st.captions[k - 1], "panel"))
        jobs.append((st.image, prompts.NARRATION_QUESTION, st.captions[0], "narration"))
        jobs.append((st.image, prompts.VQA_QUESTION, st.captions[0], "vqa"))
    for seed in list(EVAL_SCENE_SEEDS)[:n_scenes]:
        img, objects = synth.make_scene(seed)
        jobs.append((img, prompts.SCENE_QUESTION, synth.scene_answer(objects), "scene"))
    correct: dict[str, list[bool]] = {}
    for i in range(0, len(jobs), batch):
        chunk = jobs[i : i + batch]
        got = answer(model, processor, [j[0] for j in chunk], [j[1] for j in chunk])
        for (_, _, want, task), g in zip(chunk, got):
            correct.setdefault(task, []).append(g == want)
    narr_ok = []
    for i in range(0, len(strips), batch):
        chunk = strips[i : i + batch]
        got = answer(model, processor, [s.image for s in chunk], [vocab.NARRATE_PROMPT] * len(chunk), 24)
        narr_ok += [g == narrate_answer(s.captions) for s, g in zip(chunk, got)]
    correct["narrate"] = narr_ok
    result = {task: {"accuracy": float(np.mean(v)), "n": len(v)} for task, v in correct.items()}
    result["held_out"] = {
        "strip_seeds": f"{EVAL_STRIP_SEEDS.start}..{EVAL_STRIP_SEEDS.start + n_strips - 1}",
        "scene_seeds": f"{EVAL_SCENE_SEEDS.start}..{EVAL_SCENE_SEEDS.start + n_scenes - 1}",
    }
    return result


# --------------------------------------------------------------------------- steering-consistency training


@torch.no_grad()
def gaze_scores(model, encoder: "Encoder", strips: list) -> np.ndarray:
    """(layers, heads) gaze scores: DESIGN.md section 2, on `strips`, with eager attention.

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
    bias of DESIGN.md (+B on the target region's image tokens, -B on the other image tokens, at
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


# --------------------------------------------------------------------------- training


class PatchEmbedAsLinear(torch.nn.Module):
    """The vision patch embedding's Conv3d computed as the equal matmul (training only).

    Kernel = stride = the whole patch, so the convolution is one linear map per patch; on the
    CPU its backward pass as a matmul is several times faster than conv3d's. It shares the
    Conv3d's parameters, so the saved weights are the standard ones.
    """

    def __init__(self, conv: torch.nn.Conv3d) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.linear(x.flatten(1), self.weight.flatten(1), self.bias)
        return out[:, :, None, None, None]



def example_loss(model, batch: dict) -> torch.Tensor:
    """Cross-entropy on answer tokens, averaged per example, then over the batch.

    Per-example averaging keeps the long narration answers from outweighing the one-caption ones.
    """
    labels = batch["labels"]
    logits = model(**{k: v for k, v in batch.items() if k not in TRAINING_ONLY}).logits[:, :-1]
    target = labels[:, 1:]
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="none"
    ).view(target.shape)
    counted = (target != -100).float()
    return ((ce * counted).sum(1) / counted.sum(1).clamp(min=1)).mean()


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(args: argparse.Namespace) -> dict:
    from transformers import Qwen3VLForConditionalGeneration

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = synth.training_rng(args.seed)
    processor = build.build_processor()
    sizes = json.loads(args.sizes) if args.sizes else {}
    config = build.build_config(sizes)
    config.text_config._attn_implementation = "sdpa"
    model = Qwen3VLForConditionalGeneration(config)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_params:,}", flush=True)

    encoder = Encoder(processor)
    encoder.check([sample_example(random.Random(f"check-{t}"), t) for t in TASKS])
    patch_embed = model.model.visual.patch_embed
    conv = patch_embed.proj
    patch_embed.proj = PatchEmbedAsLinear(conv)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )
    steerer = SteeringTrainer(model, anchor=args.gaze_anchor > 0) if args.steer_prob > 0 else None
    probe_rng = random.Random(f"gazeheads-train-probe-{args.seed}")
    probe = [synth.make_strip(probe_rng) for _ in range(12)]
    selections = []
    steer_from = int(args.steer_start * args.steps)
    reselect = {steer_from + int(i * args.steer_every * args.steps) for i in range(args.steer_reselect)}
    start = time.time()
    log_every = max(1, args.steps // 50)
    smooth = None
    step = 0
    for step in range(args.steps):
        if steerer is not None and step in reselect:
            steerer.set_batch({})
            scores = gaze_scores(model, encoder, probe)
            heads = top_heads(scores, args.steer_heads)
            steerer.select(heads)
            selections.append({"step": step, "heads": heads, "scores": [round(float(scores[h]), 3) for h in heads]})
            print(f"step {step}: steering-consistency heads {selections[-1]}", flush=True)
        elapsed = time.time() - start
        if args.minutes and elapsed > args.minutes * 60:
            print(f"time budget of {args.minutes} min reached at step {step}", flush=True)
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        steer_prob = args.steer_prob if steerer is not None and steerer.heads else 0.0
        batch = encoder.batch([sample_example(rng, steer_prob=steer_prob) for _ in range(args.batch)])
        if steerer is not None:
            steerer.set_batch(batch)
        loss_t = example_loss(model, batch)
        anchor = steerer.anchor_loss() if steerer is not None else None
        if anchor is not None:
            loss_t = loss_t + args.gaze_anchor * anchor
        opt.zero_grad(set_to_none=True)
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss = loss_t.item()
        smooth = loss if smooth is None else 0.95 * smooth + 0.05 * loss
        if step % log_every == 0 or step == args.steps - 1:
            print(f"step {step:6d}  loss {loss:.4f}  smooth {smooth:.4f}  {elapsed / 60:5.1f} min", flush=True)
    steps_done = step + 1
    minutes = (time.time() - start) / 60
    patch_embed.proj = conv
    if steerer is not None:
        steerer.close()
    print(f"trained {steps_done} steps in {minutes:.1f} min", flush=True)

    model.eval()
    metrics = evaluate(model, processor, args.eval_strips, args.eval_scenes) if args.eval_strips else {}
    print(json.dumps(metrics, indent=1), flush=True)

    info = {
        "seed": args.seed,
        "steps": steps_done,
        "batch": args.batch,
        "lr": args.lr,
        "warmup": args.warmup,
        "weight_decay": args.weight_decay,
        "threads": args.threads,
        "train_minutes": round(minutes, 2),
        "final_smoothed_loss": round(smooth or float("nan"), 5),
        "parameters": n_params,
        "command": (
            f"python -m gazeheads.tiny.train --out DIR --seed {args.seed} --steps {args.steps} "
            f"--batch {args.batch} --lr {args.lr} --warmup {args.warmup} --weight-decay {args.weight_decay} "
            f"--threads {args.threads} --minutes {args.minutes} --steer-prob {args.steer_prob} "
            f"--steer-heads {args.steer_heads} --steer-start {args.steer_start} "
            f"--steer-every {args.steer_every} --steer-reselect {args.steer_reselect} --gaze-anchor {args.gaze_anchor}"
            + (f" --sizes '{args.sizes}'" if args.sizes else "")
        ),
        "tasks": TASKS,
        "follow_prob": FOLLOW_PROB,
        "steer_prob": args.steer_prob,
        "gaze_anchor": args.gaze_anchor,
        "steer_selections": selections,
        "sizes": {**build.DEFAULT_SIZES, **sizes},
        "torch": torch.__version__,
    }
    save(model, processor, Path(args.out), info, metrics)
    return {"info": info, "metrics": metrics}


def save(model, processor, out: Path, info: dict, metrics: dict) -> None:
    """Write the Hugging Face folder, gazeheads.json and the model card."""
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.eos_token_id = [processor.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.do_sample = False
    model.save_pretrained(out)
    processor.save_pretrained(out)
    layout = {
        "strip_height": synth.STRIP_HEIGHT,
        "strip_gap": synth.STRIP_GAP,
        "panel_size": synth.PANEL_SIZE,
        "scene_size": synth.SCENE_SIZE,
        "narrate_prompt": vocab.NARRATE_PROMPT,
        "caption_separator": vocab.CAPTION_SEPARATOR,
    }
    (out / "gazeheads.json").write_text(
        json.dumps({"layout": layout, "training": info, "evaluation": metrics}, indent=1) + "\n"
    )
    card = model_card(info, metrics)
    (out / "MODEL_CARD.md").write_text(card)
    (out / "README.md").write_text(card)


def _pct(metrics: dict, task: str) -> str:
    if task not in metrics:
        return "not measured"
    m = metrics[task]
    return f"{100 * m['accuracy']:.1f}% ({m['n']} questions)"


def model_card(info: dict, metrics: dict) -> str:
    s = info["sizes"]
    return f"""# tiny-qwen3vl: a gaze-capable Qwen3-VL trained from scratch

A {info['parameters'] / 1e6:.2f}M-parameter model of the Qwen3-VL architecture
(`Qwen3VLForConditionalGeneration`), trained from scratch on the CPU by
`python -m gazeheads.tiny.train` on synthetic comic strips and scenes made by
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
| per-panel | `prompts.discovery_question(k, 6)` | caption of panel k | {TASKS['panel']} |
| ambiguous | `prompts.NARRATION_QUESTION` | caption of panel 1 | {TASKS['narration']} |
| VQA | `prompts.VQA_QUESTION` | caption of panel 1 | {TASKS['vqa']} |
| narration | `"{vocab.NARRATE_PROMPT}"` | all captions in order, `" . "` after each | {TASKS['narrate']} |
| scene | `prompts.SCENE_QUESTION` | caption of the largest object | {TASKS['scene']} |

The first answer word (the colour) depends on the panel or object asked about, so the last
prompt token must attend to it: this is what makes query-dependent gaze heads appear at the
position where gaze scores are measured.

Two augmentations shape how answers follow the model's gaze:

* **Follow** ({info.get('follow_prob', FOLLOW_PROB):.0%} of unsteered examples): the first word of a caption is replaced by
  another object's colour, fed as input and not learned; the model learns to finish the caption of
  the object it has named (in narration: and to go on from there). Without it the model gathered
  colour and shape at the last prompt token and, under steering at decode time, repeated colours.
* **Steering consistency** ({info.get('steer_prob', 0):.0%} of examples once active), an interchange-intervention objective
  (Geiger et al. 2022): the model's own current top-{len(info.get('steer_selections', [{}])[-1].get('heads', [])) if info.get('steer_selections') else 0} heads by gaze score (measured
  as in DESIGN.md on 12 training-stream strips; selections: {len(info.get('steer_selections', []))}) get the steering bias
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder (a Hugging Face model folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3300)
    parser.add_argument("--minutes", type=float, default=29.5, help="wall-time cap (0: none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=28)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--steer-prob", type=float, default=0.3, help="share of steered examples (0: off)")
    parser.add_argument("--steer-heads", type=int, default=4, help="top gaze heads steered in training")
    parser.add_argument("--steer-start", type=float, default=0.3, help="first head selection (share of steps)")
    parser.add_argument("--steer-every", type=float, default=0.1, help="re-selection interval (share of steps)")
    parser.add_argument("--steer-reselect", type=int, default=1, help="number of selections")
    parser.add_argument("--gaze-anchor", type=float, default=0.1,
                        help="weight of the selected heads' attention loss on the asked panel (0: off)")
    parser.add_argument("--sizes", default="", help="JSON overrides of build.DEFAULT_SIZES")
    parser.add_argument("--eval-strips", type=int, default=200, help="held-out strips to evaluate (0: skip)")
    parser.add_argument("--eval-scenes", type=int, default=200)
    args = parser.parse_args(argv)
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
