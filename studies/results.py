"""A study's results, as DTC's Table 3 reports them and with what the papers lacked: the mean
score per method and criterion (1 = best) with a 95% bootstrap interval over items and raters,
the Friedman test with Kendall's W, pairwise Wilcoxon with Holm, Krippendorff's ordinal alpha,
the mean by slot (position bias), and the experiment's metric table joined with the human
columns. Excluded raters and attention candidates are left out of everything here."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from evalsite.results import experiment_results
from studies import stats
from studies.models import Criterion, Study, StudyMethod
from studies.selectors import RaterQuality, included_ratings, rater_quality

BOOTSTRAP = {"n_resamples": 2000, "seed": 0, "confidence": 0.95}


@dataclass
class MethodRow:
    method: StudyMethod
    interval: stats.MeanInterval | None
    problem: str = ""
    best: bool = False


@dataclass
class CriterionResults:
    criterion: Criterion
    rows: list[MethodRow]
    friedman: stats.Friedman | None = None
    friedman_problem: str = ""
    pairwise: list[stats.PairwiseTest] = field(default_factory=list)
    alpha: float | None = None
    alpha_problem: str = ""
    position: stats.PositionBias | None = None
    position_problem: str = ""


@dataclass
class StudyResults:
    study: Study
    methods: list[StudyMethod]
    criteria: list[CriterionResults]
    quality: dict[int, RaterQuality]
    n_ratings: int
    interval_method: str = ""

    @property
    def excluded(self) -> list[RaterQuality]:
        return [q for q in self.quality.values() if q.excluded]

    @property
    def raters_included(self) -> int:
        return sum(1 for q in self.quality.values() if not q.excluded and q.trials)


def _attempt(compute):
    try:
        return compute(), ""
    except stats.StudyStatsError as exc:
        return None, str(exc)


def study_results(study: Study) -> StudyResults:
    methods = list(study.methods.all())
    criteria = list(study.criteria.all())
    quality = rater_quality(study)
    ratings = np.array(included_ratings(study, quality), dtype=np.int64).reshape(-1, 6)
    rater, item, method, criterion_col, slot, score = ratings.T
    item_ids = np.unique(item)
    method_ids = [m.pk for m in methods]
    results = []
    interval_method = ""
    for criterion in criteria:
        of_criterion = criterion_col == criterion.pk
        rows = []
        for m in methods:
            chosen = of_criterion & (method == m.pk)
            if chosen.sum() < 2:
                rows.append(MethodRow(method=m, interval=None, problem=f"{int(chosen.sum())} rating(s) so far"))
                continue
            interval, problem = _attempt(lambda: stats.mean_with_interval(
                item[chosen], rater[chosen], score[chosen], n_resamples=BOOTSTRAP["n_resamples"],
                seed=BOOTSTRAP["seed"], confidence=BOOTSTRAP["confidence"]))
            if interval is not None:
                interval_method = interval.method
            rows.append(MethodRow(method=m, interval=interval, problem=problem or ""))
        scored = [r for r in rows if r.interval is not None]
        if scored:
            best = min(r.interval.mean for r in scored)
            for r in scored:
                r.best = r.interval.mean == best
        per_method = _item_means(item[of_criterion], method[of_criterion], score[of_criterion], item_ids, method_ids)
        result = CriterionResults(criterion=criterion, rows=rows)
        result.friedman, result.friedman_problem = _attempt(lambda: stats.friedman(per_method))
        if len(methods) >= 2 and per_method.shape[0]:
            result.pairwise = stats.pairwise_wilcoxon(per_method, [m.key for m in methods])
        reliability = _reliability(rater[of_criterion], item[of_criterion], method[of_criterion], score[of_criterion])
        result.alpha, result.alpha_problem = _attempt(lambda: stats.krippendorff_alpha_ordinal(reliability))
        result.position, result.position_problem = _attempt(
            lambda: stats.position_bias(slot[of_criterion], score[of_criterion]))
        results.append(result)
    return StudyResults(study=study, methods=methods, criteria=results, quality=quality, n_ratings=len(ratings),
                        interval_method=interval_method)


def _item_means(items, methods, scores, item_ids, method_ids) -> np.ndarray:
    """(items, methods): each item's mean score per method over its raters, NaN where unrated."""
    sums = np.zeros((len(item_ids), len(method_ids)))
    counts = np.zeros_like(sums)
    row = np.searchsorted(item_ids, items)
    column = np.array([method_ids.index(m) for m in methods], dtype=np.int64)
    np.add.at(sums, (row, column), scores)
    np.add.at(counts, (row, column), 1)
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _reliability(raters, items, methods, scores) -> np.ndarray:
    """(raters, units) with a unit = (item, method), NaN where a rater did not rate it."""
    units = {unit: i for i, unit in enumerate(sorted(set(zip(items.tolist(), methods.tolist()))))}
    rater_index = {r: i for i, r in enumerate(sorted(set(raters.tolist())))}
    matrix = np.full((len(rater_index), len(units)), np.nan)
    for r, i, m, s in zip(raters.tolist(), items.tolist(), methods.tolist(), scores.tolist()):
        matrix[rater_index[r], units[(i, m)]] = s
    return matrix


@dataclass
class JoinedRow:
    key: str
    metrics: list[object]  # evalsite Cells (or None) in the metric table's column order
    human: list[MethodRow]  # one per criterion


@dataclass
class JoinedTable:
    metric_columns: list[object]
    criteria: list[Criterion]
    rows: list[JoinedRow]
    stand_in: bool


def joined_table(results: StudyResults) -> JoinedTable:
    """The experiment's comparison table, limited to the study's methods, with the human
    columns after the metric ones."""
    table = experiment_results(results.study.experiment)
    by_key = {row.key: row for row in table.rows}
    rows = []
    for index, method in enumerate(results.methods):
        metric_row = by_key.get(method.key)
        rows.append(JoinedRow(
            key=method.key,
            metrics=[metric_row.cells.get(c.metric) if metric_row else None for c in table.columns],
            human=[c.rows[index] for c in results.criteria],
        ))
    return JoinedTable(metric_columns=table.columns, criteria=[c.criterion for c in results.criteria], rows=rows,
                       stand_in=table.stand_in)


def ratings_by_method(results: StudyResults) -> dict[str, dict[str, float]]:
    """{method key: {criterion key: mean}} for exports and the CLI."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for c in results.criteria:
        for row in c.rows:
            if row.interval is not None:
                out[row.method.key][c.criterion.key] = row.interval.mean
    return dict(out)
