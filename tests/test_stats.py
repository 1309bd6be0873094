"""Statistics: bootstrap intervals against hand-computable cases, accuracy tables, Spearman."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest

from gazeheads.errors import GazeheadsError
from gazeheads.evaluation.stats import (
    accuracy_table,
    bootstrap_ci,
    cluster_bootstrap_ci,
    bootstrap_means,
    mean_std,
    per_panel_table,
    per_size_table,
    rank_average,
    spearman,
)


def binomial_quantile(n: int, hits: int, q: float) -> float:
    """The q-quantile of Binomial(n, hits/n)/n: the exact bootstrap distribution of a 0/1 mean."""
    p, cdf = hits / n, 0.0
    for j in range(n + 1):
        cdf += math.comb(n, j) * p**j * (1 - p) ** (n - j)
        if cdf >= q:
            return j / n
    return 1.0


# --------------------------------------------------------------------------- bootstrap


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_constant_sample_has_a_degenerate_interval(value):
    assert bootstrap_ci([bool(value)] * 37) == (value, value, value)


def test_empty_sample_gives_nan():
    assert all(math.isnan(v) for v in bootstrap_ci([]))


@pytest.mark.parametrize("n, hits, expected", [(10, 5, (0.2, 0.8)), (16, 8, (0.25, 0.75))])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_interval_matches_the_exact_binomial_percentiles(n, hits, expected, seed):
    # Resampling n hits with replacement gives a mean distributed as Binomial(n, p)/n; for these
    # cases the CDF passes 2.5% and 97.5% far (>= 0.013) from the atom boundaries, so the
    # percentiles of 10,000 resamples land exactly on the exact quantiles.
    sample = [True] * hits + [False] * (n - hits)
    exact = (binomial_quantile(n, hits, 0.025), binomial_quantile(n, hits, 0.975))
    assert exact == pytest.approx(expected)
    mean, low, high = bootstrap_ci(sample, seed=seed)
    assert mean == hits / n
    assert (low, high) == pytest.approx(exact)


def test_binary_resample_means_follow_the_binomial():
    n, hits = 12, 3  # 2 distinct values * 8 > 12: drawn by index
    means = bootstrap_means([1] * hits + [0] * (n - hits), n_resamples=20_000, seed=3)
    freq = Counter(np.round(means * n).astype(int))
    for j in range(n + 1):
        exact = math.comb(n, j) * 0.25**j * 0.75 ** (n - j)
        assert freq[j] / len(means) == pytest.approx(exact, abs=0.012)


def test_three_valued_resample_means_follow_the_enumerated_distribution():
    values = [0.0, 0.5, 1.0]  # 27 equally likely resamples: enumerate them
    exact = Counter(round(sum(r) / 3, 6) for r in itertools.product(values, repeat=3))
    means = bootstrap_means(values, n_resamples=20_000, seed=0)
    freq = Counter(np.round(means, 6))
    assert set(freq) <= set(exact)
    for atom, count in exact.items():
        assert freq[atom] / len(means) == pytest.approx(count / 27, abs=0.012)


def test_count_resampling_agrees_with_index_resampling():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 7, size=400) / 6  # per-strip segment fractions: few distinct values
    idx = rng.integers(0, len(x), size=(10_000, len(x)))
    naive = np.percentile(x[idx].mean(axis=1), [2.5, 97.5])
    mean, low, high = bootstrap_ci(x, seed=1)
    assert mean == pytest.approx(x.mean())
    assert (low, high) == pytest.approx(tuple(naive), abs=0.006)
    assert low < mean < high


def test_bootstrap_is_seeded():
    x = np.random.default_rng(0).normal(size=50)
    assert bootstrap_ci(x, seed=7) == bootstrap_ci(x, seed=7)
    assert bootstrap_ci(x, seed=7) != bootstrap_ci(x, seed=8)
    assert bootstrap_ci(list(x), n_resamples=500, seed=7) == bootstrap_ci(x, n_resamples=500, seed=7)


def test_wider_confidence_gives_a_wider_interval():
    x = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1] * 5
    _, low95, high95 = bootstrap_ci(x, confidence=0.95)
    _, low50, high50 = bootstrap_ci(x, confidence=0.5)
    assert low95 <= low50 < high50 <= high95


@pytest.mark.parametrize("kwargs", [{"confidence": 1.0}, {"confidence": 0.0}, {"n_resamples": 0}])
def test_bad_bootstrap_arguments_are_clear_errors(kwargs):
    with pytest.raises(GazeheadsError):
        bootstrap_ci([1, 0, 1], **kwargs)


def test_nan_values_are_refused():
    with pytest.raises(GazeheadsError, match="NaN"):
        bootstrap_ci([1.0, math.nan])


# --------------------------------------------------------------------------- accuracy tables


def records():
    rows = []
    for condition, hits in (("gaze", [1, 1, 1, 0, 1, 1]), ("random", [0, 1, 0, 0, 0, 0])):
        for target, hit in enumerate(hits, start=1):
            rows.append({"condition": condition, "target": target, "hit": bool(hit), "junk": target == 4,
                         "n_panels": 6, "size_class": "small" if target <= 3 else "large"})
    rows.append({"condition": "baseline", "text": "no hit key: skipped"})
    return rows


def test_accuracy_table_per_condition():
    table = accuracy_table(records(), n_resamples=2000)
    assert [row["condition"] for row in table] == ["gaze", "random"]
    gaze, random_ = table
    assert gaze["n"] == 6 and gaze["accuracy"] == pytest.approx(5 / 6)
    assert random_["accuracy"] == pytest.approx(1 / 6)
    assert gaze["chance"] == pytest.approx(1 / 6)
    assert gaze["junk_rate"] == pytest.approx(1 / 6)
    assert gaze["ci_low"] <= gaze["accuracy"] <= gaze["ci_high"]


def test_per_panel_and_per_size_breakdowns():
    panels = per_panel_table(records(), n_resamples=200)
    assert [(r["condition"], r["target"]) for r in panels][:3] == [("gaze", 1), ("gaze", 2), ("gaze", 3)]
    assert {(r["condition"], r["target"]): r["accuracy"] for r in panels}[("gaze", 4)] == 0.0
    sizes = per_size_table(records(), n_resamples=200)
    assert [(r["condition"], r["size_class"], r["accuracy"]) for r in sizes] == [
        ("gaze", "large", pytest.approx(2 / 3)), ("gaze", "small", 1.0),
        ("random", "large", 0.0), ("random", "small", pytest.approx(1 / 3)),
    ]


def test_chance_is_none_without_panels_and_fractional_hits_count():
    table = accuracy_table([{"condition": "gaze", "hit": 0.5}, {"condition": "gaze", "hit": 1.0}])
    assert table[0]["chance"] is None
    assert table[0]["accuracy"] == pytest.approx(0.75)
    assert table[0]["junk_rate"] == 0.0


# --------------------------------------------------------------------------- Spearman, mean and std


def test_rank_average_shares_ranks_between_ties():
    assert rank_average([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4): 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(22.5))


def test_spearman_is_nan_when_undefined():
    assert math.isnan(spearman([1, 2, 3], [2, 2, 2]))
    assert math.isnan(spearman([1], [1]))


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(1, 7, size=6), rng.integers(1, 7, size=6)
        if len(set(a)) > 1 and len(set(b)) > 1:
            assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)


def test_spearman_lengths_must_match():
    with pytest.raises(GazeheadsError):
        spearman([1, 2], [1, 2, 3])


def test_mean_std_skips_nan():
    mean, std = mean_std([1.0, 2.0, math.nan, 3.0, None])
    assert mean == pytest.approx(2.0)
    assert std == pytest.approx(math.sqrt(2 / 3))
    assert mean_std([1.0, 3.0], ddof=1)[1] == pytest.approx(math.sqrt(2))
    assert all(math.isnan(v) for v in mean_std([math.nan]))


def test_box_steering_summary_pools_size_classes():
    from gazeheads.evaluation.summary import summarise

    coco = [dict(r, protocol="coco", k=4, key=f"{r['condition']}-{r['target']}") for r in records()[:-1]]
    coco.append({"protocol": "coco", "condition": "gaze", "k": 4, "untargetable": True, "size_class": "small"})
    rows = summarise(coco)
    assert [(r["condition"], r["size_class"], r["n"]) for r in rows] == [
        ("gaze", "all", 6), ("random", "all", 6), ("gaze", "small", 3), ("random", "small", 3),
        ("gaze", "large", 3), ("random", "large", 3),
    ]
    assert rows[0]["accuracy"] == pytest.approx(5 / 6) and rows[1]["accuracy"] == pytest.approx(1 / 6)
    assert rows[0]["untargetable"] == 1 and rows[2]["untargetable"] == 1 and rows[4]["untargetable"] == 0


# --------------------------------------------------------------------------- clustered intervals
def test_cluster_bootstrap_of_whole_strips_equals_the_bootstrap_of_strip_means():
    """Strips that are all hit or all miss: resampling strips is resampling their 0/1 means."""
    strip_hits = [1.0] * 20 + [0.0] * 20
    hits = [h for h in strip_hits for _ in range(6)]
    clusters = [s for s in range(40) for _ in range(6)]
    clustered = cluster_bootstrap_ci(hits, clusters)
    assert clustered[0] == 0.5
    assert clustered[1:] == pytest.approx((binomial_quantile(40, 20, 0.025), binomial_quantile(40, 20, 0.975)),
                                          abs=0.026)
    pooled = bootstrap_ci(hits)  # 240 "independent" answers: far too narrow
    assert pooled[2] - pooled[1] < 0.6 * (clustered[2] - clustered[1])


def test_cluster_bootstrap_with_one_answer_per_cluster_is_the_ordinary_bootstrap():
    hits = [1.0] * 30 + [0.0] * 10
    assert cluster_bootstrap_ci(hits, list(range(40))) == pytest.approx(bootstrap_ci(hits), abs=0.026)
    with pytest.raises(GazeheadsError, match="cluster labels"):
        cluster_bootstrap_ci(hits, [0])


def test_dynamic_summary_resamples_strips_and_counts_undefined_spearman_as_zero():
    from gazeheads.evaluation.summary import summarise

    def narration(strip, hits, rho):
        return {"protocol": "dynamic", "condition": "random", "k": 4, "strip": f"s{strip}", "n_panels": 6,
                "segment_hits": hits, "spearman": rho, "verdicts": [{"junk": False}] * 6}

    records = [narration(i, [True] * 6, 1.0) for i in range(20)]
    records += [narration(20 + i, [False] * 6, math.nan) for i in range(20)]  # constant output: undefined
    (row,) = summarise(records)
    assert row["n"] == 240 and row["n_clusters"] == 40 and row["accuracy"] == 0.5
    assert row["ci_low"] < 0.4 and row["ci_high"] > 0.6  # 40 strips, not 240 independent segments
    assert row["spearman_undefined"] == 20 and row["spearman_mean"] == 0.5  # not 1.0 from the 20 defined ones
