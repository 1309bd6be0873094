"""The tiny model's training tasks: one synthetic image, one question, the answer to learn.

Every task is a question the model must answer in words about a synthetic strip or scene
(`gazeheads.synth`); training learns the answers with a language-modelling loss and nothing
else (the reinforced recipe adds steered examples, see `steered`). Captions are
``"<colour> <shape>"``, so the first answer word already depends on the panel or object the
answer is about.

    panel          the discovery prompt for panel k               -> caption of panel k
    narration      "What is happening in this panel ...?"         -> caption of panel 1
    vqa            "What is the main action or event ...?"        -> caption of panel 1
    narration_any  "What is happening in this panel ...?"         -> caption of a random panel
    vqa_any        "What is the main action or event ...?"        -> caption of a random panel
    narrate        "Narrate this comic strip panel by panel."     -> every caption in order, " . " after each
    narrate_any    "Narrate this comic strip panel by panel."     -> every caption once, in a random order
    narrate_counted "Narrate this comic strip panel by panel."    -> "1st panel <caption> . 2nd panel <caption> . ..."
    narrate_marked "Narrate this comic strip panel by panel."     -> "panel <caption> . panel <caption> . ...": every
                                                                     segment starts with the same word, so a
                                                                     narration's first (unsteered) word says
                                                                     nothing about the panel it describes
    scene          "What is in this picture?" (a scene)           -> caption of the largest object
    scene_any      "What is in this picture?" (a scene)           -> caption of a random object
    scene_named    "What is in this picture?" (a scene)           -> caption of a random object whose colour
                                                                     is given (forced): only the shape is learnt
    scene_main     "What is the main event in this picture?"      -> caption of the largest object: the scene
                                                                     task asked in other words, so that
                                                                     `prompts.SCENE_QUESTION` stays untrained
    narration_named "What is happening in this panel ...?"        -> caption of a random panel whose colour is
                                                                     given (forced): only the shape is learnt,
                                                                     so which panel to name stays untrained

"Follow" (share `follow_prob` of the panel, narration, vqa, narrate and scene examples): the
first word of a caption is replaced by another panel's (object's) colour, fed to the model as
input and not learned; the model learns to finish the caption of the thing it has named and,
in narration, to go on from there. Answers thus follow what the model is describing. In a
counted narration the ordinals keep counting the segments: after a jump to panel j at segment i,
segment i + 1 describes panel i + 1 again; a marked narration goes on from j, as a plain one does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Literal

from PIL import Image

from .. import prompts, synth
from . import vocab

FOLLOW_PROB = 0.2  # default share of examples whose answer continues from a forced, off-target colour
TASK_NAMES = ("panel", "narration", "vqa", "narration_any", "vqa_any", "narrate", "narrate_any", "narrate_counted",
              "narrate_marked", "scene", "scene_any", "scene_named", "scene_main", "narration_named")
NarrationStyle = Literal["plain", "counted", "marked"]
NARRATION_STYLES: dict[str, NarrationStyle] = {  # narration task -> the style of its segments
    "narrate": "plain", "narrate_any": "plain", "narrate_counted": "counted", "narrate_marked": "marked"}
# a segment is "[<ordinal>] [panel] <colour> <shape> .": its length and the index of its colour
SEGMENT_WORDS: dict[NarrationStyle, int] = {"plain": 3, "counted": 5, "marked": 4}
COLOUR_WORD: dict[NarrationStyle, int] = {"plain": 0, "counted": 2, "marked": 1}


@dataclass
class Example:
    image: Image.Image
    question: str
    answer: str
    task: str
    forced: tuple[int, ...] = ()  # indices of answer words fed to the model but not learned
    regions: tuple[tuple[int, int, int, int], ...] = ()  # pixel boxes (x0, y0, x1, y1) of panels/objects
    steer: tuple[int, ...] = ()  # reinforced recipe, steered examples: target region of each answer segment
    asked: int | None = None  # per-panel question: index of the panel asked about


def narrate_answer(captions: list[str], style: NarrationStyle = "plain") -> str:
    """The panel-by-panel narration: every caption in order, each followed by the separator.

    `style` "counted": each segment starts with its ordinal and the word "panel" ("2nd panel red
    circle ."); "marked": with the word "panel" alone ("panel red circle ."); "plain": with neither.
    """
    def lead(i: int) -> str:
        return {"plain": "", "marked": f"{vocab.PANEL_WORD} ",
                "counted": f"{prompts.ordinal(i)} {vocab.PANEL_WORD} "}[style]

    return " ".join(f"{lead(i)}{c} {vocab.CAPTION_SEPARATOR}" for i, c in enumerate(captions, start=1))


def segment_words(style: NarrationStyle) -> int:
    """Words (tokens) of one narration segment of `style` ("plain", "counted" or "marked")."""
    return SEGMENT_WORDS[style]


def _follow_single(rng: random.Random, captions: list[str], intended: int, follow_prob: float) -> tuple[str, tuple[int, ...]]:
    """Answer `intended`, or (follow_prob) continue from another object's colour, given as input."""
    if rng.random() >= follow_prob or len(captions) < 2:
        return captions[intended], ()
    j = rng.choice([i for i in range(len(captions)) if i != intended])
    return captions[j], (0,)


def _follow_narration(rng: random.Random, captions: list[str], follow_prob: float,
                      style: NarrationStyle = "plain") -> tuple[str, tuple[int, ...]]:
    """Narrate in order, or (follow_prob) jump at segment i to a forced panel j.

    A plain or marked narration goes on from j; a counted one describes j at segment i only and
    keeps counting (segment i + 1 describes panel i + 1).
    """
    if rng.random() >= follow_prob:
        return narrate_answer(captions, style), ()
    i = rng.randrange(len(captions))
    j = rng.choice([p for p in range(len(captions)) if p != i])
    if style == "counted":
        said = [captions[j] if p == i else c for p, c in enumerate(captions)]
    else:
        said = [captions[p] for p in list(range(i)) + list(range(j, len(captions)))]
    return narrate_answer(said, style), (SEGMENT_WORDS[style] * i + COLOUR_WORD[style],)


def _scene(rng: random.Random) -> tuple[Image.Image, list[synth.SceneObject], tuple[tuple[int, int, int, int], ...]]:
    """A scene, its objects (largest first) and their pixel boxes (x0, y0, x1, y1)."""
    image, objects = synth.make_scene(rng)
    return image, objects, tuple((x, y, x + w, y + h) for x, y, w, h in (o.bbox for o in objects))


def _largest_object(rng: random.Random, image: Image.Image, objects: list[synth.SceneObject],
                    regions: tuple[tuple[int, int, int, int], ...], question: str, task: str,
                    follow_prob: float) -> Example:
    """`question` answered with the largest object's caption, or (follow_prob) from another object's colour."""
    answer, forced = _follow_single(rng, [o.caption for o in objects], 0, follow_prob)
    return Example(image, question, answer, task, forced, regions)


def draw_task(rng: random.Random, weights: dict[str, float]) -> str:
    """A task name drawn by `weights`."""
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def sample_example(rng: random.Random, task: str, *, follow_prob: float = FOLLOW_PROB,
                   steer_prob: float = 0.0, n_panels: int = 6) -> Example:
    """One training example of `task`, drawn from `rng`.

    `steer_prob` belongs to the reinforced recipe only: with that probability the example is a
    steered one (random target regions in `Example.steer`, an answer that describes them), which
    the reinforced recipe trains with the steering bias on its selected heads. The emergent recipe
    leaves it at 0. `n_panels`: panels of the strip (its questions name that many).
    """
    if task not in TASK_NAMES:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASK_NAMES)}")
    if task.endswith("_any"):
        return _any_example(rng, task, n_panels)
    if task.endswith("_named"):  # the `_any` task with its first word given: only the shape is learnt
        return replace(_any_example(rng, task.replace("_named", "_any"), n_panels), task=task, forced=(0,))
    if task in ("narrate_counted", "narrate_marked", "scene_main"):
        return _new_example(rng, task, follow_prob, n_panels)
    steered = rng.random() < steer_prob  # drawn for every task of the first recipe: keeps its data stream
    if task == "scene":
        image, objects, regions = _scene(rng)
        if steered:
            t = rng.randrange(len(objects))
            return Example(image, prompts.SCENE_QUESTION, objects[t].caption, task, (), regions, (t,))
        return _largest_object(rng, image, objects, regions, prompts.SCENE_QUESTION, task, follow_prob)
    strip = synth.make_strip(rng, n_panels)
    caps, regions = strip.captions, tuple(strip.panel_boxes)
    if task == "narrate":
        if steered:
            order = list(range(strip.n_panels))
            rng.shuffle(order)
            answer = narrate_answer([caps[p] for p in order])
            return Example(strip.image, vocab.NARRATE_PROMPT, answer, task, (), regions, tuple(order))
        answer, forced = _follow_narration(rng, caps, follow_prob)
        return Example(strip.image, vocab.NARRATE_PROMPT, answer, task, forced, regions)
    if task == "panel":
        k = rng.randint(1, strip.n_panels)
        question = prompts.discovery_question(k, strip.n_panels)
    else:  # narration, vqa: about panel 1
        k = 1
        question = prompts.NARRATION_QUESTION if task == "narration" else prompts.VQA_QUESTION
    if steered:
        t = rng.randrange(strip.n_panels)
        return Example(strip.image, question, caps[t], task, (), regions, (t,))
    answer, forced = _follow_single(rng, caps, k - 1, follow_prob)
    return Example(strip.image, question, answer, task, forced, regions, asked=k - 1 if task == "panel" else None)


def _any_example(rng: random.Random, task: str, n_panels: int = 6) -> Example:
    """An ambiguous question answered about a random panel (object); a narration in a random order."""
    if task == "scene_any":
        image, objects, regions = _scene(rng)
        return Example(image, prompts.SCENE_QUESTION, rng.choice(objects).caption, task, (), regions)
    strip = synth.make_strip(rng, n_panels)
    caps, regions = strip.captions, tuple(strip.panel_boxes)
    if task == "narrate_any":
        order = list(range(strip.n_panels))
        rng.shuffle(order)
        return Example(strip.image, vocab.NARRATE_PROMPT, narrate_answer([caps[p] for p in order]), task, (), regions)
    question = prompts.NARRATION_QUESTION if task == "narration_any" else prompts.VQA_QUESTION
    return Example(strip.image, question, caps[rng.randrange(strip.n_panels)], task, (), regions)


def _new_example(rng: random.Random, task: str, follow_prob: float, n_panels: int = 6) -> Example:
    """Tasks added for the emergent recipe: counted and marked narration, the main-object question."""
    if task == "scene_main":
        return _largest_object(rng, *_scene(rng), vocab.SCENE_MAIN_QUESTION, task, follow_prob)
    strip = synth.make_strip(rng, n_panels)
    answer, forced = _follow_narration(rng, strip.captions, follow_prob, NARRATION_STYLES[task])
    return Example(strip.image, vocab.NARRATE_PROMPT, answer, task, forced, tuple(strip.panel_boxes))
