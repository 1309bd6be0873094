"""Generate the monitor evaluation's records: one per (split, condition, strip or scene).

Each record holds what the monitor measured at every step of one generation (its features,
including the shadow comparison) and what the design knows but the monitor never sees (the
condition, the target, which steps were steered). Records go to a JsonlStore as each batch
finishes, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .. import prompts
from ..data.strips import Strip
from ..evaluation.protocols import derangement
from ..evaluation.runner import strip_rng
from ..evaluation.store import JsonlStore
from ..heads import HeadSet
from ..model import GazeModel
from ..progress import progress_bar
from ..ranking import Ranking
from ..regions import Box, Panel, Schedule
from ..specs import HeadSpec
from ..steering import steer
from ..synth import make_scene
from .design import Condition, Design
from .session import monitor
from .view import MonitorView

SECTION = "monitor"


@dataclass(frozen=True)
class Item:
    """One image of the evaluation: a strip (narration, panel and VQA prompts) or a scene (scene prompt)."""

    id: str
    split: str  # "fit" or "test"
    kind: str  # "strip" or "scene"
    load: Callable[[], object]


def strip_items(strips: Sequence[Strip], split: str, check: Callable[[Strip], None] | None = None) -> list[Item]:
    """Items reading `strips` (a list or a lazy StripSet) when used; `check` (e.g. disjointness from the
    ranking's discovery strips) sees each strip as it is read."""
    ids = getattr(strips, "ids", None) or [s.comic_id for s in strips]

    def load(n: int) -> Strip:
        strip = strips[n]
        if check is not None:
            check(strip)
        return strip

    return [Item(i, split, "strip", lambda n=n: load(n)) for n, i in enumerate(ids)]


def scene_items(seeds: Iterable[int], split: str) -> list[Item]:
    return [Item(f"scene_{s:06d}", split, "scene", lambda s=s: make_scene(s)) for s in seeds]


@dataclass(frozen=True)
class Budget:
    """Tokens and timing of the generations: narration length, short answers, segments, onset step."""

    narrate_tokens: int
    answer_tokens: int
    segment_tokens: int
    onset_step: int

    def tokens(self, prompt: str) -> int:
        return self.narrate_tokens if prompt == "narrate" else self.answer_tokens


def questions(narration_question: str) -> dict[str, str]:
    return {"narrate": narration_question, "panel": prompts.NARRATION_QUESTION, "vqa": prompts.VQA_QUESTION,
            "scene": prompts.SCENE_QUESTION}


def record_key(split: str, condition: Condition, item: Item) -> str:
    return f"{split}|{condition.name}|{item.id}"


def items_for(condition: Condition, items: Sequence[Item]) -> list[Item]:
    kind = "scene" if condition.prompt == "scene" else "strip"
    return [i for i in items if i.kind == kind]


class SteerFrom(LogitsProcessor):
    """Enters a steer() block after `start` tokens, so steering begins at generation step `start` (onset)."""

    def __init__(self, stack: contextlib.ExitStack, block: Callable[[], contextlib.AbstractContextManager],
                 start: int, prompt_len: int) -> None:
        if start < 1:
            raise ValueError("Onset steering starts at step 1 or later.")
        self.stack, self.block, self.start, self.prompt_len = stack, block, start, prompt_len
        self.entered = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.entered and input_ids.shape[1] - self.prompt_len >= self.start - 1:
            self.stack.enter_context(self.block())  # the next forward computes step `start`
            self.entered = True
        return scores


def target_for(condition: Condition, item: Item, image, budget: Budget, seed: int) -> tuple[object, str]:
    """The steering target of `item` under `condition` and a short description, drawn from a stream that
    depends only on the item and the seed (the same target at every strength)."""
    rng = strip_rng(item.id, seed)
    if item.kind == "scene":
        _, objects = image
        x, y, w, h = rng.choice(objects[1:]).bbox  # the unsteered answer names the largest object
        return Box(x, y, x + w, y + h), f"box {x},{y},{x + w},{y + h}"
    n = image.n_panels
    fixed = rng.randint(2, n)  # unsteered, the model starts with panel 1
    order = derangement(n, rng)
    described = min(budget.onset_step // max(budget.segment_tokens, 1) + 1, n)
    onset = rng.choice([p for p in range(1, n + 1) if p != described])
    if condition.schedule == "switch":
        return Schedule.every(budget.segment_tokens, [Panel(p) for p in order]), "switch " + "-".join(map(str, order))
    if condition.schedule == "onset":
        return Panel(onset), f"panel {onset} from step {budget.onset_step}"
    return Panel(fixed), f"panel {fixed}"


def _heads(condition: Condition, ranking: Ranking, seed: int, percentile: float) -> HeadSet:
    return ranking.select(HeadSpec(condition.heads, k=condition.k, seed=seed, percentile=percentile))


def generate_batch(gm: GazeModel, ranking: Ranking, view: MonitorView, shadow: GazeModel | None,
                   condition: Condition, items: Sequence[Item], split: str, budget: Budget, question: str, *,
                   seed: int = 0, control_percentile: float = 5.0) -> list[dict]:
    """Generate `items` under `condition` as one batch with the monitor watching; one record per item."""
    loaded = [item.load() for item in items]
    images = [image[0] if item.kind == "scene" else image for item, image in zip(items, loaded)]
    encoded = gm.encode(images, [question] * len(items))
    n_tokens = budget.tokens(condition.prompt)
    chosen = [target_for(condition, item, image, budget, seed) if condition.steered else (None, None)
              for item, image in zip(items, loaded)]
    options = {}
    with contextlib.ExitStack() as stack:
        if condition.steered:
            heads = _heads(condition, ranking, seed, control_percentile)
            block = lambda: steer(gm, heads, [t for t, _ in chosen], encoded, condition.steer)  # noqa: E731
            if condition.schedule == "onset":
                options["logits_processor"] = LogitsProcessorList(
                    [SteerFrom(stack, block, budget.onset_step, encoded.prompt_len)])
            else:
                stack.enter_context(block())
        watcher = stack.enter_context(monitor(gm, view, encoded, shadow=shadow))
        ids = gm.generate_ids(encoded, n_tokens, **options)
    result = watcher.result(ids)
    texts = gm.decode(ids)
    records = []
    for row, (item, (_, described)) in enumerate(zip(items, chosen)):
        n = int(result.lengths[row])
        records.append({
            "key": record_key(split, condition, item), "split": split, "item": item.id, "kind": item.kind,
            "condition": condition.name, "group": condition.group, "prompt": condition.prompt,
            "steered": condition.steered, "target": described, "text": texts[row], "n_steps": n,
            "steered_steps": condition.steered_steps(n, budget.onset_step),
            "features": [[round(float(v), 6) for v in step] for step in result.features[row, :n]],
        })
    return records


def run_generations(gm: GazeModel, ranking: Ranking, view: MonitorView, design: Design,
                    items: Sequence[Item], budget: Budget, question: str, store: JsonlStore, *,
                    shadow: GazeModel | None = None, seed: int = 0, control_percentile: float = 5.0,
                    batch: int = 16, progress: bool = True) -> JsonlStore:
    """Every (split, condition, item) record not yet in `store`, batch by batch (negatives first)."""
    asked = questions(question)
    jobs = []
    for split in ("fit", "test"):
        for condition in design.conditions():
            todo = [i for i in items_for(condition, [i for i in items if i.split == split])
                    if record_key(split, condition, i) not in store]
            jobs += [(split, condition, todo[start:start + batch]) for start in range(0, len(todo), batch)]
    bar = progress_bar(total=sum(len(chunk) for _, _, chunk in jobs), desc="monitor eval", unit="generation",
               disable=not progress)
    for split, condition, chunk in jobs:
        bar.set_postfix_str(f"{split}: {condition.name}"[:60], refresh=False)
        store.add(generate_batch(gm, ranking, view, shadow, condition, chunk, split, budget, asked[condition.prompt],
                                 seed=seed, control_percentile=control_percentile))
        bar.update(len(chunk))
    bar.close()
    return store
