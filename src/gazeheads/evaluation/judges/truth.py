"""The ground-truth judge: exact matching against the captions or attributes of synthetic data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from .base import Judge, JudgeError, JudgeItem, Verdict
from .rules import words


# A few COCO categories and the everyday words a model uses for them. Plurals are derived.
COCO_SYNONYMS: dict[str, list[str]] = {
    "person": ["man", "woman", "boy", "girl", "child", "kid", "people", "player", "lady", "guy", "baby"],
    "bicycle": ["bike"],
    "motorcycle": ["motorbike", "scooter"],
    "airplane": ["plane", "aeroplane", "jet", "aircraft"],
    "car": ["automobile", "taxi"],
    "bus": ["coach"],
    "truck": ["lorry", "pickup"],
    "boat": ["ship", "sailboat", "canoe", "kayak"],
    "couch": ["sofa"],
    "tv": ["television", "monitor", "screen"],
    "laptop": ["notebook computer", "computer"],
    "cell phone": ["phone", "cellphone", "smartphone", "mobile phone"],
    "dining table": ["table"],
    "potted plant": ["plant", "houseplant", "flower pot"],
    "sports ball": ["ball", "football", "soccer ball", "baseball", "basketball", "tennis ball"],
    "donut": ["doughnut"],
    "hair drier": ["hair dryer", "hairdryer"],
    "cup": ["mug"],
    "handbag": ["purse", "bag"],
    "wine glass": ["glass"],
    "teddy bear": ["teddy", "stuffed animal"],
    "fire hydrant": ["hydrant"],
    "traffic light": ["stoplight", "traffic signal"],
    "remote": ["remote control"],
    "mouse": ["computer mouse"],
    "bed": ["mattress"],
    "cow": ["cattle", "calf"],
    "sheep": ["lamb"],
    "horse": ["pony"],
    "dog": ["puppy"],
    "cat": ["kitten", "kitty"],
}

_IRREGULAR_PLURALS = {"person": "people", "mouse": "mice", "child": "children", "man": "men",
                      "woman": "women", "foot": "feet", "tooth": "teeth", "goose": "geese"}


def plural_forms(word: str) -> set[str]:
    """The word and its likely plurals: box -> boxes, pony -> ponies, knife -> knives, mouse -> mice."""
    forms = {word, word + "s"}
    if word.endswith(("s", "x", "z", "ch", "sh", "o")):
        forms.add(word + "es")
    if len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        forms.add(word[:-1] + "ies")
    if word.endswith("fe"):
        forms.add(word[:-2] + "ves")
    elif word.endswith("f"):
        forms.add(word[:-1] + "ves")
    if word in _IRREGULAR_PLURALS:
        forms.add(_IRREGULAR_PLURALS[word])
    return forms


def _phrase_variants(phrase: str) -> list[tuple[str, ...]]:
    """Word tuples of `phrase` with its last word in every plural form."""
    ws = words(phrase)
    if not ws:
        return []
    return [tuple(ws[:-1]) + (last,) for last in sorted(plural_forms(ws[-1]))]


@dataclass(frozen=True)
class _Mention:
    start: int
    length: int
    label: int


def _mentions(answer: Sequence[str], phrases: Sequence[tuple[tuple[str, ...], int]]) -> list[_Mention]:
    """Every whole-word occurrence of each labelled phrase in the answer's words."""
    found = []
    for phrase, label in phrases:
        n = len(phrase)
        for start in range(len(answer) - n + 1):
            if tuple(answer[start : start + n]) == phrase:
                found.append(_Mention(start, n, label))
    return found


def _first_mention(found: Sequence[_Mention]) -> tuple[list[int], _Mention]:
    """The labels of the first phrase mentioned; among overlapping mentions the longest wins.

    More than one label comes back only when identical phrases name several labels.
    """
    start = min(m.start for m in found)
    end = max(m.start + m.length for m in found if m.start == start)
    overlapping = [m for m in found if m.start < end]
    longest = max(m.length for m in overlapping)
    best = min((m for m in overlapping if m.length == longest), key=lambda m: m.start)
    tied = sorted({m.label for m in overlapping if m.length == longest and m.start == best.start})
    return tied, best


def _mention_order(found: Sequence[_Mention]) -> list[int]:
    order: list[int] = []
    for m in sorted(found, key=lambda m: (m.start, -m.length)):
        if m.label not in order:
            order.append(m.label)
    return order


class GroundTruthJudge(Judge):
    """Exact matching against synthetic ground truth.

    Panels: the panel whose caption the answer mentions first (whole words, after
    normalisation; the longest of overlapping matches wins). Objects: the category whose
    name, a synonym or a plural is mentioned first. An answer naming nothing is junk.

    The near-identical-to-baseline rule is off by default here: the answer is checked
    against exact ground truth, so an unsteered answer that happens to name the target
    (panel 1 for the bundled model's ambiguous question) is a correct forced choice, and
    chance stays 1/N. Pass `baseline_threshold=0.85` to apply the paper's rule anyway.
    """

    name = "truth"

    def __init__(
        self,
        *,
        synonyms: Mapping[str, Sequence[str]] | None = None,
        attribute_keys: Sequence[str] = ("colour", "shape"),
        baseline_threshold: float | None = None,
    ) -> None:
        self.synonyms = COCO_SYNONYMS if synonyms is None else dict(synonyms)
        self.attribute_keys = tuple(attribute_keys)
        self.baseline_threshold = baseline_threshold

    def _choose(self, item: JudgeItem) -> Verdict:
        if item.category_names is not None:
            return self._name_object(item)
        return self._name_panel(item)

    def check_strip(self, captions, attributes) -> None:
        """Before any generation: a strip must carry captions or attributes for this judge to place answers."""
        if captions is None and attributes is None:
            self.panel_captions(JudgeItem(text=""))

    def panel_captions(self, item: JudgeItem) -> list[str]:
        """Captions given, else built from attributes ("caption" or the attribute_keys joined)."""
        if item.captions is not None:
            captions = list(item.captions)
        elif item.attributes is not None:
            captions = [a.get("caption") or " ".join(str(a[k]) for k in self.attribute_keys if k in a)
                        for a in item.attributes]
        else:
            raise JudgeError("The ground-truth judge needs per-panel captions or attributes.",
                             "Use synthetic data (gazeheads data synth), or a judge that needs no ground truth: "
                             "captions:<model>, anthropic:<model> or openai:<model>@<url>.")
        if len(captions) != item.n_panels:
            raise JudgeError(f"{len(captions)} captions for a {item.n_panels}-panel strip.",
                             "Give exactly one caption (or attribute dict) per panel.")
        return captions

    def _name_panel(self, item: JudgeItem) -> Verdict:
        captions = self.panel_captions(item)
        phrases = [(tuple(words(c)), k) for k, c in enumerate(captions, start=1) if words(c)]
        return self._verdict(item.text, phrases, "matches no panel caption", lambda k: captions[k - 1])

    def _name_object(self, item: JudgeItem) -> Verdict:
        names = list(item.category_names or [])
        phrases = []
        for i, name in enumerate(names):
            for term in [name, *self.synonyms.get(name, [])]:
                phrases += [(variant, i) for variant in _phrase_variants(term)]
        return self._verdict(item.text, phrases, "names no category", lambda i: names[i])

    def _verdict(self, text: str, phrases, nothing: str, describe: Callable[[int], str]) -> Verdict:
        found = _mentions(words(text), phrases)
        if not found:
            return Verdict(None, junk=True, judge=self.name, detail={"junk": nothing})
        tied, best = _first_mention(found)
        detail: dict = {"matched": describe(tied[0]), "mentioned": _mention_order(found)}
        if len(tied) > 1:
            detail.update(ambiguous=True, tied=tied)
        return Verdict(tied[0], judge=self.name, detail=detail)
