"""The quick causal check: with a ranking, does steering its top-K heads move the answer?

On a few strips, each panel in turn is the target of the VQA question under three conditions:
unsteered, the top-K gaze heads, and K random non-gaze heads. A judge says which panel each
answer describes. The check passes when the gaze heads hit the target more often than both
controls; the table of all three is printed beside it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from .. import prompts
from ..data.strips import Strip
from ..evaluation.judges import Judge, JudgeItem
from ..evaluation.protocols import protocol
from ..evaluation.runner import split_generation
from ..heads import HeadSet
from ..model import GazeModel
from ..ranking import Ranking
from ..regions import Panel
from ..specs import HeadSpec
from ..steering import steer
from .result import CheckResult, judged

CAUSAL = "causal (ranking)"


def _answers(gm: GazeModel, strip: Strip, heads: HeadSet | None, new_tokens: int) -> list[str]:
    """The VQA answer steered to each panel in turn (one batch), or the one unsteered answer."""
    spec = protocol("vqa")
    n = strip.n_panels if heads is not None else 1
    encoded = gm.encode([strip] * n, [prompts.VQA_QUESTION] * n)
    if heads is None:
        ids = gm.generate_ids(encoded, new_tokens)
    else:
        with steer(gm, heads, [Panel(k) for k in range(1, n + 1)], encoded, spec.steer):
            ids = gm.generate_ids(encoded, new_tokens)
    return [split_generation(gm, row, spec).text for row in ids]


def _score(judge: Judge, strip: Strip, texts: Sequence[str], baseline: str | None, condition: str) -> tuple[int, int]:
    """(hits, junk) of answers whose i-th targets panel i+1 (a single text is judged against every panel)."""
    n = strip.n_panels
    texts = list(texts) * n if len(texts) == 1 else list(texts)
    items = [JudgeItem(text=text, n_panels=n, captions=strip.captions, attributes=strip.meta.get("attributes"),
                       baseline=baseline, image=strip.image, key=f"verify|{condition}|{strip.comic_id}|{k}")
             for k, text in enumerate(texts, start=1)]
    verdicts = judge.judge_many(items)
    return sum(v.hit(k) for k, v in enumerate(verdicts, start=1)), sum(v.junk for v in verdicts)


def causal_check(gm: GazeModel, ranking: Ranking, strips: Sequence[Strip], judge: Judge, heads: HeadSpec,
                 new_tokens: int) -> tuple[CheckResult, list[dict]]:
    """Accuracy of unsteered, top-K gaze and K random non-gaze answers; passes when gaze beats both."""
    ranking.check_compatible(gm)
    conditions = {"unsteered": None, "top-K gaze": ranking.select(replace(heads, kind="gaze")),
                  "random non-gaze": ranking.select(replace(heads, kind="random"))}
    totals = {name: [0, 0, 0] for name in conditions}  # hits, junk, answers
    for strip in strips:
        baseline = _answers(gm, strip, None, new_tokens)
        for name, head_set in conditions.items():
            texts = baseline if head_set is None else _answers(gm, strip, head_set, new_tokens)
            hits, junk = _score(judge, strip, texts, None if head_set is None else baseline[0], name)
            totals[name][0] += hits
            totals[name][1] += junk
            totals[name][2] += strip.n_panels
    table = []
    for name, head_set in conditions.items():
        hits, junk, n = totals[name]
        table.append({"condition": name, "heads": head_set.name if head_set else "-", "k": len(head_set or ()),
                      "hits": hits, "n": n, "accuracy": hits / n if n else 0.0, "junk": junk})
    acc = {row["condition"]: row["accuracy"] for row in table}
    ok = acc["top-K gaze"] > acc["random non-gaze"] and acc["top-K gaze"] > acc["unsteered"]
    k = table[1]["k"]
    measured = (f"VQA steered to each panel of {len(strips)} strips: top-{k} gaze {acc['top-K gaze']:.2f}, "
                f"{k} random {acc['random non-gaze']:.2f}, unsteered {acc['unsteered']:.2f} (judge {judge.name})")
    return judged(CAUSAL, ok, measured, "top-K gaze > random and > unsteered", table=table), table


def format_table(table: list[dict]) -> str:
    lines = [f"      {'condition':<16} {'K':>4} {'hits':>9} {'accuracy':>8} {'junk':>5}"]
    for row in table:
        lines.append(f"      {row['condition']:<16} {row['k']:>4} {row['hits']:>4}/{row['n']:<4} "
                     f"{row['accuracy']:>8.2f} {row['junk']:>5}")
    return "\n".join(lines)
