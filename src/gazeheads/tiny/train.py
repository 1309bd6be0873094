"""Train the tiny Qwen3-VL from scratch on synthetic comic strips and scenes (CPU).

    python -m gazeheads.tiny.train --out src/gazeheads/assets/tiny-qwen3vl-emergent --seed 0 --threads 2

Recipes (--recipe; any other option overrides one setting of the recipe):

  emergent    (default) ordinary task training: a language-modelling loss on the answers of the
              tasks in `gazeheads.tiny.tasks`, and nothing else. Nothing in it refers to attention,
              to heads or to steering; the model's gaze heads are found afterwards by discovery.
  reinforced  the recipe of the first bundled model (assets/tiny-qwen3vl): task training plus two
              objectives on its top heads by gaze score (`gazeheads.tiny.reinforced`). Kept so that
              model can be rebuilt and compared; its options (--steer-*, --gaze-anchor) are refused
              under the emergent recipe.

Deterministic for a given recipe, --seed and --threads (data from `synth.training_rng(seed)`,
weights from `torch.manual_seed(seed)`). --minutes caps the wall time as a safety net; a run it
stops early is not reproducible, and gazeheads.json records the steps that ran. The output is a
standard Hugging Face folder plus MODEL_CARD.md, README.md and gazeheads.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import prompts, synth
from ..files import write_text
from . import build, vocab
from .tasks import (COLOUR_WORD, FOLLOW_PROB, NARRATION_STYLES, TASK_NAMES, Example, NarrationStyle, draw_task,
                    narrate_answer, sample_example, segment_words)

EVAL_STRIP_SEEDS = range(100_000, 100_200)  # held out: integer seeds are never training strips
EVAL_SCENE_SEEDS = range(200_000, 200_200)
ANSWER_TOKENS = 4  # a caption ("<colour> <shape>") and the end token fit in 4 new tokens
CONTROL_PERCENTILE = 50  # 48 heads: random controls come from the lower half of the scores
MODEL_INPUTS = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw")


@dataclass(frozen=True)
class Recipe:
    """Everything a training run is made of besides --out, --seed, --threads and --minutes."""

    tasks: dict[str, float]
    steps: int = 3300
    batch: int = 28
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.05
    follow_prob: float = FOLLOW_PROB
    sizes: dict = field(default_factory=dict)  # overrides of build.DEFAULT_SIZES
    panels: tuple[int, ...] = (6,)  # panel counts of training strips, drawn per example (a curriculum)
    panels_until: float = 1.0  # share of the steps that draw from `panels`; later strips have 6 panels
    tasks_later: dict = field(default_factory=dict)  # task weights from `tasks_from` on (a curriculum; {}: none)
    tasks_from: float = 1.0  # share of the steps after which `tasks_later` replaces `tasks`
    # reinforced recipe only: objectives on the current top heads by gaze score
    steer_prob: float = 0.0
    steer_heads: int = 4
    steer_start: float = 0.3
    steer_every: float = 0.1
    steer_reselect: int = 1
    gaze_anchor: float = 0.0


RECIPES = {
    "emergent": Recipe(
        tasks={"panel": 0.45, "narration": 0.08, "vqa": 0.05, "narrate": 0.12, "scene": 0.3},
    ),
    "reinforced": Recipe(
        tasks={"panel": 0.45, "narration": 0.08, "vqa": 0.05, "narrate": 0.12, "scene": 0.3},
        steer_prob=0.3,
        gaze_anchor=0.1,
    ),
}
HEAD_OBJECTIVE_OPTIONS = ("steer_prob", "steer_heads", "steer_start", "steer_every", "steer_reselect", "gaze_anchor")


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
        """Model inputs (right-padded) and labels: answer tokens only, forced words excluded."""
        pixels, grids, seqs, labels = [], [], [], []
        for ex in examples:
            pv, grid = self.patchify(ex.image)
            pixels.append(pv)
            grids.append(grid)
            prompt = self.prompt_ids(grid[1] * grid[2] // build.MERGE_SIZE**2, ex.question)
            answer = self.words(ex.answer) + [self.im_end]
            seqs.append(prompt + answer)
            labels.append([-100] * len(prompt) + [-100 if i in ex.forced else t for i, t in enumerate(answer)])
        length = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), length), self.pad, dtype=torch.long)
        label_t = torch.full((len(seqs), length), -100, dtype=torch.long)
        mask = torch.zeros((len(seqs), length), dtype=torch.long)
        for i, (s, lab) in enumerate(zip(seqs, labels)):
            input_ids[i, : len(s)] = torch.tensor(s)
            label_t[i, : len(s)] = torch.tensor(lab)
            mask[i, : len(s)] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": mask,
            "mm_token_type_ids": (input_ids == self.pad_img).long(),
            "pixel_values": torch.from_numpy(np.concatenate(pixels)),
            "image_grid_thw": torch.tensor(grids, dtype=torch.long),
            "labels": label_t,
        }

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


def narration_style(tasks: dict[str, float], flag: str = "--tasks") -> NarrationStyle:
    """The narration style of task weights (`tasks.NARRATION_STYLES`; "plain" if none narrates).

    Refuses two styles at once (naming `flag`): a model records one segment length in its gazeheads.json.
    """
    styles = {NARRATION_STYLES[t] for t in tasks if t in NARRATION_STYLES}
    if len(styles) > 1:
        named = " and ".join(sorted(t for t in tasks if t in NARRATION_STYLES))
        raise SystemExit(f"{flag}: {named} cannot be mixed (one narration style per model: its gazeheads.json "
                         "records one segment length). A curriculum may change style: --tasks-later with "
                         "--tasks-from.")
    return next(iter(styles), "plain")


def evaluate(model, processor, n_strips: int = 200, n_scenes: int = 200, batch: int = 60,
             style: NarrationStyle = "plain") -> dict:
    """Held-out unsteered answers (greedy), each scored against what the question's tasks teach.

    panel: the asked panel's caption. narration, vqa: panel 1's caption ("first"), and a caption of
    some panel of the strip ("names a panel"). narrate: every caption in order ("in order"), and
    every caption exactly once in any order ("each panel once"), in the narration `style` the
    model was trained on. scene (`prompts.SCENE_QUESTION`) and scene_main
    (`vocab.SCENE_MAIN_QUESTION`): the largest object's caption, and the caption of some object of
    the scene.
    """
    model.eval()
    strips = [synth.make_strip(s) for s in list(EVAL_STRIP_SEEDS)[:n_strips]]
    jobs = []  # (image, question, task, right answer, answers that name something in the image)
    for st in strips:
        for k in range(1, st.n_panels + 1):
            jobs.append((st.image, prompts.discovery_question(k, st.n_panels), "panel", st.captions[k - 1], ()))
        jobs.append((st.image, prompts.NARRATION_QUESTION, "narration", st.captions[0], st.captions))
        jobs.append((st.image, prompts.VQA_QUESTION, "vqa", st.captions[0], st.captions))
    for seed in list(EVAL_SCENE_SEEDS)[:n_scenes]:
        img, objects = synth.make_scene(seed)
        captions, largest = [o.caption for o in objects], synth.scene_answer(objects)
        jobs.append((img, prompts.SCENE_QUESTION, "scene", largest, captions))
        jobs.append((img, vocab.SCENE_MAIN_QUESTION, "scene_main", largest, captions))
    right: dict[str, list[bool]] = {}
    names: dict[str, list[bool]] = {}
    for i in range(0, len(jobs), batch):
        chunk = jobs[i : i + batch]
        got = answer(model, processor, [j[0] for j in chunk], [j[1] for j in chunk])
        for (_, _, task, want, valid), g in zip(chunk, got):
            right.setdefault(task, []).append(g == want)
            if valid:
                names.setdefault(task, []).append(g in valid)
    in_order, once = [], []
    for i in range(0, len(strips), batch):
        chunk = strips[i : i + batch]
        n_new = 6 * segment_words(style) + 6  # six segments, the end token and room to spare
        got = answer(model, processor, [s.image for s in chunk], [vocab.NARRATE_PROMPT] * len(chunk), n_new)
        for s, g in zip(chunk, got):
            in_order.append(g == narrate_answer(s.captions, style))
            said = [" ".join(c.split()[COLOUR_WORD[style]:])
                    for c in g.split(vocab.CAPTION_SEPARATOR) if c.strip()]
            once.append(sorted(said) == sorted(s.captions))
    right["narrate"] = in_order
    names["narrate"] = once
    result = {task: {"accuracy": float(np.mean(v)), "n": len(v)} for task, v in right.items()}
    for task, v in names.items():
        result[task]["names_one"] = float(np.mean(v))
    result["held_out"] = {
        "strip_seeds": f"{EVAL_STRIP_SEEDS.start}..{EVAL_STRIP_SEEDS.start + n_strips - 1}",
        "scene_seeds": f"{EVAL_SCENE_SEEDS.start}..{EVAL_SCENE_SEEDS.start + n_scenes - 1}",
    }
    return result


def watch_examples(n_strips: int = 20, style: NarrationStyle = "plain") -> dict[str, list[Example]]:
    """Held-out examples whose teacher-forced answers show what the model has learnt so far."""
    strips = [synth.make_strip(s) for s in list(EVAL_STRIP_SEEDS)[-n_strips:]]
    out: dict[str, list[Example]] = {"panel": [], "narrate": [], "scene": [], "scene_main": []}
    for st in strips:
        for k in range(1, st.n_panels + 1):
            out["panel"].append(Example(st.image, prompts.discovery_question(k, st.n_panels), st.captions[k - 1], "panel"))
        out["narrate"].append(Example(st.image, vocab.NARRATE_PROMPT, narrate_answer(st.captions, style), "narrate"))
    for seed in list(EVAL_SCENE_SEEDS)[-n_strips:]:
        img, objects = synth.make_scene(seed)
        largest = synth.scene_answer(objects)
        out["scene"].append(Example(img, prompts.SCENE_QUESTION, largest, "scene"))
        out["scene_main"].append(Example(img, vocab.SCENE_MAIN_QUESTION, largest, "scene_main"))
    return out


@torch.no_grad()
def watch_accuracy(model, encoder: Encoder, examples: dict[str, list[Example]]) -> dict[str, tuple[float, float]]:
    """Teacher-forced accuracy per task: (first answer word, all answer words); one forward pass each."""
    was_training = model.training
    model.eval()
    result = {}
    for task, exs in examples.items():
        batch = encoder.batch(exs)
        logits = model(**{k: batch[k] for k in MODEL_INPUTS}).logits[:, :-1]
        target = batch["labels"][:, 1:]
        counted = target != -100
        first = counted & (counted.cumsum(1) == 1)  # each answer's first word
        hit = logits.argmax(-1) == target
        result[task] = (round(float(hit[first].float().mean()), 3), round(float(hit[counted].float().mean()), 3))
    model.train(was_training)
    return result


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
    logits = model(**{k: batch[k] for k in MODEL_INPUTS}).logits[:, :-1]
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
def resolve_recipe(args: argparse.Namespace) -> Recipe:
    """The named recipe with the options given on the command line applied (clear errors otherwise)."""
    if args.recipe not in RECIPES:
        raise SystemExit(f"unknown recipe {args.recipe!r}; choose one of {', '.join(RECIPES)}")
    recipe = RECIPES[args.recipe]
    given = {name: getattr(args, name) for name in asdict(recipe) if getattr(args, name, None) is not None}
    if args.recipe == "emergent":
        named = [f"--{n.replace('_', '-')}" for n in HEAD_OBJECTIVE_OPTIONS
                 if n in given and not (n in ("steer_prob", "gaze_anchor") and given[n] == 0)]
        if named:
            raise SystemExit(
                f"{', '.join(named)}: the emergent recipe trains no objective on attention heads. "
                "These options belong to the first model's recipe: add --recipe reinforced."
            )
    for name in ("tasks", "tasks_later"):
        if name in given:
            flag = f"--{name.replace('_', '-')}"
            try:
                given[name] = json.loads(given[name])
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{flag}: not JSON ({exc}); give weights like '{{\"panel\": 0.5, \"narrate\": 0.5}}'") from None
            unknown = set(given[name]) - set(TASK_NAMES)
            if unknown:
                raise SystemExit(f"unknown task(s) {sorted(unknown)} in {flag}; tasks: {', '.join(TASK_NAMES)}")
    if ("tasks_later" in given) != ("tasks_from" in given):
        raise SystemExit("--tasks-later and --tasks-from go together: the later task weights and the share of "
                         "the steps after which they apply (e.g. --tasks-from 0.4).")
    if "tasks_from" in given and not 0 < given["tasks_from"] < 1:
        raise SystemExit(f"--tasks-from {given['tasks_from']}: give a share of the steps between 0 and 1.")
    for name in ("tasks", "tasks_later"):
        narration_style(given.get(name, {}), f"--{name.replace('_', '-')}")  # one narration style a phase
    if "sizes" in given:
        given["sizes"] = {**recipe.sizes, **json.loads(given["sizes"])}
    if "panels" in given:
        try:
            given["panels"] = tuple(int(n) for n in str(given["panels"]).split(","))
        except ValueError:
            raise SystemExit(f"--panels {given['panels']!r}: give panel counts separated by commas, e.g. 2,3,4,5,6") from None
        if not all(2 <= n <= vocab.MAX_PANELS for n in given["panels"]):
            raise SystemExit(f"--panels {given['panels']}: each count must be 2 to {vocab.MAX_PANELS}.")
    return replace(recipe, **given)


def strip_panels(rng: random.Random, recipe: Recipe, step: int) -> int:
    """Panels of the next training strip: drawn from `recipe.panels` while the curriculum lasts, else 6."""
    if len(recipe.panels) == 1:
        return recipe.panels[0]  # draws nothing: the data stream of a fixed panel count is unchanged
    return rng.choice(recipe.panels) if step < recipe.panels_until * recipe.steps else 6


def switch_step(recipe: Recipe) -> int | None:
    """The first step of the curriculum's later task weights (None: no curriculum)."""
    return math.ceil(recipe.tasks_from * recipe.steps) if recipe.tasks_later else None


def step_tasks(recipe: Recipe, step: int) -> dict[str, float]:
    """The task weights of training step `step` (the curriculum's later weights from `switch_step` on)."""
    first_later = switch_step(recipe)
    if first_later is not None and step >= first_later:
        return recipe.tasks_later
    return recipe.tasks


def train(args: argparse.Namespace) -> dict:
    from transformers import Qwen3VLForConditionalGeneration

    recipe = resolve_recipe(args)
    style = narration_style(recipe.tasks_later or recipe.tasks)  # the style the model ends with
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = synth.training_rng(args.seed)
    processor = build.build_processor()
    config = build.build_config(recipe.sizes)
    config.text_config._attn_implementation = "sdpa"
    model = Qwen3VLForConditionalGeneration(config)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"recipe {args.recipe}: {recipe}", flush=True)
    print(f"parameters: {n_params:,}", flush=True)

    encoder = Encoder(processor)
    encoder.check([sample_example(random.Random(f"check-{t}"), t) for t in {**recipe.tasks, **recipe.tasks_later}])
    patch_embed = model.model.visual.patch_embed
    conv = patch_embed.proj
    patch_embed.proj = PatchEmbedAsLinear(conv)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr,
        betas=(0.9, 0.98),
    )
    heads = HeadObjectives(model, encoder, recipe, args.seed) if recipe.steer_prob > 0 else None
    watch = watch_examples(style=style) if args.watch_every else None
    start = time.time()
    log_every = max(1, recipe.steps // 50)
    smooth = None
    step = -1
    for step in range(recipe.steps):
        if heads is not None:
            heads.maybe_select(step)
        elapsed = time.time() - start
        if args.minutes and elapsed > args.minutes * 60:
            print(f"time budget of {args.minutes} min reached at step {step}", flush=True)
            step -= 1
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(step, recipe.steps, recipe.lr, recipe.warmup)
        steer_prob = heads.steer_prob() if heads is not None else 0.0
        examples = [sample_example(rng, draw_task(rng, step_tasks(recipe, step)), follow_prob=recipe.follow_prob,
                                   steer_prob=steer_prob, n_panels=strip_panels(rng, recipe, step))
                    for _ in range(recipe.batch)]
        batch = encoder.batch(examples)
        if heads is None:
            loss_t = example_loss(model, batch)
        else:
            loss_t = heads.loss(examples, batch)
        opt.zero_grad(set_to_none=True)
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss = loss_t.item()
        smooth = loss if smooth is None else 0.95 * smooth + 0.05 * loss
        if step % log_every == 0 or step == recipe.steps - 1:
            print(f"step {step:6d}  loss {loss:.4f}  smooth {smooth:.4f}  {elapsed / 60:5.1f} min", flush=True)
        if args.watch_every and (step + 1) % args.watch_every == 0:
            print(f"step {step + 1:6d}  held-out accuracy (first word, all words) "
                  f"{watch_accuracy(model, encoder, watch)}", flush=True)
    steps_done = step + 1
    minutes = (time.time() - start) / 60
    patch_embed.proj = conv
    if heads is not None:
        heads.close()
    print(f"trained {steps_done} steps in {minutes:.1f} min", flush=True)

    model.eval()
    metrics = evaluate(model, processor, args.eval_strips, args.eval_scenes, style=style) if args.eval_strips else {}
    print(json.dumps(metrics, indent=1), flush=True)
    info = {
        "recipe": args.recipe,
        "seed": args.seed,
        "steps": steps_done,
        "planned_steps": recipe.steps,
        "batch": recipe.batch,
        "lr": recipe.lr,
        "warmup": recipe.warmup,
        "weight_decay": recipe.weight_decay,
        "threads": args.threads,
        "train_minutes": round(minutes, 2),
        "final_smoothed_loss": round(smooth or float("nan"), 5),
        "parameters": n_params,
        "command": command_line(args, recipe),
        "tasks": recipe.tasks,
        "tasks_later": recipe.tasks_later,
        "tasks_from": recipe.tasks_from,
        "tasks_switch_step": switch_step(recipe),
        "narration_style": style,
        "follow_prob": recipe.follow_prob,
        "panels": list(recipe.panels),
        "panels_until": recipe.panels_until,
        "steer_prob": recipe.steer_prob,
        "gaze_anchor": recipe.gaze_anchor,
        "steer_selections": heads.selections if heads is not None else [],
        "sizes": {**build.DEFAULT_SIZES, **recipe.sizes},
        "torch": torch.__version__,
    }
    save(model, processor, Path(args.out), info, metrics)
    return {"info": info, "metrics": metrics}


def command_line(args: argparse.Namespace, recipe: Recipe) -> str:
    """The command that trains this model again (every recipe setting spelled out)."""
    parts = [f"python -m gazeheads.tiny.train --out DIR --recipe {args.recipe} --seed {args.seed}",
             f"--threads {args.threads} --minutes {args.minutes}"]
    for name, value in asdict(recipe).items():
        if args.recipe == "emergent" and name in HEAD_OBJECTIVE_OPTIONS:
            continue
        flag = f"--{name.replace('_', '-')}"
        if isinstance(value, dict):
            parts.append(f"{flag} '{json.dumps(value)}'")
        elif isinstance(value, tuple):
            parts.append(f"{flag} {','.join(map(str, value))}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


class HeadObjectives:
    """The reinforced recipe's two objectives, selected heads and steered examples (see `reinforced`)."""

    def __init__(self, model, encoder: Encoder, recipe: Recipe, seed: int) -> None:
        from . import reinforced

        self.r = reinforced
        self.model, self.encoder, self.recipe = model, encoder, recipe
        self.trainer = reinforced.SteeringTrainer(model, anchor=recipe.gaze_anchor > 0)
        probe_rng = random.Random(f"gazeheads-train-probe-{seed}")
        self.probe = [synth.make_strip(probe_rng) for _ in range(12)]
        first = int(recipe.steer_start * recipe.steps)
        self.when = {first + int(i * recipe.steer_every * recipe.steps) for i in range(recipe.steer_reselect)}
        self.selections: list[dict] = []

    def maybe_select(self, step: int) -> None:
        if step not in self.when:
            return
        self.trainer.set_batch({})
        scores = self.r.gaze_scores(self.model, self.encoder, self.probe)
        heads = self.r.top_heads(scores, self.recipe.steer_heads)
        self.trainer.select(heads)
        self.selections.append({"step": step, "heads": heads, "scores": [round(float(scores[h]), 3) for h in heads]})
        print(f"step {step}: steering-consistency heads {self.selections[-1]}", flush=True)

    def steer_prob(self) -> float:
        return self.recipe.steer_prob if self.trainer.heads else 0.0

    def loss(self, examples: list[Example], batch: dict) -> torch.Tensor:
        self.r.add_steering_entries(self.encoder, examples, batch, anchors=self.recipe.gaze_anchor > 0)
        self.trainer.set_batch(batch)
        loss = example_loss(self.model, batch)
        anchor = self.trainer.anchor_loss()
        return loss if anchor is None else loss + self.recipe.gaze_anchor * anchor

    def close(self) -> None:
        self.trainer.close()


# --------------------------------------------------------------------------- output


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
        "answer_tokens": ANSWER_TOKENS,
        "segment_tokens": segment_words(info["narration_style"]),
        "control_percentile": CONTROL_PERCENTILE,
        "synthetic": True,
    }
    write_text(out / "gazeheads.json", json.dumps({"layout": layout, "training": info, "evaluation": metrics}, indent=1) + "\n")
    if info["recipe"] == "reinforced":
        from .reinforced import reinforced_card

        card = reinforced_card(info, metrics)
    else:
        from .cards import emergent_card

        card = emergent_card(info, metrics)
    write_text(out / "MODEL_CARD.md", card)
    write_text(out / "README.md", card)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output folder (a Hugging Face model folder)")
    parser.add_argument("--recipe", default="emergent", help=f"one of {', '.join(RECIPES)} (default emergent)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=0, help="wall-time cap, a safety net (0: none)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-strips", type=int, default=200, help="held-out strips to evaluate (0: skip)")
    parser.add_argument("--eval-scenes", type=int, default=200)
    parser.add_argument("--watch-every", type=int, default=0, help="print held-out accuracy every N steps")
    recipe = parser.add_argument_group("recipe settings (default: the recipe's)")
    recipe.add_argument("--steps", type=int)
    recipe.add_argument("--batch", type=int)
    recipe.add_argument("--lr", type=float)
    recipe.add_argument("--warmup", type=int)
    recipe.add_argument("--weight-decay", type=float)
    recipe.add_argument("--follow-prob", type=float, help="share of examples that continue from a forced colour")
    recipe.add_argument("--tasks", help="JSON task weights, e.g. '{\"panel\": 0.5, \"narrate\": 0.5}'")
    recipe.add_argument("--sizes", help="JSON overrides of build.DEFAULT_SIZES")
    recipe.add_argument("--panels", help="panel counts of training strips, e.g. 2,3,4,5,6 (default 6)")
    recipe.add_argument("--panels-until", type=float, help="share of the steps that use --panels; then 6 panels")
    recipe.add_argument("--tasks-later", help="JSON task weights that replace --tasks from --tasks-from on")
    recipe.add_argument("--tasks-from", type=float, help="share of the steps after which --tasks-later applies")
    heads = parser.add_argument_group("reinforced recipe only (objectives on the top gaze heads)")
    heads.add_argument("--steer-prob", type=float, help="share of steered examples")
    heads.add_argument("--steer-heads", type=int, help="top gaze heads steered in training")
    heads.add_argument("--steer-start", type=float, help="first head selection (share of steps)")
    heads.add_argument("--steer-every", type=float, help="re-selection interval (share of steps)")
    heads.add_argument("--steer-reselect", type=int, help="number of selections")
    heads.add_argument("--gaze-anchor", type=float, help="weight of the selected heads' attention loss")
    args = parser.parse_args(argv)
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
