"""The paper's protocol as a plan: data, heads, protocols and sizes, decided before anything loads.

    config = ReproduceConfig(model="Qwen/Qwen3-VL-8B-Instruct", comics_discovery="comics:/data/COMICS")
    plan = plan_reproduction(config, read_config(config.model))   # reads no weights; raises on bad input

Data: discovery on COMICS when `comics_discovery` is given (500 strips, the published script's
default) and evaluation on all 500 strips of baulab/openai-comic-strips; otherwise discovery on
that data set's first 100 strips and evaluation on the other 400 (disjoint, fewer pairs than the
paper's 3,000). A model trained on gazeheads' synthetic strips (the bundled one) uses synthetic
strips of disjoint seeds. K is the paper's share of heads (100 of 1,152); answer lengths are the
paper's (VQA 15 tokens, narration 100, dynamic 50 a segment) unless the model's gazeheads.json
states its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataError, GazeheadsError
from ..layout import ModelLayout, read_layout
from ..specs import HeadSpec
from . import paper

if TYPE_CHECKING:
    from ..adapters.base import HeadShape

PROTOCOLS = ("vqa", "narration", "dynamic", "topk")
CONDITIONS = {"vqa": ("gaze", "random", "all"), "narration": ("gaze", "random", "all"),
              "dynamic": ("gaze", "random"), "topk": ("gaze",)}
"""Conditions per protocol: the published scripts run all heads for VQA and static narration and
leave them out of dynamic narration; the top-K sweep steers the gaze heads at each K."""


@dataclass(frozen=True)
class ReproduceConfig:
    """Everything `gazeheads reproduce` is asked (None: the paper's choice for this model and data)."""

    model: str | None = paper.PAPER_MODEL
    revision: str | None = None
    device: str | None = None
    dtype: str = "auto"
    device_map: str | None = None
    comics_discovery: str | None = None
    comics: str | None = None
    discover_strips: int | None = None
    eval_strips: int | None = None
    k: int | None = None
    ks: tuple[int, ...] | None = None
    topk_protocol: str = "vqa"
    control_percentile: float | None = None
    dynamic_question: str | None = None
    judge: str = paper.PAPER_JUDGE
    seed: int = 0
    out: str = "runs/reproduce"
    restart: bool = False
    strip_height: int | None = None
    strip_gap: int | None = None


@dataclass(frozen=True)
class Step:
    """One protocol run: its evaluation settings' essentials and the work they imply per strip."""

    protocol: str
    conditions: tuple[str, ...]
    ks: tuple[int, ...]
    question: str
    new_tokens: int
    segment_tokens: int | None
    phase: str


@dataclass(frozen=True)
class ReproducePlan:
    config: ReproduceConfig
    layout: ModelLayout
    shape: "HeadShape"
    k: int
    heads: HeadSpec
    discover_spec: str
    eval_spec: str
    discover_strips: int
    eval_strips: int
    data_note: str
    steps: tuple[Step, ...]
    out: Path
    strips_per_batch: int = 1
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_panels(self) -> int:
        return self.layout.strip.n_panels


def _positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise GazeheadsError(f"--{name.replace('_', '-')} {value!r}: must be a whole number >= 1.", "Give 1 or more.")


def _data(layout: ModelLayout, cfg: ReproduceConfig) -> tuple[str, str, int, int, str]:
    """(discovery spec, evaluation spec, their sizes, a note saying how they are disjoint)."""
    from ..data.spec import check_comics, disjoint_split, parse_comics
    from ..mainjob import SYNTH_DISCOVERY_SEED, SYNTH_EVAL_SEED

    d, e = cfg.discover_strips, cfg.eval_strips
    if cfg.comics_discovery is not None:
        discovery = parse_comics(cfg.comics_discovery)
        check_comics(discovery)
        evaluation = parse_comics(cfg.comics or paper.EVAL_DATASET)
        check_comics(evaluation)
        d = d or paper.COMICS_DISCOVERY_STRIPS
        e = e or paper.EVAL_STRIPS
        first, held = disjoint_split(discovery.text, d, 0)[0], disjoint_split(evaluation.text, e, 0)[0]
        if discovery.base == evaluation.base:
            raise DataError(f"--comics-discovery and --comics name the same strips ({discovery.base}).",
                            "Discover on another source (the paper: COMICS), or leave --comics-discovery out to split "
                            "one data set into disjoint slices.")
        note = f"discovery on {first}, evaluation on {held} (different sources, as in the paper)"
        return first, held, d, e, note
    if cfg.comics is None and layout.synthetic:
        d, e = d or paper.COMICS_DISCOVERY_STRIPS, e or paper.EVAL_STRIPS
        note = (f"the model was trained on synthetic strips: discovery on seeds {SYNTH_DISCOVERY_SEED}+, evaluation "
                f"on seeds {SYNTH_EVAL_SEED}+ (disjoint, never training strips)")
        return (f"synth:{SYNTH_DISCOVERY_SEED}[0:{d}]", f"synth:{SYNTH_EVAL_SEED}[0:{e}]", d, e, note)
    source = cfg.comics or paper.EVAL_DATASET
    parsed = parse_comics(source)
    check_comics(parsed)
    d = d or paper.HUB_DISCOVERY_STRIPS
    e = e or (paper.EVAL_STRIPS - d if parsed.base == parse_comics(paper.EVAL_DATASET).base else paper.EVAL_STRIPS)
    first, held = disjoint_split(source, d, e)
    note = (f"no --comics-discovery: discovery on {first}, evaluation on {held} (disjoint slices of one source; the "
            "paper discovers on COMICS and evaluates on all 500 strips)")
    return first, held, d, e, note


def plan_reproduction(cfg: ReproduceConfig, shape: "HeadShape") -> ReproducePlan:
    """Check the config against the model's head shape and decide the run (reads no weights)."""
    from dataclasses import replace

    from ..evaluation.judges import JudgeSpec
    from ..evaluation.protocols import protocol
    from ..files import check_output_dir

    for name in ("discover_strips", "eval_strips", "k"):
        _positive(name, getattr(cfg, name))
    if cfg.topk_protocol not in ("vqa", "narration"):
        raise GazeheadsError(f"--topk-protocol {cfg.topk_protocol!r}.", "Use vqa (default) or narration.")
    JudgeSpec.parse(cfg.judge)
    out = check_output_dir(Path(cfg.out))
    layout = read_layout(cfg.model)
    layout = replace(layout, strip=layout.strip.replace(height=cfg.strip_height, gap=cfg.strip_gap))
    percentile = cfg.control_percentile if cfg.control_percentile is not None else layout.control_percentile
    heads = HeadSpec(k=cfg.k, seed=cfg.seed, percentile=percentile)
    k = heads.resolve_k(shape.total)
    ks = cfg.ks or paper.paper_ks(shape.total)
    for value in ks:
        HeadSpec(k=value).resolve_k(shape.total)
    discover_spec, eval_spec, d, e, note = _data(layout, cfg)
    answer = layout.answer_tokens
    steps = []
    for name in PROTOCOLS:
        base = protocol(cfg.topk_protocol if name == "topk" else name)
        tokens = base.max_new_tokens
        if answer is not None and name != "dynamic":
            tokens = min(tokens, answer) if base.name == "vqa" else answer
        segment = (layout.segment_tokens or base.segment_tokens) if name == "dynamic" else None
        question = base.question
        if name == "dynamic":
            question = cfg.dynamic_question or layout.narration_question
        steps.append(Step(name, CONDITIONS[name], tuple(ks) if name == "topk" else (k,), question,
                          segment * layout.strip.n_panels if segment else tokens, segment, base.steer.phase))
    notes = []
    if layout.answer_tokens or layout.segment_tokens:
        notes.append(f"answer lengths from the model's layout ({layout.source}): answers {layout.answer_tokens} "
                     f"tokens, dynamic segments {layout.segment_tokens}")
    return ReproducePlan(cfg, layout, shape, k, heads, discover_spec, eval_spec, d, e, note, tuple(steps), out,
                         strips_per_batch=20 if layout.synthetic else 1, notes=tuple(notes))
