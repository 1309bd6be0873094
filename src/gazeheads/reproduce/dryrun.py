"""`gazeheads reproduce --dry-run`: the plan and its cost, from the config and processor alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..layout import round_to
from .estimate import ModelSize, PromptSizes, StepEstimate, assumptions, estimate, judge_tokens_per_call
from .estimate import prompt_sizes as measure_prompts
from .facts import head_shape, parameter_counts, read_config, read_processor
from .gpus import GPUS
from .plan import ReproduceConfig, ReproducePlan, plan_reproduction

DTYPE_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4}


@dataclass
class DryRun:
    """A checked plan with its estimate (nothing loaded, nothing run)."""

    plan: ReproducePlan
    size: ModelSize
    prompts: PromptSizes
    steps: list[StepEstimate]
    gpu: str
    judge: str
    judge_ready: str
    model_class: str

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.plan.config.model, "class": self.model_class, "k": self.plan.k,
                "shape": [self.plan.shape.n_layers, self.plan.shape.n_heads, self.plan.shape.n_kv_heads],
                "parameters": self.size.params.to_dict(), "discovery": self.plan.discover_spec,
                "evaluation": self.plan.eval_spec, "strip": list(self.prompts.strip_size),
                "image_tokens": self.prompts.image_tokens, "prompt_tokens": self.prompts.prompt_tokens,
                "judge": self.judge, "steps": [vars(s) for s in self.steps], "gpu": self.gpu}


def _strip_size(plan: ReproducePlan) -> tuple[tuple[int, int], str]:
    """The evaluation strips' size: measured on the first strip where the data is local, else nominal."""
    from ..data.spec import parse_comics, resolve_comics

    spec = parse_comics(plan.eval_spec)
    layout = plan.layout.strip
    if spec.kind in ("synth", "folder"):
        strip = resolve_comics(spec, layout, limit=1)[0]
        return strip.image.size, f"the first evaluation strip ({strip.comic_id})"
    height = layout.rounded_height
    width = layout.n_panels * round_to(height, layout.multiple)
    return (width, height), (f"{layout.n_panels} square panels at {height} px, assumed: the data is not read in a dry "
                             "run, and gpt-image-1 panels are square")


def dry_run(config: ReproduceConfig, gpu: str = "h100") -> DryRun:
    """Check everything that can be checked without weights and estimate the run."""
    from ..evaluation.judges import JudgeError, JudgeSpec, make_judge

    model_config = read_config(config.model, config.revision)
    plan = plan_reproduction(config, head_shape(model_config))
    spec = JudgeSpec.parse(config.judge)
    try:
        make_judge(spec, cache_dir=plan.out).check_ready()
        ready = "ready"
    except JudgeError as exc:
        ready = f"NOT READY: {exc.problem} Fix: {exc.fix}" if exc.fix else f"NOT READY: {exc.problem}"
    processor = read_processor(config.model, config.revision)
    size = ModelSize.of(model_config, parameter_counts(model_config), DTYPE_BYTES.get(config.dtype, 2))
    strip_size, note = _strip_size(plan)
    prompts = measure_prompts(model_config, processor, plan, strip_size, note)
    steps = estimate(plan, size, prompts, GPUS[gpu], spec.calls_model)
    classes = getattr(model_config, "architectures", None) or [type(model_config).__name__]
    return DryRun(plan, size, prompts, steps, gpu, str(spec), ready, classes[0])


def _g(value: float) -> str:
    return f"{value / 1e9:.2f}B"


def _time(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_dry_run(run: DryRun) -> str:
    plan, size, p = run.plan, run.size, run.prompts
    shape, params = plan.shape, size.params
    gpu = GPUS[run.gpu]
    lines = [f"gazeheads reproduce --dry-run: the paper's protocol on {plan.config.model or 'the bundled model'} "
             "(config and processor read; no weights loaded, nothing run)", ""]
    lines.append(f"model      {run.model_class}: {shape.n_layers} layers x {shape.n_heads} heads "
                 f"({shape.n_kv_heads} KV), "
                 f"head_dim {size.head_dim}, hidden {size.hidden}, vocab {size.vocab:,}")
    lines.append(f"           {_g(params.total)} parameters from the config's shapes (language {_g(params.language)}, "
                 f"vision {_g(params.vision)}, embedding {_g(params.embedding)}, LM head {_g(params.lm_head)}); "
                 f"weights {size.weight_bytes / 2**30:.1f} GiB at {size.dtype_bytes} bytes")
    ks = next(s.ks for s in plan.steps if s.protocol == "topk")
    lines.append(f"heads      K = {plan.k} of {shape.total:,} ({plan.k / shape.total:.1%}); random controls at or "
                 "below "
                 f"score percentile {plan.heads.percentile:g}; top-K sweep K = {', '.join(map(str, ks))} "
                 f"({plan.config.topk_protocol})")
    lines.append(f"data       {plan.data_note}")
    lines.append(f"strip      {p.strip_size[0]}x{p.strip_size[1]} px ({p.strip_note}): {p.image_tokens} image tokens; "
                 "prompt tokens " + ", ".join(f"{k} {v}" for k, v in p.prompt_tokens.items())
                 + f"; discovery prefix {p.discovery_prefix} + {p.discovery_suffix:.1f} per question")
    lines.append(f"judge      {run.judge}: {run.judge_ready}")
    for note in plan.notes:
        lines.append(f"note       {note}")
    lines += ["", f"{'step':<10} {'strips':>6} {'generations':>11} {'prompt tok':>11} {'new tok':>10} "
                  f"{'judge calls':>11} {'PFLOP':>8} {'GPU time':>9} {'peak mem':>9}"]
    for s in run.steps:
        gens = f"{s.detail.get('questions', s.generations):,}" + ("q" if s.name == "discovery" else "")
        lines.append(f"{s.name:<10} {s.strips:>6} {gens:>11} {s.prefill_tokens:>11,} {s.new_tokens:>10,} "
                     f"{s.judge_calls:>11,} {s.flops / 1e15:>8.1f} {_time(s.seconds):>9} "
                     f"{s.peak_bytes / 2**30:>6.1f} GiB")
    total = sum(s.seconds for s in run.steps)
    peak = max(s.peak_bytes for s in run.steps)
    calls = sum(s.judge_calls for s in run.steps)
    lines.append(f"{'total':<10} {'':>6} {sum(s.generations for s in run.steps):>11,} "
                 f"{sum(s.prefill_tokens for s in run.steps):>11,} {sum(s.new_tokens for s in run.steps):>10,} "
                 f"{calls:>11,} {sum(s.flops for s in run.steps) / 1e15:>8.1f} {_time(total):>9} "
                 f"{peak / 2**30:>6.1f} GiB")
    fits = "fits" if peak <= gpu.memory_gib * 2**30 else "does NOT fit (use --device-map auto over several GPUs)"
    lines += ["", f"estimate: {_time(total)} of GPU time, peak {peak / 2**30:.1f} GiB ({fits} on one {gpu.name})"]
    if calls and run.steps[0].detail.get("llm_judge"):
        per_call = judge_tokens_per_call(p.strip_size, 60)
        lines.append(f"judge: at most {calls:,} requests (junk answers and answers equal to the unsteered one are not "
                     f"sent), about {per_call} input tokens each, ~{calls * per_call / 1e6:.1f}M input tokens in all")
    elif calls:
        lines.append(f"judge: {calls:,} local verdicts, no API calls")
    lines.append("how the estimate is made (assumptions, not measurements):")
    lines += [f"  - {a}" for a in assumptions(gpu)]
    return "\n".join(lines)
