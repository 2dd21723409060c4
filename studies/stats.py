"""Statistics of a human study, pure numpy/scipy (no Django): the Friedman test with
Kendall's W, pairwise Wilcoxon signed-rank tests with Holm's correction, and Krippendorff's
alpha for ordinal ratings. Scores follow DTC's convention (1 = best), but nothing here
depends on the direction.

Ratings come as arrays with NaN where a rating is missing:
  - per method: (items, methods), an item's mean score for each method;
  - reliability: (raters, units), each rater's score of each unit (item x method x criterion).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from metrics.stats import holm


class StudyStatsError(Exception):
    pass


@dataclass(frozen=True)
class Friedman:
    statistic: float  # chi-square, corrected for ties (scipy's)
    p_value: float
    kendalls_w: float  # chi-square / (n (k - 1)): 0 = no agreement among items, 1 = full
    n_items: int  # complete items only (the test needs every method scored)
    n_methods: int


def friedman(per_method) -> Friedman:
    scores = np.asarray(per_method, dtype=np.float64)
    complete = scores[~np.isnan(scores).any(axis=1)]
    n, k = complete.shape
    if k < 3:
        raise StudyStatsError(f"the Friedman test needs at least 3 methods, got {k}")
    if n < 2:
        raise StudyStatsError(f"the Friedman test needs at least 2 items scored for every method, got {n}")
    result = stats.friedmanchisquare(*complete.T)
    return Friedman(float(result.statistic), float(result.pvalue), float(result.statistic) / (n * (k - 1)), n, k)


@dataclass(frozen=True)
class PairwiseTest:
    a: str
    b: str
    n: int  # items both methods were scored on
    statistic: float
    p_value: float
    p_holm: float


def pairwise_wilcoxon(per_method, names: list[str]) -> list[PairwiseTest]:
    """Every pair of methods, two-sided Wilcoxon signed-rank on the items both have, Holm
    over all pairs. A pair with no difference at all gets p = 1 (scipy refuses it)."""
    scores = np.asarray(per_method, dtype=np.float64)
    raw = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            both = ~np.isnan(scores[:, i]) & ~np.isnan(scores[:, j])
            a, b = scores[both, i], scores[both, j]
            if not np.any(a - b):
                raw.append((names[i], names[j], int(both.sum()), 0.0, 1.0))
                continue
            result = stats.wilcoxon(a, b)
            raw.append((names[i], names[j], int(both.sum()), float(result.statistic), float(result.pvalue)))
    adjusted = holm([p for *_, p in raw])
    return [PairwiseTest(a, b, n, s, p, q) for (a, b, n, s, p), q in zip(raw, adjusted)]


def krippendorff_alpha_ordinal(reliability) -> float:
    """Krippendorff's alpha with the ordinal difference function, from the coincidence
    matrix of the values raters gave the same unit (units rated once are not pairable and
    left out); alpha = 1 - (n - 1) sum(o * d2) / sum(n_c n_k d2)."""
    data = np.asarray(reliability, dtype=np.float64)
    values = np.unique(data[~np.isnan(data)])
    if values.size < 2:
        raise StudyStatsError("Krippendorff's alpha needs at least two different values among the ratings")
    index = {v: i for i, v in enumerate(values)}
    coincidence = np.zeros((values.size, values.size))
    for unit in data.T:
        rated = unit[~np.isnan(unit)]
        m = rated.size
        if m < 2:
            continue
        counts = np.zeros(values.size)
        for value in rated:
            counts[index[value]] += 1
        # Ordered pairs of ratings by different raters, each unit weighted 1 / (m - 1).
        coincidence += (np.outer(counts, counts) - np.diag(counts)) / (m - 1)
    totals = coincidence.sum(axis=1)
    n = totals.sum()
    if n < 2:
        raise StudyStatsError("Krippendorff's alpha needs at least one unit rated twice")
    # Ordinal distance: the ratings' mass between two values, halving the two ends.
    cumulative = np.cumsum(totals)
    between = cumulative[None, :] - cumulative[:, None] + totals[:, None] - (totals[:, None] + totals[None, :]) / 2
    distance = np.triu(between) ** 2
    distance = distance + distance.T
    expected = (np.outer(totals, totals) * distance).sum()
    if expected == 0:
        raise StudyStatsError("Krippendorff's alpha is undefined: every pairable rating has the same value")
    return float(1 - (n - 1) * (coincidence * distance).sum() / expected)


@dataclass(frozen=True)
class MeanInterval:
    mean: float
    low: float
    high: float
    n_ratings: int
    n_items: int
    n_raters: int
    method: str


def mean_with_interval(items, raters, scores, *, n_resamples: int = 2000, confidence: float = 0.95,
                       seed: int = 0) -> MeanInterval:
    """The mean rating with a percentile interval from a two-way cluster bootstrap: items
    and raters are resampled independently (both are samples of a larger population), and
    each rating counts as often as its item times its rater was drawn."""
    scores = np.asarray(scores, dtype=np.float64)
    _, item_index = np.unique(np.asarray(items), return_inverse=True)
    _, rater_index = np.unique(np.asarray(raters), return_inverse=True)
    n_items, n_raters = item_index.max() + 1, rater_index.max() + 1
    if scores.size < 2 or n_items < 2:
        raise StudyStatsError(f"an interval needs ratings of at least 2 items, got {n_items}")
    rng = np.random.default_rng(seed)
    draws = []
    while len(draws) < n_resamples:
        item_weight = np.bincount(rng.integers(0, n_items, n_items), minlength=n_items)
        rater_weight = np.bincount(rng.integers(0, n_raters, n_raters), minlength=n_raters)
        weight = item_weight[item_index] * rater_weight[rater_index]
        if weight.sum():  # no drawn item was rated by a drawn rater: draw again
            draws.append(float((weight * scores).sum() / weight.sum()))
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return MeanInterval(float(scores.mean()), float(low), float(high), scores.size, int(n_items), int(n_raters),
                        f"bootstrap percentile over items and raters (two-way), {n_resamples} resamples, seed {seed}")


@dataclass(frozen=True)
class PositionBias:
    means: dict[int, float]  # slot -> mean score shown in it
    counts: dict[int, int]
    statistic: float  # Kruskal-Wallis H across slots
    p_value: float


def position_bias(slots, scores) -> PositionBias:
    """Mean score by the slot a candidate was shown in, and whether it differs across slots."""
    slots = np.asarray(slots)
    scores = np.asarray(scores, dtype=np.float64)
    present = sorted(int(s) for s in np.unique(slots))
    groups = [scores[slots == s] for s in present]
    if len(groups) < 2:
        raise StudyStatsError("position bias needs candidates shown in at least 2 slots")
    result = stats.kruskal(*groups)
    return PositionBias({s: float(g.mean()) for s, g in zip(present, groups)},
                        {s: int(g.size) for s, g in zip(present, groups)}, float(result.statistic), float(result.pvalue))
