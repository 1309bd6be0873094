"""Is there a gaze-head set at all? A permutation test on the discovery matrices.

Statistic: the mean gaze score of the top-K heads, where a head's gaze score is the mean
diagonal of its (queried panel x attended panel) matrix averaged over strips (section 2 of
docs/method.md). Null: the panel labels carry no information, so for every strip the queried-
panel labels are shuffled (one permutation per strip, shared by all heads, which keeps the
heads' correlations), the gaze scores are recomputed and the top K picked again; selecting
the top K on the shuffled data too is what keeps the test honest about that selection.

    result = presence_test(ranking.per_strip, k=100)       # or ranking_presence(ranking)
    result.p_value, result.effect_size

p = (1 + #{null >= observed}) / (1 + permutations). Effect size: (observed - null mean) /
null standard deviation, plus the ratio observed / null mean. The paper's contrast (gaze
heads in Qwen-VL, Ovis, InternVL; none behind the frozen encoders of LLaVA or Bunny) shows
as a tiny p and a large effect size versus an effect size near zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import DataError, HeadSelectionError
from .specs import default_k

if TYPE_CHECKING:
    from .ranking import Ranking

DEFAULT_PERMUTATIONS = 1000
_CHUNK_BYTES = 64 * 2**20


@dataclass
class PresenceResult:
    """The test for one model: the top-K statistic against its permutation null."""

    model_id: str
    k: int
    n_strips: int
    n_panels: int
    n_heads: int
    observed: float
    null_mean: float
    null_std: float
    null_q95: float
    effect_size: float
    ratio: float
    p_value: float
    n_permutations: int
    seed: int
    alpha: float = 0.05
    top_heads: list[tuple[int, int, float]] = field(default_factory=list)
    null: np.ndarray | None = field(default=None, repr=False)

    @property
    def present(self) -> bool:
        return self.p_value < self.alpha

    def verdict(self) -> str:
        if self.present:
            return f"gaze heads present (p = {self.p_value:.4g} < {self.alpha:g}, effect size {self.effect_size:.2f})"
        return f"no evidence of gaze heads (p = {self.p_value:.4g}, effect size {self.effect_size:.2f})"

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("null")
        data["present"] = self.present
        data["verdict"] = self.verdict()
        data["top_heads"] = [{"layer": l, "head": h, "score": s} for l, h, s in self.top_heads]
        return data


def _top_k_mean(scores: np.ndarray, k: int) -> np.ndarray:
    """Mean of the k largest values along the last axis."""
    return np.partition(scores, scores.shape[-1] - k, axis=-1)[..., -k:].mean(-1)


def presence_test(
    per_strip: np.ndarray,
    k: int,
    *,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    alpha: float = 0.05,
    model_id: str = "",
) -> PresenceResult:
    """Permutation test on per-strip matrices (strips, layers, heads, N, N) for the top-K statistic."""
    per_strip = np.asarray(per_strip, dtype=np.float64)
    if per_strip.ndim != 5 or per_strip.shape[-1] != per_strip.shape[-2]:
        raise DataError(f"Matrices of shape {per_strip.shape}; expected (strips, layers, heads, N, N).",
                        "Pass Ranking.per_strip from `gazeheads discover`.")
    n_strips, n_layers, n_heads, n, _ = per_strip.shape
    total = n_layers * n_heads
    if not 1 <= k <= total:
        raise HeadSelectionError(f"K={k} heads asked of a model with {total} heads.",
                                 f"Choose K between 1 and {total}.")
    if n < 2 or n_strips < 1:
        raise DataError(f"{n_strips} strips of {n} panels cannot be permuted.", "Use strips with at least 2 panels.")
    if n_permutations < 1:
        raise DataError(f"{n_permutations} permutations.", "Use at least 1 (1000 or more for a real p-value).")
    # (strips, queried, attended, heads): the diagonal of a permuted strip is a gather over queried rows.
    matrices = per_strip.reshape(n_strips, total, n, n).transpose(0, 2, 3, 1)
    scores = np.diagonal(matrices, axis1=1, axis2=2).mean((0, 2))  # (heads,), as Ranking.scores
    observed = float(_top_k_mean(scores, k))

    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_permutations, n_strips, n)), axis=-1)  # uniform permutations per strip
    strips = np.arange(n_strips)[None, :, None]
    attended = np.arange(n)[None, None, :]
    chunk = max(1, _CHUNK_BYTES // max(1, n_strips * n * total * 8))
    null = np.empty(n_permutations)
    for start in range(0, n_permutations, chunk):
        block = perms[start:start + chunk]
        values = matrices[strips, block, attended]  # (chunk, strips, N, heads): M_s[pi_s(k), k]
        null[start:start + chunk] = _top_k_mean(values.mean((1, 2)), k)

    null_mean = float(null.mean())
    null_std = float(null.std(ddof=1)) if n_permutations > 1 else 0.0
    if null_std > 0:
        effect = (observed - null_mean) / null_std
    else:
        effect = 0.0 if observed <= null_mean else float("inf")
    order = np.argsort(-scores, kind="stable")[:k]
    top = [(int(i // n_heads), int(i % n_heads), float(scores[i])) for i in order]
    return PresenceResult(
        model_id=model_id, k=k, n_strips=n_strips, n_panels=n, n_heads=total, observed=observed,
        null_mean=null_mean, null_std=null_std, null_q95=float(np.quantile(null, 0.95)), effect_size=float(effect),
        ratio=observed / null_mean if null_mean > 0 else float("inf"),
        p_value=float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations)),
        n_permutations=n_permutations, seed=seed, alpha=alpha, top_heads=top, null=null,
    )


def ranking_presence(ranking: "Ranking", k: int | None = None, **options) -> PresenceResult:
    """`presence_test` on a ranking's per-strip matrices (K defaults to about 9% of the heads)."""
    if ranking.per_strip is None:
        raise DataError(f"The ranking of {ranking.model_id} has no per-strip matrices.",
                        "Rerun `gazeheads discover`; its .npz keeps them.")
    k = k or default_k(ranking.shape.total)
    return presence_test(ranking.per_strip, min(k, ranking.shape.total), model_id=ranking.model_id, **options)


def distinct_names(results: Sequence[PresenceResult]) -> list[str]:
    """Model names that tell the rows apart: a name shared by several results gets its strips and K,
    then a number if that is not enough."""
    names = [r.model_id or "model" for r in results]
    names = [f"{n} ({r.n_strips} strips, K={r.k})" if names.count(n) > 1 else n for n, r in zip(names, results)]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if names.count(name) == 1 else f"{name} #{seen[name]}")
    return out


def presence_plot(results: Sequence[PresenceResult], path: str | Path) -> Path:
    """One panel per model: the null distribution of the top-K statistic and the observed value."""
    from . import plots

    plt = plots.plt
    n = len(results)
    fig, axes = plt.subplots(1, n, figsize=(3.8 * n, 3.4), squeeze=False, layout="constrained")
    for ax, result, name in zip(axes[0], results, distinct_names(results)):
        if result.null is not None:
            ax.hist(result.null, bins=40, color="#8c8c8c", label="null (shuffled panels)")
        ax.axvline(result.observed, color="#c44e52" if result.present else "#4c72b0", lw=2, label="observed")
        ax.axvline(result.null_q95, color="#555555", ls=":", lw=1, label="null 95%")
        ax.set_xlabel(f"mean gaze score of the top-{result.k} heads", fontsize=8)
        ax.set_title(plots.wrap(name, 34) + f"\np = {result.p_value:.2e}, effect size "
                     f"{result.effect_size:.1f}", fontsize=8)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("permutations")
    fig.suptitle("Is there a gaze-head set? (permutation test)", fontsize=9)
    return plots._save(fig, path)


def presence_table(results: Sequence[PresenceResult]) -> str:
    """A plain-text table, one row per model (distinct full names; p in scientific notation)."""
    names = distinct_names(results)
    width = max([len("model")] + [len(n) for n in names])
    lines = [f"{'model':<{width}} {'K':>4} {'observed':>9} {'null mean':>9} {'effect':>7} {'p':>9}  verdict"]
    for r, name in zip(results, names):
        lines.append(f"{name:<{width}} {r.k:>4} {r.observed:>9.4f} {r.null_mean:>9.4f} {r.effect_size:>7.2f} "
                     f"{r.p_value:>9.2e}  {'gaze heads present' if r.present else 'no evidence of gaze heads'}")
    return "\n".join(lines)
