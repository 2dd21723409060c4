"""CSV exports of a study: every raw rating (streamed in chunks, so a large study never
times out or fills memory) and the aggregates (Table 3 with its statistics, joined with
the experiment's metrics). Excluded raters stay in the raw export, flagged."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from evalsite.exports import csv_lines
from studies.models import Rating, Study, TrialStatus
from studies.results import StudyResults, joined_table, study_results
from studies.selectors import rater_quality

RATING_COLUMNS = [
    "study", "item", "sample", "method", "attention_check", "slot", "criterion", "score", "response_mode",
    "rater", "platform", "external_id", "external_study_id", "external_session_id", "trial", "trial_position",
    "started_at", "answered_at", "seconds", "excluded", "exclusion_reason",
]
AGGREGATE_COLUMNS = [
    "study", "criterion", "method", "mean", "ci_low", "ci_high", "n_ratings", "n_items", "n_raters", "best",
    "friedman_chi2", "friedman_p", "kendalls_w", "krippendorff_alpha", "interval",
]


def _cell(value: object) -> object:
    """Text from raters' links (platform ids) could start a spreadsheet formula: quoted."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv(columns: list[str], rows: Iterable[list]) -> Iterator[str]:
    """Rows of values in column order, through evalsite's streaming CSV writer."""
    return csv_lines((dict(zip(columns, values)) for values in rows), columns)


def _iso(moment) -> str:
    return moment.isoformat() if moment else ""


def rating_lines(study: Study) -> Iterator[str]:
    """The header, then one line per stored rating (attention checks included, marked)."""
    return _csv(RATING_COLUMNS, _rating_rows(study))


def _rating_rows(study: Study) -> Iterator[list]:
    quality = rater_quality(study)
    rows = (
        Rating.objects.filter(trial__rater__study=study, trial__status=TrialStatus.ANSWERED)
        .order_by("trial__rater__created_at", "trial__position", "slot", "criterion__position")
        .values_list(
            "trial__item__position", "trial__item__sample__sample_id", "candidate__method__key", "slot",
            "criterion__key", "score", "trial__rater_id", "trial__rater__pseudonym", "trial__rater__platform",
            "trial__rater__external_id", "trial__rater__external_study_id", "trial__rater__external_session_id",
            "trial__token", "trial__position", "trial__shown_at", "trial__answered_at",
        )
        .iterator(chunk_size=2000)
    )
    for (item, sample, method, slot, criterion, score, rater_id, pseudonym, platform, external_id, external_study,
         external_session, trial, position, shown, answered) in rows:
        q = quality.get(rater_id)
        seconds = round((answered - shown).total_seconds(), 3) if shown and answered else None
        yield [
            study.name, item, sample, method or "", int(method is None), slot, criterion, score, study.response_mode,
            pseudonym, platform, _cell(external_id), _cell(external_study), _cell(external_session), trial,
            position, _iso(shown), _iso(answered), seconds, int(bool(q and q.excluded)), q.reason if q else "",
        ]


def aggregate_lines(study: Study, results: StudyResults | None = None) -> Iterator[str]:
    """One line per (criterion, method), with the experiment's metric values as extra
    columns (`<metric>` and its interval), so a paper's table is one file."""
    results = results or study_results(study)
    joined = joined_table(results)
    metric_names = [c.metric for c in joined.metric_columns]
    columns = AGGREGATE_COLUMNS + [f"{m}{suffix}" for m in metric_names for suffix in ("", "_ci_low", "_ci_high")]
    metric_cells = {row.key: row.metrics for row in joined.rows}

    def rows():
        for c in results.criteria:
            friedman = c.friedman
            for row in c.rows:
                interval = row.interval
                metrics = []
                for cell in metric_cells.get(row.method.key, [None] * len(metric_names)):
                    score = cell.score if cell is not None else None
                    metrics += [score.value if score else None, score.ci_low if score else None,
                                score.ci_high if score else None]
                yield [
                    study.name, c.criterion.key, row.method.key,
                    interval.mean if interval else None, interval.low if interval else None,
                    interval.high if interval else None, interval.n_ratings if interval else 0,
                    interval.n_items if interval else 0, interval.n_raters if interval else 0, int(row.best),
                    friedman.statistic if friedman else None, friedman.p_value if friedman else None,
                    friedman.kendalls_w if friedman else None, c.alpha, results.interval_method,
                ] + metrics

    return _csv(columns, rows())


PAIRWISE_COLUMNS = ["study", "criterion", "a", "b", "n_items", "wilcoxon_statistic", "p", "p_holm"]


def pairwise_lines(study: Study, results: StudyResults | None = None) -> Iterator[str]:
    results = results or study_results(study)
    return _csv(PAIRWISE_COLUMNS, ([study.name, c.criterion.key, t.a, t.b, t.n, t.statistic, t.p_value, t.p_holm]
                                   for c in results.criteria for t in c.pairwise))


EXPORTS = {"ratings": rating_lines, "aggregates": aggregate_lines, "pairwise": pairwise_lines}


def export_filename(study: Study, what: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in study.name)
    return f"{safe}-{what}.csv"
