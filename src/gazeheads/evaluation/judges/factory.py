"""`make_judge`: a judge from its spec, with its verdict cache where the caller keeps its run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .anthropic_judge import AnthropicJudge
from .base import Judge
from .captions import CaptionSimilarityJudge
from .openai_judge import OpenAIJudge
from .spec import JudgeSpec
from .truth import GroundTruthJudge


def make_judge(spec: str | JudgeSpec, *, cache_dir: str | Path | None = None, **overrides: Any) -> Judge:
    """A judge from a spec string (or a parsed `JudgeSpec`).

    `cache_dir` is the caller's run folder: every judge that calls a model keeps its
    verdicts in `<cache_dir>/verdicts.jsonl` and its vendor batches in
    `<cache_dir>/judge-batches.jsonl`, so a resumed or re-judged run pays for nothing twice;
    judges that call no model ignore it. `overrides` are constructor keyword arguments
    (over the spec's options), e.g. `api_key=`, `encoder=`, `sleep=`.
    Nothing is loaded or contacted here; call `check_ready()` before generating.
    """
    spec = JudgeSpec.parse(spec)
    kwargs = {**spec.kwargs(), **overrides}
    if spec.kind == "truth":
        return GroundTruthJudge(**kwargs)
    if spec.kind == "captions":
        return CaptionSimilarityJudge(spec.model, **kwargs)
    judge_class = AnthropicJudge if spec.kind == "anthropic" else OpenAIJudge
    return judge_class(spec.model, cache_dir=cache_dir, **{"base_url": spec.base_url, **kwargs})
