"""What every judge shares: the item it judges, the verdict it returns, and the `Judge` interface."""

from __future__ import annotations

import base64
import io
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Sequence

from PIL import Image

from ...errors import GazeheadsError
from .rules import BASELINE_JACCARD, junk_reason, word_jaccard


class JudgeError(GazeheadsError):
    """A judge that cannot run: a bad spec, a missing key, package, endpoint, model or input."""


def png_base64(image: Image.Image) -> str:
    """The image as base64-encoded PNG."""
    if image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class JudgeItem:
    """One answer to judge, with what a judge may need to place it.

    `captions` / `attributes`: per-panel ground truth (synthetic data). `category_names`
    switches to object naming. `key` identifies the item (strip, condition, target) for caching.
    """

    text: str
    n_panels: int = 6
    captions: list[str] | None = None
    attributes: list[dict] | None = None
    baseline: str | None = None
    image: Image.Image | None = None
    category_names: list[str] | None = None
    key: str = ""

    def to_dict(self, include_image: bool = False) -> dict:
        """JSON-serialisable; the image (base64 PNG under "image_png") only when asked for."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "image"}
        if include_image and self.image is not None:
            data["image_png"] = png_base64(self.image)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "JudgeItem":
        known = {f.name for f in fields(cls)} - {"image"}
        item = cls(**{k: v for k, v in data.items() if k in known})
        if data.get("image_png"):
            item.image = Image.open(io.BytesIO(base64.b64decode(data["image_png"]))).convert("RGB")
        return item

    @property
    def n_options(self) -> int:
        """How many choices the forced choice has (panels, or categories for object naming)."""
        return len(self.category_names) if self.category_names is not None else self.n_panels


@dataclass
class Verdict:
    """A judge's forced choice: a 1-based panel, or for object naming an index into category_names.

    `choice` is kept for the record even when the verdict cannot count as a hit.
    """

    choice: int | None
    junk: bool = False
    same_as_baseline: bool = False
    judge: str = ""
    detail: dict = field(default_factory=dict)

    def hit(self, target: int) -> bool:
        """True when the answer describes `target` and neither junk nor the baseline answer."""
        return self.choice is not None and self.choice == target and not self.junk and not self.same_as_baseline

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Verdict":
        return cls(
            choice=data.get("choice"),
            junk=bool(data.get("junk", False)),
            same_as_baseline=bool(data.get("same_as_baseline", False)),
            judge=str(data.get("judge", "")),
            detail=dict(data.get("detail") or {}),
        )


class Judge:
    """One interface: `check_ready()` before any generation, then `judge(item)` or `judge_many(items)`.

    Both apply the shared rules: a junk answer is a miss without asking the judge; an answer
    whose word Jaccard with the baseline reaches `baseline_threshold` is a miss
    (`same_as_baseline`). Judges that pay per verdict set `ask_same_as_baseline = False` and
    are not asked about those answers at all.
    """

    name: str = "judge"
    baseline_threshold: float | None = BASELINE_JACCARD
    ask_same_as_baseline: bool = True

    def check_ready(self) -> None:
        """Raise a JudgeError now if judging would fail later (missing key, package, model, endpoint)."""

    def judge(self, item: JudgeItem) -> Verdict:
        """The verdict on one answer."""
        return self.judge_many([item])[0]

    def judge_many(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        """Verdicts in the order of `items`; the judge is asked once about all that the rules leave."""
        verdicts: list[Verdict | None] = [None] * len(items)
        similarity: dict[int, float] = {}
        asked: list[int] = []
        for i, item in enumerate(items):
            reason = junk_reason(item.text)
            if reason is not None:
                verdicts[i] = Verdict(None, junk=True, judge=self.name, detail={"junk": reason})
                continue
            if item.baseline is not None:
                similarity[i] = word_jaccard(item.text, item.baseline)
            if not self.ask_same_as_baseline and self._repeats_baseline(similarity.get(i)):
                verdicts[i] = Verdict(None, same_as_baseline=True, judge=self.name,
                                      detail={"baseline_jaccard": round(similarity[i], 4),
                                              "not_asked": "same as the unsteered answer"})
                continue
            asked.append(i)
        for i, verdict in zip(asked, self._choose_many([items[i] for i in asked])):
            if i in similarity:
                verdict.detail["baseline_jaccard"] = round(similarity[i], 4)
                verdict.same_as_baseline = self._repeats_baseline(similarity[i])
            verdicts[i] = verdict
        return verdicts  # type: ignore[return-value]

    def _repeats_baseline(self, similarity: float | None) -> bool:
        return similarity is not None and self.baseline_threshold is not None and similarity >= self.baseline_threshold

    def _choose_many(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        """The judge's own forced choice for items that passed the junk rules."""
        return [self._choose(item) for item in items]

    def _choose(self, item: JudgeItem) -> Verdict:
        raise NotImplementedError


class DeferredJudge(Judge):
    """Stands in for `judge` while generating: every answer gets a placeholder verdict for free.

    Judge the run afterwards in one pass (`rejudge(run_dir, judge, ...)`), so an LLM judge
    sees all its answers at once and can send them as one vendor batch. The placeholder
    carries the real judge's name, so a resumed run keeps its settings.
    """

    def __init__(self, judge: Judge) -> None:
        self.inner = judge
        self.name = judge.name

    def check_ready(self) -> None:
        self.inner.check_ready()

    def judge_many(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        return [Verdict(None, judge=self.name, detail={"deferred": True}) for _ in items]
