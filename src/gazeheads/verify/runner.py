"""`verify_model`: every check of `gazeheads verify`, on one loaded model and one strip.

    report = verify_model(gm, strip)                       # geometry, exactness, numerics, prefix, float32
    report = verify_model(gm, strip, ranking=r, causal_strips=strips, judge=make_judge("truth"))
    print("\n".join(c.line() for c in report.checks)); report.save("runs/verify/verify.json")

Order and cost (one strip, the discovery question for its middle panel): the geometry checks
(three partial forwards: vision tower and embeddings only); four language-model forwards in the
model's dtype (captured and eager, unsteered and steered); the prefix check (N + 1 forwards
plus one batch of N); the unsteered captured and eager forwards again in float32 when the
model is not float32; with a ranking, the causal check (3 generations per strip).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import torch

from .. import prompts
from ..data.strips import Strip
from ..errors import GazeheadsError
from ..evaluation.judges import Judge
from ..heads import HeadSet
from ..model import Encoded, GazeModel
from ..ranking import Ranking
from ..regions import Panel, UnseenPixelsWarning
from ..specs import HeadSpec, SteerSpec
from . import GROUPS
from . import geometry as geo
from .causal import CAUSAL, causal_check
from .exactness import bias_check, capture_check, dtype_name, prefix_check
from .numerics import NUMERICS, numerics_check
from .observe import Steering, eager_pass, gazeheads_pass
from .precision import Float32Weights, float32_fits, float32_weights
from .result import CheckResult, VerifyReport, failed, skipped


@dataclass(frozen=True)
class VerifyOptions:
    """What to check and where: `layers` sampled (default first, middle, last), the `steer_heads` of
    the middle sampled layer (default 0, n/2 + 1, n - 1: several KV groups), the steering `spec`
    (the published one), the check `groups`, and for the causal check K, the control percentile,
    the seed and the answer length."""

    layers: tuple[int, ...] | None = None
    steer_heads: tuple[int, ...] | None = None
    spec: SteerSpec = field(default_factory=SteerSpec)
    groups: tuple[str, ...] = GROUPS
    heads: HeadSpec = field(default_factory=HeadSpec)
    new_tokens: int = 15

    def __post_init__(self) -> None:
        unknown = sorted(set(self.groups) - set(GROUPS))
        if unknown or not self.groups:
            raise GazeheadsError(f"Unknown check group(s) {unknown or list(self.groups)}.",
                                 f"Choose among {', '.join(GROUPS)}.")


def sample_layers(n_layers: int, given: Sequence[int] | None = None) -> list[int]:
    """The layers whose heads are checked: the given ones (checked), else first, middle and last."""
    layers = sorted(set(given)) if given else sorted({0, n_layers // 2, n_layers - 1})
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad:
        raise GazeheadsError(f"Layers {bad} do not exist in a model with {n_layers} layers.",
                             f"Give layers between 0 and {n_layers - 1}, e.g. --layers 0,{n_layers // 2}.")
    return layers


def steer_heads(n_heads: int, given: Sequence[int] | None = None) -> list[int]:
    heads = sorted(set(given)) if given else sorted({0, min(n_heads - 1, n_heads // 2 + 1), n_heads - 1})
    bad = [h for h in heads if not 0 <= h < n_heads]
    if bad:
        raise GazeheadsError(f"Heads {bad} do not exist in layers of {n_heads} heads.",
                             f"Give heads between 0 and {n_heads - 1}.")
    return heads


def model_dtype(gm: GazeModel) -> torch.dtype:
    """The dtype the language model computes in (its attention's weights)."""
    for parameter in gm.attention_modules()[0].parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return next(p.dtype for p in gm.model.parameters() if p.is_floating_point())


def _target(geometry, n_panels: int) -> Panel | None:
    """The middle panel, or the nearest one the model sees."""
    middle = n_panels // 2 + 1
    for k in sorted(range(1, n_panels + 1), key=lambda k: (abs(k - middle), k)):
        try:
            if bool(geometry.cell_mask(Panel(k)).any()):
                return Panel(k)
        except GazeheadsError:
            continue
    return None


def _prefix_is_shared(gm: GazeModel, strip: Strip, encoded: Encoded) -> bool:
    """Whether discovery shares the image prefix for this model's prompts (see discovery.strip_matrices)."""
    n = strip.n_panels
    if n < 2:
        return False
    first = encoded.inputs["input_ids"][0].cpu()
    other = gm.encode(strip, prompts.discovery_question(2 if n > 2 else 1, n)).inputs["input_ids"][0].cpu()
    length = min(len(first), len(other))
    differ = (first[:length] != other[:length]).nonzero()
    prefix = int(differ[0]) if len(differ) else length
    return prefix > int(encoded.geometries[0].positions.max()) and prefix < length


class _Run:
    """One verify run: emits results as they come and turns a crashed check into its failure."""

    def __init__(self, report: VerifyReport, on_result: Callable[[CheckResult], None] | None) -> None:
        self.report, self.on_result = report, on_result
        self.clock = time.time()

    def emit(self, result: CheckResult) -> CheckResult:
        """Record a result with the time spent since the previous one (the forwards it needed)."""
        now = time.time()
        result = replace(result, seconds=round(now - self.clock, 2))
        self.clock = now
        self.report.checks.append(result)
        if self.on_result is not None:
            self.on_result(result)
        return result

    def attempt(self, name: str, bound: str, work: Callable[[], CheckResult]) -> CheckResult:
        try:
            return self.emit(work())
        except GazeheadsError as exc:
            return self.emit(failed(name, f"error: {exc.problem}", bound))
        except Exception as exc:  # a check that crashes on this model has failed on it
            return self.emit(failed(name, f"error: {type(exc).__name__}: {exc}", bound))


def _exactness(run: _Run, gm: GazeModel, encoded: Encoded, layers: list[int], steer_layer: int,
               steering: Steering | None, dtype: torch.dtype, label: str, *, capture: bool = True, bias: bool = True,
               numerics: bool = False) -> None:
    """The capture check from two forwards (captured, eager); the bias and numerics checks from two
    more (steered captured, eager steered)."""
    capture_name, bias_name = f"capture = eager ({label})", f"bias on chosen heads ({label})"
    try:
        plain = gazeheads_pass(gm, encoded, layers, steer_layer)
        eager = eager_pass(gm, encoded, layers, steer_layer)
    except Exception as exc:
        run.emit(failed(capture_name, f"error: {type(exc).__name__}: {exc}", "-"))
        return
    if capture:
        run.attempt(capture_name, "-", lambda: capture_check(capture_name, plain, eager, layers, dtype))
    if not (bias or numerics) or steering is None:
        return
    try:
        steered = gazeheads_pass(gm, encoded, layers, steer_layer, steering)
        eager_steered = eager_pass(gm, encoded, layers, steer_layer, steering)
    except Exception as exc:
        run.emit(failed(bias_name, f"error: {type(exc).__name__}: {exc}", "-"))
        return
    geometry = encoded.geometries[0]
    target = geometry.positions_of(steering.target).cpu()
    chosen = [head for _, head in steering.heads]
    if bias:
        run.attempt(bias_name, "-", lambda: bias_check(
            bias_name, plain=plain, steered=steered, eager_steered=eager_steered, layers=layers,
            steer_layer=steer_layer, chosen=chosen, target=target, image=geometry.positions.cpu(), dtype=dtype))
    if numerics:
        run.attempt(NUMERICS, "-", lambda: numerics_check(steering.spec, dtype, plain, steered))


def verify_model(gm: GazeModel, strip: Strip, *, options: VerifyOptions | None = None, ranking: Ranking | None = None,
                 causal_strips: Sequence[Strip] = (), judge: Judge | None = None,
                 float32: Float32Weights = float32_weights,
                 on_result: Callable[[CheckResult], None] | None = None) -> VerifyReport:
    """Run the selected checks on `gm` with `strip`; each result goes to `on_result` as it is known.

    A check that fails, or crashes, is a failure in the report; nothing is raised for it. With
    `ranking` (and `judge`, and `causal_strips` disjoint from its discovery strips) the causal
    check runs too. `float32` runs the model in float32 for a block (default: cast in place and back).
    """
    with warnings.catch_warnings():  # cropped pixels are reported by the crop check, not as warnings
        warnings.simplefilter("ignore", UnseenPixelsWarning)
        return _verify(gm, strip, options or VerifyOptions(), ranking, causal_strips, judge, float32, on_result)


def _verify(gm: GazeModel, strip: Strip, options: VerifyOptions, ranking: Ranking | None,
            causal_strips: Sequence[Strip], judge: Judge | None, float32: Float32Weights,
            on_result: Callable[[CheckResult], None] | None) -> VerifyReport:
    started = time.time()
    shape = gm.shape
    layers = sample_layers(shape.n_layers, options.layers)
    steer_layer = layers[len(layers) // 2] if len(layers) > 2 else layers[-1]
    heads = steer_heads(shape.n_heads, options.steer_heads)
    dtype = model_dtype(gm)
    n = strip.n_panels
    question = prompts.discovery_question(n // 2 + 1, n)
    report = VerifyReport(gm.name, dtype_name(dtype), str(gm.device), setup={
        "strip": {"id": strip.comic_id, "size": list(strip.image.size), "panels": n}, "question": question,
        "layers": layers, "steered": [[steer_layer, h] for h in heads], "steering": options.spec.to_dict(),
        "groups": list(options.groups), "shape": [shape.n_layers, shape.n_heads, shape.n_kv_heads]})
    run = _Run(report, on_result)
    want = set(options.groups)
    try:
        encoded = gm.encode(strip, question)
    except (GazeheadsError, ValueError) as exc:
        run.emit(geo.encode_failure(exc))
        run.emit(skipped("remaining checks", "each needs the image's token positions"))
        report.seconds = time.time() - started
        return report
    geometry = encoded.geometries[0]
    if "geometry" in want:
        run.attempt(geo.IMAGE_TOKENS, "-", lambda: geo.image_token_check(gm, encoded))
        run.attempt(geo.PANEL_COLUMNS, "-", lambda: geo.panel_column_check(geometry, n))
        run.attempt(geo.CROP_AND_PAD, "-", lambda: geo.crop_pad_check(geometry, n))
        run.attempt(geo.CHAT_TEMPLATE, "-", lambda: geo.template_check(gm, encoded))
        run.attempt(geo.LOCALISATION, "-", lambda: geo.localisation_check(gm, strip, question, geometry))
    target = _target(geometry, n)
    steering = None
    if target is not None:
        steering = Steering(HeadSet.of([(steer_layer, h) for h in heads], shape, "verify heads"), target, options.spec)
    label = dtype_name(dtype)
    if "exactness" in want or "numerics" in want:
        if steering is None:
            run.emit(failed(f"bias on chosen heads ({label})", "no panel of the strip maps to any image token", "-"))
        else:
            _exactness(run, gm, encoded, layers, steer_layer, steering, dtype, label, capture="exactness" in want,
                       bias="exactness" in want, numerics="numerics" in want)
    if "prefix" in want:
        name = f"prefix sharing ({label})"
        run.attempt(name, "-", lambda: prefix_check(name, gm, strip, dtype, _prefix_is_shared(gm, strip, encoded)))
    if "float32" in want and dtype != torch.float32:
        fits, why = float32_fits(gm.model)
        if not fits:
            run.emit(skipped("capture = eager (float32)", why))
        else:
            with float32(gm.model):
                _exactness(run, gm, encoded, layers, steer_layer, steering, torch.float32, "float32", bias=False)
    if "causal" in want and ranking is not None:
        if judge is None or not causal_strips:
            run.emit(skipped(CAUSAL, "needs a judge and strips disjoint from the ranking's"))
        else:
            def causal() -> CheckResult:
                result, table = causal_check(gm, ranking, causal_strips, judge, options.heads, options.new_tokens)
                report.tables["causal"] = table
                return result

            run.attempt(CAUSAL, "-", causal)
    report.seconds = time.time() - started
    return report
