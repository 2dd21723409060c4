"""Confidence intervals and paired tests for the comparison tables. Pure numpy/scipy.

Per-sample values come as an array of shape (samples, seeds): the seeds of one sample are
not independent observations, so a sample is the unit that is resampled (a cluster) and
its value is the mean over its seeds.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from metrics.errors import MetricError
from metrics.frechet import FrechetAgainst, GaussianStatistics, frechet_distance, gaussian_statistics


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    n: int  # clusters (samples), or generated images for FID
    confidence: float
    method: str  # how the interval was made, for the table's footnote


def cluster_means(values) -> np.ndarray:
    """(samples, seeds) -> one value per sample (mean over its seeds); 1-D passes through."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        return values
    if values.ndim != 2:
        raise MetricError(f"expected per-sample values of shape (samples, seeds), got {values.shape}")
    return values.mean(axis=1)


def bootstrap_mean(values, *, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0,
                   method: str = "BCa") -> Interval:
    """The mean over samples with scipy.stats.bootstrap's interval, samples as clusters."""
    per_sample = cluster_means(values)
    if per_sample.size < 2:
        raise MetricError(f"an interval needs at least 2 samples, got {per_sample.size}")
    mean = float(per_sample.mean())
    if np.all(per_sample == per_sample[0]):  # no spread: scipy's BCa is undefined
        return Interval(mean, mean, mean, per_sample.size, confidence, f"bootstrap {method}, degenerate")
    result = stats.bootstrap(
        (per_sample,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method=method,
        random_state=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return Interval(mean, float(interval.low), float(interval.high), per_sample.size, confidence,
                    f"bootstrap {method} over samples, {n_resamples} resamples, seed {seed}")


@dataclass(frozen=True)
class PairedTest:
    method: str
    against: str
    statistic: float
    p_value: float
    p_holm: float
    significantly_worse: bool


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def paired_tests_against_best(per_method: dict[str, np.ndarray], *, higher_is_better: bool,
                              alpha: float = 0.05) -> tuple[str, list[PairedTest]]:
    """Each method against the best (by mean) on the same samples: two-sided Wilcoxon
    signed-rank on the per-sample differences, Holm-corrected over the comparisons."""
    means = {name: cluster_means(values) for name, values in per_method.items()}
    sizes = {name: v.size for name, v in means.items()}
    if len(set(sizes.values())) != 1:
        raise MetricError(f"methods must be scored on the same samples; got sizes {sizes}")
    best = (max if higher_is_better else min)(means, key=lambda name: means[name].mean())
    raw = []
    for name, values in means.items():
        if name == best:
            continue
        difference = means[best] - values
        if not np.any(difference):
            raw.append((name, 0.0, 1.0))
            continue
        result = stats.wilcoxon(means[best], values)
        raw.append((name, float(result.statistic), float(result.pvalue)))
    adjusted = holm([p for _, _, p in raw])
    tests = []
    for (name, statistic, p), p_holm in zip(raw, adjusted):
        worse = means[name].mean() < means[best].mean() if higher_is_better else means[name].mean() > means[best].mean()
        tests.append(PairedTest(name, best, statistic, p, p_holm, bool(worse and p_holm < alpha)))
    return best, tests


def bootstrap_frechet(generated: np.ndarray, real: GaussianStatistics, *, n_resamples: int = 50,
                      confidence: float = 0.95, seed: int = 0) -> Interval:
    """FID with a percentile interval from resampling the generated set (the real set's
    Gaussian fixed). Resampling with replacement duplicates images, which biases each
    resample's FID upwards: the interval says how much the number moves with the sample
    drawn, labelled as such, not where the true FID lies."""
    generated = np.asarray(generated, dtype=np.float64)
    value = frechet_distance(gaussian_statistics(generated), real)
    rng = np.random.default_rng(seed)
    n = generated.shape[0]
    against = FrechetAgainst(generated, real)
    draws = [against.distance(rng.integers(0, n, n)) for _ in range(n_resamples)]
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return Interval(value, float(low), float(high), n, confidence,
                    f"bootstrap percentile over the generated set, {n_resamples} resamples, seed {seed}")
