"""The paper's protocol and its published figures, as data (docs/method.md section 7).

arXiv 2606.14703, "Gaze Heads: How VLMs Look at What They Describe", on Qwen3-VL-8B-Instruct:
discovery on the COMICS corpus, evaluation on the 500 strips of baulab/openai-comic-strips, K = 100
of 1,152 heads, Claude as the judge.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..specs import PAPER_K, PAPER_TOTAL_HEADS, TOPK_DEFAULT

PAPER_MODEL = "Qwen/Qwen3-VL-8B-Instruct"
EVAL_DATASET = "hf:baulab/openai-comic-strips"
EVAL_STRIPS = 500  # the whole data set: 500 strips x 6 targets = 3,000 pairs
COMICS_DISCOVERY_STRIPS = 500  # the published discovery script's default number of COMICS strips
HUB_DISCOVERY_STRIPS = 100
"""Without COMICS, discovery takes the data set's first 100 strips and evaluation the other 400."""
PAPER_JUDGE = "anthropic"  # claude-sonnet-4-6, the published code's default judge model
CHANCE = 1 / 6


def paper_ks(total_heads: int) -> tuple[int, ...]:
    """The top-K sweep (5 .. 200 of 1,152 heads) at the same shares of this model's heads."""
    scaled = {min(total_heads, max(1, round(k * total_heads / PAPER_TOTAL_HEADS))) for k in TOPK_DEFAULT}
    return tuple(sorted(scaled))


@dataclass(frozen=True)
class Figure:
    """One published claim and where its measured counterpart lives in a run's summary rows.

    `measure`: "accuracy", "junk" (junk rate), "spearman" (mean per strip), "sweep_first" (accuracy
    at the smallest K of the sweep) or "sweep_peak" (the K with the best accuracy).
    """

    key: str
    claim: str
    paper: str
    protocol: str
    condition: str
    measure: str
    value: float | None = None


FIGURES: tuple[Figure, ...] = (
    Figure("vqa_gaze", "VQA steered by the top-K gaze heads", "83.1% of 3,000 pairs", "vqa", "gaze", "accuracy", 0.831),
    Figure("vqa_random", "VQA, K random non-gaze heads", "near chance (16.7%)", "vqa", "random", "accuracy", CHANCE),
    Figure("vqa_all", "VQA, all heads", "destroys generation", "vqa", "all", "junk", 1.0),
    Figure("narration_gaze", "static narration, top-K gaze heads", "79.4%", "narration", "gaze", "accuracy", 0.794),
    Figure("narration_random", "static narration, K random non-gaze heads", "near chance (16.7%)", "narration",
           "random", "accuracy", CHANCE),
    Figure("narration_all", "static narration, all heads", "destroys generation", "narration", "all", "junk", 1.0),
    Figure("dynamic_gaze", "dynamic narration (50-token segments), Spearman", "0.87", "dynamic", "gaze", "spearman",
           0.87),
    Figure("dynamic_random", "dynamic narration, random heads, Spearman", "slightly negative", "dynamic", "random",
           "spearman", None),
    Figure("topk_first", "top-K sweep, 5 heads", "36%", "topk", "gaze", "sweep_first", 0.36),
    Figure("topk_peak", "top-K sweep, best K", f"K = {PAPER_K}", "topk", "gaze", "sweep_peak", float(PAPER_K)),
)
