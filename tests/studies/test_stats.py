"""Study statistics against scipy, the krippendorff package and the textbook formulas, with
ties and missing ratings."""
import numpy as np
import pytest
from scipy import stats

from studies.stats import StudyStatsError, friedman, krippendorff_alpha_ordinal, pairwise_wilcoxon


def ratings(seed=0, items=30, methods=3, missing=0.0):
    """1-5 scores (many ties), methods shifted apart, some missing."""
    rng = np.random.default_rng(seed)
    scores = np.clip(np.round(rng.normal(loc=[2.0, 2.6, 3.4][:methods], scale=0.9, size=(items, methods))), 1, 5)
    scores[rng.random(scores.shape) < missing] = np.nan
    return scores


def kendalls_w_by_rank_sums(scores):
    """Kendall's W from its definition (rank sums, ties corrected), independent of scipy."""
    n, k = scores.shape
    ranks = np.apply_along_axis(stats.rankdata, 1, scores)
    sums = ranks.sum(axis=0)
    s = ((sums - sums.mean()) ** 2).sum()
    ties = sum((c ** 3 - c).sum() for c in (np.unique(row, return_counts=True)[1] for row in scores))
    return 12 * s / (n ** 2 * (k ** 3 - k) - n * ties)


@pytest.mark.parametrize("missing", [0.0, 0.15])
def test_friedman_and_kendalls_w(missing):
    scores = ratings(missing=missing)
    result = friedman(scores)
    complete = scores[~np.isnan(scores).any(axis=1)]
    expected = stats.friedmanchisquare(*complete.T)
    assert (result.statistic, result.p_value) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-12)
    assert result.n_items == len(complete) < 31 and result.n_methods == 3
    assert result.kendalls_w == pytest.approx(kendalls_w_by_rank_sums(complete), rel=1e-10)
    assert 0 < result.kendalls_w <= 1


def test_pairwise_wilcoxon_with_holm_on_the_items_each_pair_shares():
    scores = ratings(seed=1, missing=0.1)
    tests = pairwise_wilcoxon(scores, ["a", "b", "c"])
    assert [(t.a, t.b) for t in tests] == [("a", "b"), ("a", "c"), ("b", "c")]
    raw = []
    for t, (i, j) in zip(tests, [(0, 1), (0, 2), (1, 2)]):
        both = ~np.isnan(scores[:, i]) & ~np.isnan(scores[:, j])
        expected = stats.wilcoxon(scores[both, i], scores[both, j])
        assert (t.statistic, t.p_value, t.n) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue),
                                                 both.sum())
        raw.append(expected.pvalue)
    order = np.argsort(raw)
    holm_by_hand = np.maximum.accumulate([min(1, (3 - r) * raw[i]) for r, i in enumerate(order)])
    assert [tests[i].p_holm for i in order] == pytest.approx(list(holm_by_hand))


@pytest.mark.parametrize("seed, missing", [(0, 0.0), (1, 0.2), (2, 0.5)])
def test_krippendorff_alpha_ordinal_equals_the_krippendorff_package(seed, missing):
    import krippendorff

    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 6, size=40)
    data = np.clip(truth + rng.integers(-1, 2, size=(8, 40)), 1, 5).astype(float)  # agree, with noise
    data[rng.random(data.shape) < missing] = np.nan
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")
    assert krippendorff_alpha_ordinal(data) == pytest.approx(expected, rel=1e-10)


def test_undefined_cases_say_why():
    with pytest.raises(StudyStatsError, match="at least 3 methods"):
        friedman(ratings(methods=2))
    with pytest.raises(StudyStatsError, match="two different values"):
        krippendorff_alpha_ordinal(np.full((3, 4), 2.0))
    with pytest.raises(StudyStatsError, match="rated twice"):
        krippendorff_alpha_ordinal(np.array([[1.0, np.nan], [np.nan, 2.0]]))
    same = np.ones((10, 3))
    assert pairwise_wilcoxon(same, ["a", "b", "c"])[0].p_value == 1.0


def test_mean_interval_resamples_items_and_raters_as_the_expanded_data_would():
    from studies.stats import mean_with_interval

    rng = np.random.default_rng(5)
    items = np.repeat(np.arange(12), 5)
    raters = np.tile(np.arange(5), 12)
    keep = rng.random(items.size) > 0.2  # missing ratings
    items, raters = items[keep], raters[keep]
    scores = np.clip(np.round(rng.normal(2.5, 1, items.size)), 1, 5)
    result = mean_with_interval(items, raters, scores, n_resamples=200, seed=9)
    assert result.mean == pytest.approx(scores.mean()) and result.low <= result.mean <= result.high
    assert (result.n_items, result.n_raters, result.n_ratings) == (12, 5, items.size)

    # The same draws, by building each resampled data set explicitly.
    draw = np.random.default_rng(9)
    means = []
    while len(means) < 200:
        picked_items = draw.integers(0, 12, 12)
        picked_raters = draw.integers(0, 5, 5)
        expanded = [scores[(items == i) & (raters == r)] for i in picked_items for r in picked_raters]
        expanded = np.concatenate(expanded)
        if expanded.size:
            means.append(expanded.mean())
    assert (result.low, result.high) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])), rel=1e-12)


def test_position_bias_equals_scipys_kruskal():
    from studies.stats import position_bias

    rng = np.random.default_rng(2)
    slots = rng.integers(0, 3, 90)
    scores = np.clip(np.round(rng.normal(2.5 + 0.3 * slots, 1)), 1, 5)
    result = position_bias(slots, scores)
    expected = stats.kruskal(*(scores[slots == s] for s in range(3)))
    assert (result.statistic, result.p_value) == pytest.approx((expected.statistic, expected.pvalue))
    assert result.means[2] == pytest.approx(scores[slots == 2].mean()) and sum(result.counts.values()) == 90
