"""Intervals and tests equal scipy's on the same per-sample values and seed."""
import numpy as np
import pytest
from scipy import stats

from metrics.frechet import frechet_distance, gaussian_statistics
from metrics.stats import bootstrap_frechet, bootstrap_mean, cluster_means, holm, paired_tests_against_best


def test_bootstrap_mean_equals_scipys_on_the_cluster_means():
    rng = np.random.default_rng(0)
    values = rng.normal(80, 5, size=(30, 3))  # 30 samples x 3 seeds
    ours = bootstrap_mean(values, seed=7, n_resamples=2000)
    theirs = stats.bootstrap((values.mean(axis=1),), np.mean, confidence_level=0.95, n_resamples=2000,
                             method="BCa", random_state=np.random.default_rng(7)).confidence_interval
    assert (ours.low, ours.high) == (theirs.low, theirs.high)
    assert ours.value == pytest.approx(values.mean()) and ours.n == 30
    assert ours.low < ours.value < ours.high


def test_seeds_of_a_sample_are_one_cluster_not_independent_draws():
    rng = np.random.default_rng(1)
    per_sample = rng.normal(0, 1, size=40)
    values = np.repeat(per_sample[:, None], 4, axis=1)  # seeds that agree perfectly
    clustered = bootstrap_mean(values, n_resamples=2000)
    naive = bootstrap_mean(values.ravel(), n_resamples=2000)  # 160 "independent" values
    assert clustered.n == 40 and naive.n == 160
    assert (clustered.high - clustered.low) > 1.5 * (naive.high - naive.low)
    assert np.array_equal(cluster_means(values), per_sample)


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # monotone: never below an earlier step
    assert holm([0.001]) == [0.001]


def test_paired_tests_use_scipys_wilcoxon_and_flag_only_significantly_worse_methods():
    rng = np.random.default_rng(2)
    base = rng.normal(85, 3, size=30)
    per_method = {
        "dtc": base + 2.0 + rng.normal(0, 0.5, 30),  # best
        "pbe": base + rng.normal(0, 0.5, 30),  # clearly worse
        "dtc_twin": base + 2.0 + rng.normal(0, 0.5, 30),  # as good as the best
    }
    best, tests = paired_tests_against_best(per_method, higher_is_better=True)
    by_name = {t.method: t for t in tests}
    assert best in ("dtc", "dtc_twin") and set(by_name) == set(per_method) - {best}
    scipy_p = stats.wilcoxon(per_method[best], per_method["pbe"]).pvalue
    assert by_name["pbe"].p_value == pytest.approx(scipy_p)
    assert by_name["pbe"].p_holm == pytest.approx(holm([t.p_value for t in tests])[tests.index(by_name["pbe"])])
    assert by_name["pbe"].significantly_worse
    other = "dtc_twin" if best == "dtc" else "dtc"
    assert not by_name[other].significantly_worse
    # Lower is better (FID-like): the smallest mean is the best.
    best_low, _ = paired_tests_against_best(per_method, higher_is_better=False)
    assert best_low == "pbe"


def test_fid_interval_resamples_the_generated_set_reproducibly():
    rng = np.random.default_rng(3)
    real = gaussian_statistics(rng.normal(size=(300, 6)))
    generated = rng.normal(loc=0.4, size=(200, 6))
    first = bootstrap_frechet(generated, real, n_resamples=30, seed=5)
    again = bootstrap_frechet(generated, real, n_resamples=30, seed=5)
    assert first == again and first.low < first.high and first.n == 200
    assert first.value == pytest.approx(frechet_distance(gaussian_statistics(generated), real))
    draw = np.random.default_rng(5)
    manual = [frechet_distance(gaussian_statistics(generated[draw.integers(0, 200, 200)]), real) for _ in range(30)]
    assert (first.low, first.high) == pytest.approx(tuple(np.quantile(manual, [0.025, 0.975])), rel=1e-6)


@pytest.mark.parametrize("n, d", [(40, 64), (200, 6), (12, 2048)])
def test_frechet_of_subsets_through_the_gram_matrix_equals_the_full_form(n, d):
    from metrics.frechet import FrechetAgainst

    rng = np.random.default_rng(n)
    real = gaussian_statistics(rng.normal(size=(max(3, d // 4), d)))  # singular when d is large
    generated = rng.normal(loc=0.3, size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)
    against = FrechetAgainst(generated, real)
    for _ in range(3):
        rows = rng.integers(0, n, n)  # with repeats, as a bootstrap draws
        assert against.distance(rows) == pytest.approx(_frechet_of_rank(generated[rows], real), rel=1e-7)


def _frechet_of_rank(subset, real):
    """The d x d form keeping only the rank's worth of eigenvalues of R S1 R (at most the
    distinct rows - 1, and the real rows - 1): the others are zero, and their rounding
    noise is dropped."""
    from scipy import linalg

    stats_ = gaussian_statistics(subset)
    root = real.sigma_sqrt()
    middle = root @ stats_.sigma @ root
    eigenvalues = np.sort(linalg.eigvalsh((middle + middle.T) / 2))[::-1]
    rank = min(len(np.unique(subset, axis=0)) - 1, real.n - 1, subset.shape[1])
    trace_sqrt = np.sqrt(np.clip(eigenvalues[:rank], 0, None)).sum()
    diff = stats_.mu - real.mu
    return diff.dot(diff) + np.trace(stats_.sigma) + np.trace(real.sigma) - 2 * trace_sqrt


def test_reference_statistics_are_computed_once_and_give_the_same_distance(tmp_path):
    from metrics.reference import ReferenceStatisticsCache

    rng = np.random.default_rng(4)
    real, generated = rng.normal(size=(120, 10)), rng.normal(loc=0.2, size=(100, 10))
    cache = ReferenceStatisticsCache(tmp_path / "reference")
    calls = []

    def features():
        calls.append(1)
        return real

    first = cache.get("demo@abc|inception:1234|64", features)
    again = ReferenceStatisticsCache(tmp_path / "reference").get("demo@abc|inception:1234|64", features)
    assert len(calls) == 1 and again.n == 120
    assert np.array_equal(first.mu, again.mu) and np.array_equal(first.sigma_sqrt(), again.sigma_sqrt())
    expected = frechet_distance(gaussian_statistics(generated), gaussian_statistics(real))
    assert frechet_distance(gaussian_statistics(generated), again) == pytest.approx(expected, rel=1e-12)
    cache.get("another key", lambda: generated)  # another key, another entry
    assert len(list((tmp_path / "reference").glob("*.npz"))) == 2
