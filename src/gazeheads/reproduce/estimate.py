"""How much work a reproduction is, from the model's config and processor alone.

Token counts are exact for the strip size used: the model's own processor and chat template
encode each protocol's prompt with a blank strip of that size (no weights are loaded). Compute
and memory follow a stated model:

* FLOPs of a forward over `q` new tokens per row with `c` keys of context: 2 x (language
  parameters, without the embedding table) x tokens, plus attention 4 x layers x heads x head_dim
  x q x c per row (c averages q/2 + past in a causal prefill), plus 2 x hidden x vocab per row
  where logits are computed (generation), plus the vision tower: 2 x vision parameters x 4 patches
  per image token, once per distinct image;
* time of a forward: the largest of FLOPs / (peak x COMPUTE_USE), bytes read (weights + KV
  cache) / (bandwidth x BANDWIDTH_USE), and LAYER_OVERHEAD_S per layer (eager PyTorch launches
  one layer's kernels one by one; this floor dominates small-batch decoding);
* generation of T tokens: one prefill, then T - 1 single-token forwards; every answer is assumed
  to run its full length (an upper bound: answers that end early cost less);
* peak memory: the weights, plus for the largest batch its KV cache at full length, one layer's
  prefill activations (4 x hidden + 2 x MLP width per token), the float32 logits of one step and
  the eager path's score chunk (256 MiB), plus 10% allocator slack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from .. import prompts
from ..errors import ModelError
from .facts import ParameterCounts
from .gpus import Gpu
from .plan import ReproducePlan

COMPUTE_USE = 0.4
BANDWIDTH_USE = 0.7
LAYER_OVERHEAD_S = 6e-4
PATCHES_PER_IMAGE_TOKEN = 4
EAGER_CHUNK_BYTES = 256 * 2**20
SLACK = 1.1
JUDGE_MAX_SIDE = 1568


@dataclass(frozen=True)
class ModelSize:
    """What the cost model needs of a model, all from its config."""

    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    vocab: int
    params: ParameterCounts
    dtype_bytes: int = 2

    @classmethod
    def of(cls, config, params: ParameterCounts, dtype_bytes: int = 2) -> "ModelSize":
        text = config.get_text_config()
        heads = int(text.num_attention_heads)
        head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
        return cls(int(text.num_hidden_layers), heads, int(getattr(text, "num_key_value_heads", None) or heads),
                   head_dim, int(text.hidden_size), int(text.intermediate_size), int(text.vocab_size), params,
                   dtype_bytes)

    @property
    def weight_bytes(self) -> int:
        return self.params.total * self.dtype_bytes

    def kv_bytes(self, rows: int, tokens: int) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes * rows * tokens


@dataclass(frozen=True)
class PromptSizes:
    """Prompt lengths of the protocols' questions for one strip size, measured with the processor."""

    strip_size: tuple[int, int]
    strip_note: str
    image_tokens: int
    prompt_tokens: dict[str, int]
    discovery_prefix: int
    discovery_suffix: float


def _adapter_class(config):
    from ..adapters import ADAPTERS

    names = set(getattr(config, "architectures", None) or [])
    for adapter in ADAPTERS:
        if names & set(adapter.model_classes):
            return adapter
    raise ModelError(f"No adapter knows {sorted(names) or 'this config'}.", "Use a supported model.")


def prompt_sizes(config, processor, plan: ReproducePlan, strip_size: tuple[int, int], note: str) -> PromptSizes:
    """Encode every protocol's prompt with a blank strip of `strip_size` (the model's own processor)."""
    adapter = _adapter_class(config)(processor)
    image = Image.new("RGB", strip_size, (255, 255, 255))
    token = getattr(config, "image_token_id", None)
    token = getattr(config, "image_token_index", None) if token is None else token

    def encode(question: str) -> list[int]:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return adapter.process(processor, [text], [image])["input_ids"][0].tolist()

    n = plan.n_panels
    questions = {step.protocol: step.question for step in plan.steps}
    lengths = {name: len(encode(question)) for name, question in questions.items()}
    discovery = [encode(prompts.discovery_question(k, n)) for k in range(1, n + 1)]
    shortest = min(len(ids) for ids in discovery)
    prefix = next((i for i in range(shortest) if len({ids[i] for ids in discovery}) > 1), shortest)
    ids = encode(questions["vqa"])
    image_tokens = sum(1 for t in ids if t == token) if token is not None else 0
    lengths["discovery"] = round(sum(len(d) for d in discovery) / n)
    return PromptSizes(tuple(strip_size), note, image_tokens, lengths, prefix,
                       sum(len(d) - prefix for d in discovery) / n)


@dataclass
class StepEstimate:
    """The work of one step of the plan."""

    name: str
    strips: int
    generations: int = 0
    forwards: int = 0
    prefill_tokens: int = 0
    new_tokens: int = 0
    judge_calls: int = 0
    flops: float = 0.0
    seconds: float = 0.0
    peak_bytes: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


class CostModel:
    """Adds up forwards on one GPU (see the module doc for the formulas)."""

    def __init__(self, size: ModelSize, gpu: Gpu) -> None:
        self.size, self.gpu = size, gpu

    def forward(self, step: StepEstimate, rows: int, queries: int, context: float, logits: bool) -> None:
        s = self.size
        tokens = rows * queries
        flops = 2 * s.params.language * tokens + 4 * s.layers * s.heads * s.head_dim * tokens * context
        if logits:
            flops += 2 * s.hidden * s.vocab * rows
        weights = (s.params.language + (s.vocab * s.hidden if logits else 0)) * s.dtype_bytes
        read = weights + s.kv_bytes(rows, int(context))
        seconds = max(flops / (self.gpu.tflops * 1e12 * COMPUTE_USE),
                      read / (self.gpu.bandwidth_tbs * 1e12 * BANDWIDTH_USE), s.layers * LAYER_OVERHEAD_S)
        step.forwards += 1
        step.flops += flops
        step.seconds += seconds

    def vision(self, step: StepEstimate, image_tokens: int) -> None:
        flops = 2 * self.size.params.vision * image_tokens * PATCHES_PER_IMAGE_TOKEN
        step.flops += flops
        step.seconds += flops / (self.gpu.tflops * 1e12 * COMPUTE_USE)

    def generate(self, step: StepEstimate, rows: int, prompt: int, new: int) -> None:
        self.forward(step, rows, prompt, prompt / 2, logits=True)
        for t in range(1, new):
            self.forward(step, rows, 1, prompt + t, logits=True)
        step.generations += rows
        step.prefill_tokens += rows * prompt
        step.new_tokens += rows * new
        self.memory(step, rows, prompt, new)

    def memory(self, step: StepEstimate, rows: int, prompt: int, new: int) -> None:
        s = self.size
        activations = rows * prompt * (4 * s.hidden + 2 * s.intermediate) * s.dtype_bytes
        logits = rows * s.vocab * 4
        peak = s.kv_bytes(rows, prompt + new) + activations + logits + EAGER_CHUNK_BYTES
        step.peak_bytes = max(step.peak_bytes, int((s.weight_bytes + peak) * SLACK))


def estimate(plan: ReproducePlan, size: ModelSize, sizes: PromptSizes, gpu: Gpu,
             llm_judge: bool) -> list[StepEstimate]:
    """Per step of the plan: strips, generations, tokens, judge calls, FLOPs, GPU seconds and peak memory."""
    cost = CostModel(size, gpu)
    n = plan.n_panels
    discovery = StepEstimate("discovery", plan.discover_strips)
    for _ in range(plan.discover_strips):
        cost.vision(discovery, sizes.image_tokens)
        cost.forward(discovery, 1, sizes.discovery_prefix, sizes.discovery_prefix / 2, logits=False)
        suffix = max(1, round(sizes.discovery_suffix))
        cost.forward(discovery, n, suffix, sizes.discovery_prefix + suffix / 2, logits=False)
        discovery.prefill_tokens += sizes.discovery_prefix + n * suffix
    cost.memory(discovery, n, sizes.discovery_prefix + round(sizes.discovery_suffix), 0)
    discovery.detail["questions"] = plan.discover_strips * n
    steps = [discovery]
    for step in plan.steps:
        prompt = sizes.prompt_tokens[step.protocol]
        work = StepEstimate(step.protocol, plan.eval_strips)
        per_strip = StepEstimate(step.protocol, 1)  # one strip's cost, scaled by the number of strips
        if step.protocol == "dynamic":
            cost.vision(per_strip, sizes.image_tokens)
            cost.generate(per_strip, 1, prompt, step.new_tokens)  # the unsteered baseline
            for _ in step.conditions:
                cost.vision(per_strip, sizes.image_tokens)
                cost.generate(per_strip, 1, prompt, step.new_tokens)
            calls = len(step.conditions) * n
        else:
            if step.protocol != "topk":
                cost.vision(per_strip, sizes.image_tokens)
                cost.generate(per_strip, 1, prompt, step.new_tokens)  # the unsteered baseline
            batches = len(step.ks) if step.protocol == "topk" else len(step.conditions)
            for _ in range(batches):
                cost.vision(per_strip, sizes.image_tokens)  # the N rows share one image: one vision pass
                cost.generate(per_strip, n, prompt, step.new_tokens)
            calls = batches * n
        for name in ("generations", "forwards", "prefill_tokens", "new_tokens"):
            setattr(work, name, getattr(per_strip, name) * plan.eval_strips)
        work.flops, work.seconds = per_strip.flops * plan.eval_strips, per_strip.seconds * plan.eval_strips
        work.peak_bytes = per_strip.peak_bytes
        work.judge_calls = calls * plan.eval_strips
        work.detail = {"prompt_tokens": prompt, "new_tokens_per_answer": step.new_tokens,
                       "conditions": list(step.conditions), "ks": list(step.ks)}
        steps.append(work)
    for step in steps:
        step.detail["llm_judge"] = llm_judge
    return steps


def judge_tokens_per_call(strip_size: tuple[int, int], answer_tokens: int) -> int:
    """Input tokens of one LLM verdict: the image (width x height / 750 after scaling the longer side to
    1568 px), about 150 of instructions, the answer and the unsteered answer (docs/judges.md)."""
    width, height = strip_size
    scale = min(1.0, JUDGE_MAX_SIDE / max(width, height))
    return int(width * scale * height * scale / 750) + 150 + 2 * answer_tokens


def assumptions(gpu: Gpu) -> list[str]:
    return [
        f"GPU: one {gpu.name}, {gpu.tflops:g} TFLOP/s dense bf16 peak at {COMPUTE_USE:.0%} use, "
        f"{gpu.bandwidth_tbs:g} TB/s memory bandwidth at {BANDWIDTH_USE:.0%} use, {gpu.memory_gib:g} GiB",
        f"a forward costs at least {LAYER_OVERHEAD_S * 1e3:.1f} ms per layer (eager PyTorch kernel launches); "
        "batches of one strip's targets share a vision pass",
        "FLOPs: 2 x language parameters x tokens + attention 4 x layers x heads x head_dim x tokens x context + "
        f"2 x hidden x vocab per generated token + vision 2 x vision parameters x {PATCHES_PER_IMAGE_TOKEN} "
        "patches per image token",
        "every answer runs to its full length (an upper bound); memory: weights + the largest batch's KV cache, one "
        "layer's activations, the logits and a 256 MiB eager chunk, +10%",
    ]
