"""Judges: which panel (or which object category) does a generated answer describe?

Every judge answers a forced choice for one `JudgeItem` and returns a `Verdict`. The rules of
docs/method.md section 6 are shared by all of them and applied before a judge is asked: a junk
answer is a miss, and an answer essentially identical to the unsteered baseline (word
Jaccard >= 0.85) is a miss.

    truth                                exact captions/attributes of synthetic data (no model)
    captions:<model or path>             sentence-transformers similarity to the per-panel captions
    anthropic[:<model>][@<base_url>]     Claude sees the image and the answer (anthropic client)
    openai:<model>[@<base_url>]          OpenAI or any OpenAI-compatible endpoint (openai client)

`make_judge(spec, cache_dir=RUN)` builds one; LLM judges keep their verdicts and vendor
batches in RUN. Object naming (COCO boxes): give `JudgeItem.category_names`; the choice is
then the 0-based index of the category the answer names. Modules: `rules` (junk and
baseline rules), `base` (items, verdicts, the interface), `truth`, `captions`, `spec`,
`prompt`, `cache`, `llm` (shared LLM machinery), `anthropic_judge`, `openai_judge`, `factory`.
"""

from .anthropic_judge import AnthropicJudge
from .base import DeferredJudge, Judge, JudgeError, JudgeItem, Verdict, png_base64
from .cache import BatchLedger, VerdictCache
from .captions import CaptionSimilarityJudge
from .factory import make_judge
from .llm import LLMJudge
from .openai_judge import OpenAIJudge
from .prompt import PROMPT_VERSION, judge_prompt, parse_choice, parse_reply
from .rules import BASELINE_JACCARD, junk_reason, normalize, word_jaccard, words
from .spec import JUDGE_SPECS, JudgeSpec, parse_judge_spec
from .truth import COCO_SYNONYMS, GroundTruthJudge, plural_forms

__all__ = [
    "AnthropicJudge", "BASELINE_JACCARD", "BatchLedger", "COCO_SYNONYMS", "CaptionSimilarityJudge", "DeferredJudge",
    "GroundTruthJudge", "JUDGE_SPECS", "Judge", "JudgeError", "JudgeItem", "JudgeSpec", "LLMJudge", "OpenAIJudge",
    "PROMPT_VERSION", "Verdict", "VerdictCache", "judge_prompt", "junk_reason", "make_judge", "normalize",
    "parse_choice", "parse_judge_spec", "parse_reply", "plural_forms", "png_base64", "word_jaccard", "words",
]
