"""Table 3 and its statistics from ratings given through the services, against scipy and the
krippendorff package computed here from the raw ratings; exclusion of careless raters; the
CSV exports and the commands."""
import csv
import io

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from scipy import stats as scipy_stats

from studies.assignment import trial_answer, trial_current
from studies.exports import AGGREGATE_COLUMNS, RATING_COLUMNS, aggregate_lines, rating_lines
from studies.models import Candidate, Rating, Study
from studies.results import joined_table, study_results
from studies.selectors import rater_quality
from studies.services import Entry, rater_enter, study_create, trial_shown

pytestmark = pytest.mark.django_db
MEANS = {"copy_paste": 3.6, "pbe_a": 1.8, "pbe_b": 2.7}


def rate_study(study, n_raters, rng, careless=0, missing_rater_items=False):
    """Raters score each image near its method's mean; good raters score the untouched scene
    5 on every criterion; careless ones give everything 1."""
    criteria = list(study.criteria.all())
    methods = dict(Candidate.objects.filter(item__study=study).values_list("pk", "method__key"))
    for index in range(n_raters):
        bad = index < careless
        rater = rater_enter(study=study, entry=Entry(platform="anonymous"), cookie_rater=None)
        while (trial := trial_current(rater=rater)) is not None:
            trial_shown(trial=trial)
            answer = {}
            for slot, candidate in enumerate(trial.slot_order):
                key = methods[candidate]
                for c in criteria:
                    if bad:
                        value = 1
                    elif key is None:
                        value = 5
                    else:
                        value = int(np.clip(np.round(rng.normal(MEANS[key], 0.9)), 1, 5))
                    answer[(slot, c.pk)] = value
            assert trial_answer(trial=trial, answer=answer)


@pytest.fixture
def rated_study(finished_experiment):
    study = study_create(name="t3", experiment=finished_experiment(), ratings_per_pair=6, trials_per_rater=4,
                         attention_checks=1, live=True)
    rate_study(study, n_raters=10, rng=np.random.default_rng(0), careless=1)
    return study


def independent_arrays(study, criterion_key):
    """(rater, item, method key, slot, score) of included output ratings, read directly."""
    excluded = {pk for pk, q in rater_quality(study).items() if q.excluded}
    rows = [
        r for r in Rating.objects.filter(trial__rater__study=study, criterion__key=criterion_key,
                                         candidate__method__isnull=False)
        .values_list("trial__rater_id", "trial__item_id", "candidate__method__key", "slot", "score")
        if r[0] not in excluded
    ]
    return rows


def test_a_careless_rater_is_excluded_and_kept_flagged_in_the_raw_export(rated_study):
    quality = rater_quality(rated_study)
    excluded = [q for q in quality.values() if q.excluded]
    assert len(excluded) == 1 and excluded[0].checks_failed == 1
    assert "failed 1 of 1 attention checks" in excluded[0].reason
    assert all(q.checks == 1 and q.checks_failed == 0 for q in quality.values() if not q.excluded and q.trials == 4)
    rows = list(csv.DictReader(io.StringIO("".join(rating_lines(rated_study)))))
    assert list(rows[0]) == RATING_COLUMNS
    assert len(rows) == Rating.objects.count()
    flagged = {r["rater"] for r in rows if r["excluded"] == "1"}
    assert flagged == {excluded[0].pseudonym}
    attention = [r for r in rows if r["attention_check"] == "1"]
    assert attention and all(r["method"] == "" for r in attention)
    assert all(float(r["seconds"]) >= 0 for r in rows)


@pytest.mark.parametrize("criterion", ["similarity", "semantic_blending"])
def test_table3_and_its_statistics_equal_scipy_and_krippendorff_on_the_same_ratings(rated_study, criterion):
    import krippendorff

    results = study_results(rated_study)
    c = next(c for c in results.criteria if c.criterion.key == criterion)
    rows = independent_arrays(rated_study, criterion)
    keys = ["copy_paste", "pbe_a", "pbe_b"]
    for row in c.rows:
        scores = [s for _, _, k, _, s in rows if k == row.method.key]
        assert row.interval.mean == pytest.approx(np.mean(scores), rel=1e-12)
        assert row.interval.n_ratings == len(scores)
        assert row.interval.low < row.interval.mean < row.interval.high
    assert [r.method.key for r in c.rows if r.best] == [min(keys, key=lambda k: np.mean(
        [s for _, _, m, _, s in rows if m == k]))]
    # Friedman and Wilcoxon on each item's mean score per method.
    items = sorted({i for _, i, _, _, _ in rows})
    grid = np.array([[np.mean([s for _, i, k, _, s in rows if i == item and k == key]) for key in keys]
                     for item in items])
    expected = scipy_stats.friedmanchisquare(*grid.T)
    assert (c.friedman.statistic, c.friedman.p_value) == pytest.approx((expected.statistic, expected.pvalue))
    assert c.friedman.kendalls_w == pytest.approx(expected.statistic / (len(items) * 2))
    raw = {(t.a, t.b): t.p_value for t in c.pairwise}
    for a, b in [("copy_paste", "pbe_a"), ("copy_paste", "pbe_b"), ("pbe_a", "pbe_b")]:
        i, j = keys.index(a), keys.index(b)
        assert raw[(a, b)] == pytest.approx(scipy_stats.wilcoxon(grid[:, i], grid[:, j]).pvalue)
    # Krippendorff's alpha: raters x (item, method) units, missing where a rater did not see the item.
    raters = sorted({r for r, *_ in rows})
    units = sorted({(i, k) for _, i, k, _, _ in rows})
    matrix = np.full((len(raters), len(units)), np.nan)
    for r, i, k, _, s in rows:
        matrix[raters.index(r), units.index((i, k))] = s
    assert c.alpha == pytest.approx(krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal"))
    slots = np.array([slot for *_, slot, _ in rows])
    scores = np.array([s for *_, s in rows])
    kruskal = scipy_stats.kruskal(*[scores[slots == s] for s in sorted(set(slots.tolist()))])
    assert c.position.p_value == pytest.approx(kruskal.pvalue)
    assert c.position.means == pytest.approx({s: scores[slots == s].mean() for s in sorted(set(slots.tolist()))})


def test_aggregates_csv_joins_table3_with_the_experiments_metrics(rated_study):
    results = study_results(rated_study)
    lines = list(csv.DictReader(io.StringIO("".join(aggregate_lines(rated_study, results)))))
    assert list(lines[0])[:len(AGGREGATE_COLUMNS)] == AGGREGATE_COLUMNS
    assert {(r["criterion"], r["method"]) for r in lines} == {
        (c, m) for c in ("similarity", "semantic_blending") for m in MEANS}
    by = {(r["criterion"], r["method"]): r for r in lines}
    for c in results.criteria:
        for row in c.rows:
            line = by[(c.criterion.key, row.method.key)]
            assert float(line["mean"]) == pytest.approx(row.interval.mean)
            assert int(line["n_raters"]) == row.interval.n_raters <= 9  # the excluded rater is out
    joined = joined_table(results)
    assert [r.key for r in joined.rows] == ["copy_paste", "pbe_a", "pbe_b"]


def test_platform_ids_cannot_start_a_spreadsheet_formula(rated_study):
    from studies.models import Rater

    rater = Rater.objects.filter(study=rated_study).last()
    Rater.objects.filter(pk=rater.pk).update(external_id="=HYPERLINK(1)")
    rows = list(csv.DictReader(io.StringIO("".join(rating_lines(rated_study)))))
    assert {r["external_id"] for r in rows if r["rater"] == rater.pseudonym} == {"'=HYPERLINK(1)"}


def test_rank_mode_attention_trials_rank_the_outputs_among_themselves(finished_experiment):
    study = study_create(name="r", experiment=finished_experiment(), response_mode="rank", ratings_per_pair=3,
                         trials_per_rater=2, attention_checks=1, live=True)
    from studies.selectors import included_ratings

    criteria = list(study.criteria.all())
    methods = dict(Candidate.objects.filter(item__study=study).values_list("pk", "method__key"))
    for _ in range(3):
        rater = rater_enter(study=study, entry=Entry(platform="anonymous"), cookie_rater=None)
        while (trial := trial_current(rater=rater)) is not None:
            # Ranks by the methods' order, the untouched scene last (a passed check).
            order = sorted(trial.slot_order, key=lambda pk: (methods[pk] is None, methods[pk] or ""))
            assert trial_answer(trial=trial, answer={
                (slot, c.pk): order.index(pk) + 1 for slot, pk in enumerate(trial.slot_order) for c in criteria})

    ratings = included_ratings(study, rater_quality(study))
    assert ratings and {score for *_, score in ratings} == {1, 2, 3}  # never 4, the scene's place
    assert not any(q.excluded for q in rater_quality(study).values())
    by_method = {}
    for _, _, method, _, _, score in ratings:
        by_method.setdefault(method, set()).add(score)
    assert sorted(len(v) for v in by_method.values()) == [1, 1, 1]  # each method kept its own rank


def test_export_study_and_create_study_commands(rated_study, tmp_path, capsys):
    target = tmp_path / "ratings.csv"
    call_command("export_study", "t3", "--what", "ratings", "-o", str(target))
    assert len(target.read_text().splitlines()) == Rating.objects.count() + 1
    with pytest.raises(CommandError, match="no study named 'nope'"):
        call_command("export_study", "nope")
    call_command("create_study", rated_study.experiment.name, "--name", "cli", "--methods", "pbe_a,pbe_b",
                 "--items", "random:3:1", "--mode", "rank", "--ratings-per-pair", "4", "--live", "--attention-checks", "0",
                 "--criterion", "quality|Quality|Which looks best?")
    out = capsys.readouterr().out
    study = Study.objects.get(name="cli")
    assert f"rater link:      http://127.0.0.1:8000/r/{study.token}/" in out
    assert (study.items.count(), study.methods.count(), study.response_mode, study.state) == (3, 2, "rank", "live")
    assert list(study.criteria.values_list("key", "label")) == [("quality", "Quality")]
    with pytest.raises(CommandError, match="methods nope: not in experiment"):
        call_command("create_study", rated_study.experiment.name, "--name", "x", "--methods", "nope")
    with pytest.raises(CommandError, match="--criterion: line 1: expected key | label | question"):
        call_command("create_study", rated_study.experiment.name, "--name", "y", "--criterion", "just a key")


def test_the_study_page_shows_table3_and_the_excluded_rater(rated_study, client, django_user_model):
    django_user_model.objects.create_user("rita", password="a-long-password")
    client.login(username="rita", password="a-long-password")
    page = client.get(f"/studies/{rated_study.pk}/").content.decode()
    assert page.count('<tr data-method="') == 3 and "excluded</strong>: failed 1 of 1 attention checks" in page
    assert "Kendall's W" in page and "Krippendorff" in page
    download = client.get(f"/studies/{rated_study.pk}/ratings.csv")
    assert download.streaming and download["Content-Disposition"] == 'attachment; filename="t3-ratings.csv"'
    assert len(b"".join(download.streaming_content).decode().splitlines()) == Rating.objects.count() + 1
