"""Reading an experiment's results: what its numbers are computed on (the scope), the
stored scores, and the comparison table (rows = methods, columns = metrics) with its
intervals, best values and significance marks. Reads only; scoring.py writes."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Count

from evalsite.models import Dataset, Experiment, ExperimentMethod, MetricJob, Output, Sample, SampleScore, Score
from evalsite.selectors import experiment_columns, experiment_outputs
from metrics.errors import MetricError
from metrics.protocols import PROTOCOLS, MetricProtocol
from metrics.stats import paired_tests_against_best
from metrics.weights import STAND_IN_NOTE

# Bump when a computation changes: every score is then computed afresh (the scope changes).
PROTOCOL_VERSION = 1
CLIP_BOOTSTRAP = {"n_resamples": 9999, "seed": 0, "confidence": 0.95}
FID_BOOTSTRAP = {"n_resamples": 50, "seed": 0, "confidence": 0.95}
KID_SUBSETS = {"num_subsets": 100, "max_subset_size": 1000, "seed": 0}
ALPHA = 0.05
DECIMALS = {"clip_score": 2, "fid": 2, "fid_clip": 2, "kid": 4}


def format_value(metric: str, value: float | None) -> str:
    return "" if value is None else f"{value:.{DECIMALS.get(metric, 3)}f}"


@dataclass
class Scope:
    """What every method of one table is scored on: the samples that have an output for
    every method and seed (so all rows share their N), the seeds, the canvas."""

    experiment: Experiment
    columns: list[ExperimentMethod]
    samples: list[Sample]
    seeds: list[int]
    samples_in_dataset: int = 0
    _keys: dict = field(default_factory=dict, repr=False)

    @property
    def dataset(self) -> Dataset:
        return self.experiment.dataset

    @property
    def resolution(self) -> int:
        return self.experiment.resolution

    def key(self, metric: str) -> str:
        if metric not in self._keys:
            payload = {
                "protocol_version": PROTOCOL_VERSION,
                "metric": metric,
                "dataset": self.dataset.content_hash,
                "samples": sorted(s.pk for s in self.samples),
                "seeds": sorted(self.seeds),
                "resolution": self.resolution,
                "settings": {"clip_score": CLIP_BOOTSTRAP, "fid": FID_BOOTSTRAP, "fid_clip": FID_BOOTSTRAP,
                             "kid": KID_SUBSETS}.get(metric),
            }
            self._keys[metric] = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return self._keys[metric]

    def outputs_of(self, method_id: int) -> list[Output]:
        """Sample-major, seeds in order: row i * len(seeds) + j is sample i, seed j."""
        found = {
            (o.sample_id, o.seed): o
            for o in Output.objects.filter(
                method_id=method_id, seed__in=self.seeds, sample__dataset_id=self.experiment.dataset_id
            ).select_related("sample")
        }
        return [found[(sample.pk, seed)] for sample in self.samples for seed in self.seeds]


def scope_of(experiment: Experiment) -> Scope:
    """Two queries whatever the size: the samples with a complete set of outputs are
    counted by the database."""
    columns = experiment_columns(experiment)
    seeds = sorted(experiment.seeds)
    wanted = len({c.method_id for c in columns}) * len(seeds)
    complete = (
        experiment_outputs(experiment, columns).values("sample_id").annotate(n=Count("id")).filter(n=wanted)
        .values("sample_id")
    )
    samples = list(Sample.objects.filter(pk__in=complete).order_by("sample_id")) if wanted else []
    return Scope(experiment=experiment, columns=columns, samples=samples, seeds=seeds,
                 samples_in_dataset=experiment.dataset.samples.count())


def score_find(*, method_id: int, metric: str, scope_key: str, extractor_sha256: str | None = None) -> Score | None:
    scores = Score.objects.filter(method_id=method_id, metric=metric, scope=scope_key)
    if extractor_sha256 is not None:
        scores = scores.filter(extractor_sha256=extractor_sha256)
    return scores.order_by("-computed_at", "-id").first()


@dataclass
class Column:
    metric: str
    protocol: MetricProtocol

    @property
    def label(self) -> str:
        return self.protocol.label

    @property
    def arrow(self) -> str:
        return "\u2191" if self.protocol.higher_is_better else "\u2193"


@dataclass
class Cell:
    score: Score
    best: bool = False
    worse: bool = False  # significantly worse than the best (paired test, Holm-corrected)
    p_holm: float | None = None

    @property
    def value(self) -> float:
        return self.score.value

    @property
    def display(self) -> str:
        return format_value(self.score.metric, self.score.value)

    @property
    def interval_display(self) -> str:
        score = self.score
        if score.ci_low is not None:
            return f"[{format_value(score.metric, score.ci_low)}, {format_value(score.metric, score.ci_high)}]"
        if score.std is not None:
            return f"\u00b1 {format_value(score.metric, score.std)}"
        return ""


@dataclass
class Row:
    key: str
    column: ExperimentMethod
    cells: dict[str, Cell | None]

    @property
    def method(self):
        return self.column.method


@dataclass
class ResultsTable:
    experiment: Experiment
    columns: list[Column]
    rows: list[Row]
    n_samples: int
    samples_in_dataset: int
    seeds: list[int]
    stand_in: bool
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # "metric of key" not computed yet

    @property
    def has_scores(self) -> bool:
        return any(cell for row in self.rows for cell in row.cells.values())

    @property
    def stand_in_note(self) -> str:
        return STAND_IN_NOTE if self.stand_in else ""


def experiment_results(experiment: Experiment, scope: Scope | None = None) -> ResultsTable:
    scope = scope or scope_of(experiment)
    metrics = [m for m in experiment.metrics if m in PROTOCOLS]
    columns = [Column(m, PROTOCOLS[m]) for m in metrics]
    rows = [Row(c.key, c, {}) for c in scope.columns]
    latest = _latest_scores(scope, metrics)
    missing = []
    for column in columns:
        for row in rows:
            score = latest.get((row.column.method_id, column.metric))
            row.cells[column.metric] = Cell(score) if score else None
            if score is None:
                missing.append(f"{column.label} of {row.key}")
        _mark_best(column, rows)
    table = ResultsTable(
        experiment=experiment, columns=columns, rows=rows, n_samples=len(scope.samples),
        samples_in_dataset=scope.samples_in_dataset, seeds=scope.seeds,
        stand_in=any(c.score.stand_in for r in rows for c in r.cells.values() if c), missing=missing,
    )
    if "clip_score" in metrics:
        _mark_significance(table, scope)
    table.notes = _notes(table)
    return table


def _latest_scores(scope: Scope, metrics: list[str]) -> dict[tuple[int, str], Score]:
    """The newest score of each (method, metric) on this scope, in one query (a score is
    recomputed when the extractor's weights change; the newest is shown)."""
    if not metrics or not scope.columns:
        return {}
    keys = {scope.key(metric): metric for metric in metrics}
    scores = Score.objects.filter(
        method_id__in={c.method_id for c in scope.columns}, metric__in=metrics, scope__in=list(keys)
    ).order_by("computed_at", "id")
    return {(score.method_id, score.metric): score for score in scores if keys[score.scope] == score.metric}


def _mark_best(column: Column, rows: list[Row]) -> None:
    scored = [row.cells[column.metric] for row in rows if row.cells.get(column.metric)]
    if not scored:
        return
    pick = max if column.protocol.higher_is_better else min
    best = pick(cell.value for cell in scored)
    for cell in scored:
        cell.best = cell.value == best


def _mark_significance(table: ResultsTable, scope: Scope) -> None:
    """CLIP score: each method against the best on the same samples (Wilcoxon, Holm)."""
    cells = {row.key: row.cells.get("clip_score") for row in table.rows}
    if len(cells) < 2 or not all(cells.values()) or len(scope.samples) < 2:
        return
    grids = per_sample_grids([cell.score for cell in cells.values()], scope)
    per_method = {key: grids.get(cell.score.pk) for key, cell in cells.items()}
    if any(grid is None for grid in per_method.values()):
        return
    try:
        _, tests = paired_tests_against_best(per_method, higher_is_better=True, alpha=ALPHA)
    except MetricError:
        return
    for test in tests:
        cells[test.method].p_holm = test.p_holm
        cells[test.method].worse = test.significantly_worse


def per_sample_grids(scores: list[Score], scope: Scope) -> dict[int, np.ndarray]:
    """score pk -> its (samples, seeds) values in the scope's order, in one query; a score
    whose values do not line up with the scope is left out."""
    values: dict[int, dict] = {score.pk: {} for score in scores}
    rows = SampleScore.objects.filter(score_id__in=list(values)).values_list("score_id", "sample_id", "seed", "value")
    for score_id, sample_id, seed, value in rows.iterator(chunk_size=5000):
        values[score_id][(sample_id, seed)] = value
    grids = {}
    for score_id, by_key in values.items():
        try:
            grids[score_id] = np.array([[by_key[(s.pk, seed)] for seed in scope.seeds] for s in scope.samples])
        except KeyError:
            continue
    return grids


def _notes(table: ResultsTable) -> list[str]:
    notes = [
        f"N = {table.n_samples} samples x {len(table.seeds)} seed(s) per method"
        + (f" (of {table.samples_in_dataset} in the dataset: scored on the samples every method has an output for)"
           if table.n_samples != table.samples_in_dataset else ""),
    ]
    for column in table.columns:
        notes.append(f"{column.label} ({column.arrow} better): {column.protocol.protocol}")
    intervals = {c.score.provenance.get("interval") for r in table.rows for c in r.cells.values() if c}
    intervals.discard(None)
    intervals.discard("")
    if intervals:
        notes.append("Intervals: " + "; ".join(sorted(intervals)) + ". FID intervals say how much the number moves "
                     "with the generated set drawn (resampling biases FID upwards), not where the true FID lies.")
    if any(c.metric == "clip_score" for c in table.columns):
        notes.append(f"* significantly worse than the best CLIP score (two-sided Wilcoxon signed-rank on per-sample "
                     f"values, Holm-corrected, alpha = {ALPHA}); FID-type metrics have no per-sample test.")
    if table.stand_in:
        notes.append(STAND_IN_NOTE)
    return notes


@dataclass
class SampleRow:
    output: Output
    value: float


def experiment_sample_scores(experiment: Experiment, key: str, *, limit: int = 50, offset: int = 0,
                             scope: Scope | None = None) -> tuple[list[SampleRow], int] | None:
    """Region CLIP scores of one column's outputs, worst first (the failures to look at)."""
    scope = scope or scope_of(experiment)
    column = next((c for c in scope.columns if c.key == key), None)
    if column is None:
        return None
    score = score_find(method_id=column.method_id, metric="clip_score", scope_key=scope.key("clip_score"))
    if score is None:
        return [], 0
    values = (SampleScore.objects.filter(score=score, output__isnull=False).select_related("output__sample")
              .order_by("value", "sample__sample_id", "seed"))
    return [SampleRow(v.output, v.value) for v in values[offset : offset + limit]], values.count()


def metric_job_latest(experiment: Experiment) -> MetricJob | None:
    return experiment.metric_jobs.order_by("-id").first()
