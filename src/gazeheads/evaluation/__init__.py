"""Evaluation: judges that place an answer on a panel, and the statistics of a run."""

from .judges import (
    AnthropicJudge,
    CaptionSimilarityJudge,
    GroundTruthJudge,
    Judge,
    JudgeError,
    JudgeItem,
    JudgeSpec,
    OpenAIJudge,
    Verdict,
    VerdictCache,
    junk_reason,
    make_judge,
    word_jaccard,
)
from .stats import accuracy_table, bootstrap_ci, bootstrap_means, mean_std, per_panel_table, per_size_table, spearman

__all__ = [
    "AnthropicJudge", "CaptionSimilarityJudge", "GroundTruthJudge", "Judge", "JudgeError", "JudgeItem",
    "JudgeSpec", "OpenAIJudge", "Verdict", "VerdictCache", "accuracy_table", "bootstrap_ci", "bootstrap_means",
    "junk_reason", "make_judge", "mean_std", "per_panel_table", "per_size_table", "spearman", "word_jaccard",
]
