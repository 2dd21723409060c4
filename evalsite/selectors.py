"""Reads for views, commands and exports.

An experiment's images and jobs are those of its methods' identities, its seeds and its
dataset: shared with every other experiment that uses the same method.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count, Sum

from evalsite.models import (
    ACTIVE_JOB_STATUSES,
    Dataset,
    Experiment,
    ExperimentMethod,
    FineTune,
    GenerationJob,
    JobStatus,
    Output,
)

FAILURES_SHOWN_PER_METHOD = 3


def dataset_get_by_reference(reference: str) -> Dataset | None:
    """`name` (newest version) or `name@version` (a content-hash prefix)."""
    name, _, version = reference.partition("@")
    datasets = Dataset.objects.filter(name=name)
    if version:
        datasets = datasets.filter(content_hash__startswith=version)
    return datasets.order_by("-created_at", "-id").first()


def experiment_columns(experiment: Experiment) -> list[ExperimentMethod]:
    return list(experiment.methods.select_related("method").order_by("position"))


def jobs_for(method_ids, seeds, dataset):
    """The jobs making (method, seed) images of `dataset`: what an experiment waits on."""
    return GenerationJob.objects.filter(method_id__in=method_ids, dataset=dataset, seed__in=seeds)


def experiment_jobs(experiment: Experiment, columns: list[ExperimentMethod] | None = None):
    columns = experiment_columns(experiment) if columns is None else columns
    return jobs_for([c.method_id for c in columns], experiment.seeds, experiment.dataset_id)


def experiment_fine_tunes(experiment: Experiment, progress: "Progress | None" = None) -> list[FineTune]:
    """DreamPaint: the products' fine-tunings the experiment's jobs need, by product, in one
    query; none (and no query) when `progress` shows no DreamPaint method."""
    if progress is not None and not any(column.family == "dreampaint" for column in progress.columns):
        return []
    return list(FineTune.objects.filter(
        generation_jobs__method__experiment_methods__experiment=experiment, generation_jobs__dataset_id=experiment.dataset_id,
    ).distinct().order_by("product_id", "pk"))


def experiment_outputs(experiment: Experiment, columns: list[ExperimentMethod] | None = None):
    columns = experiment_columns(experiment) if columns is None else columns
    return Output.objects.filter(
        method_id__in=[c.method_id for c in columns], seed__in=experiment.seeds, sample__dataset_id=experiment.dataset_id
    )


@dataclass
class ColumnProgress:
    key: str
    family: str
    identity: str
    expected: int
    done: int
    jobs_by_status: dict[str, int]
    failures: list[str] = field(default_factory=list)


@dataclass
class Progress:
    expected: int
    done: int
    jobs_by_status: dict[str, int]
    columns: list[ColumnProgress] = field(default_factory=list)
    cancelled: bool = False

    @property
    def finished(self) -> bool:
        return not any(self.jobs_by_status.get(s, 0) for s in ACTIVE_JOB_STATUSES)

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.expected if self.expected else 100.0

    @property
    def status(self) -> str:
        if not self.finished:
            return "in progress"
        if self.cancelled and self.done < self.expected:
            return "cancelled"
        if self.jobs_by_status.get(JobStatus.FAILED):
            return "failed"
        return "done" if self.done >= self.expected else "incomplete"


def experiment_progress(experiment: Experiment) -> Progress:
    """Counts only, per method column: a handful of queries whatever the size."""
    columns = experiment_columns(experiment)
    samples = experiment.dataset.samples.count()
    seeds = len(experiment.seeds)
    outputs = dict(
        experiment_outputs(experiment, columns).values_list("method_id").annotate(n=Count("id")).order_by()
    )
    jobs: dict[int, dict[str, int]] = {}
    for method_id, status, n in (
        experiment_jobs(experiment, columns).values_list("method_id", "status").annotate(n=Count("id")).order_by()
    ):
        jobs.setdefault(method_id, {})[status] = n
    failures: dict[int, list[str]] = {}
    failed = experiment_jobs(experiment, columns).filter(status=JobStatus.FAILED).exclude(error="")
    for method_id, error in failed.values_list("method_id", "error").distinct().order_by("method_id", "error")[:200]:
        listed = failures.setdefault(method_id, [])
        if len(listed) < FAILURES_SHOWN_PER_METHOD:
            listed.append(error)
    progress = Progress(expected=0, done=0, jobs_by_status={s: 0 for s in JobStatus.values},
                        cancelled=experiment.cancelled_at is not None)
    for column in columns:
        by_status = {s: jobs.get(column.method_id, {}).get(s, 0) for s in JobStatus.values}
        entry = ColumnProgress(
            key=column.key,
            family=column.method.family,
            identity=column.method.identity,
            expected=samples * seeds,
            done=outputs.get(column.method_id, 0),
            jobs_by_status=by_status,
            failures=failures.get(column.method_id, []),
        )
        progress.columns.append(entry)
        progress.expected += entry.expected
        progress.done += entry.done
        for status, n in by_status.items():
            progress.jobs_by_status[status] += n
    return progress


def experiment_list():
    """Every experiment with its progress (a few queries each: the list is short)."""
    experiments = list(Experiment.objects.select_related("dataset").annotate(method_count=Count("methods")))
    for experiment in experiments:
        experiment.progress = experiment_progress(experiment)
    return experiments


def experiment_failures(experiment: Experiment):
    return experiment_jobs(experiment).filter(status=JobStatus.FAILED).select_related("method").order_by("id")


@dataclass
class GridRow:
    sample: object
    outputs: list  # one entry per method column, Output or None


def experiment_grid(experiment: Experiment, *, seed: int | None = None, limit: int = 50, offset: int = 0):
    """Rows of (sample, output per method column) for one seed, in column order."""
    seed = experiment.seeds[0] if seed is None else seed
    columns = experiment_columns(experiment)
    samples = list(experiment.dataset.samples.order_by("sample_id")[offset : offset + limit])
    outputs = Output.objects.filter(method_id__in=[c.method_id for c in columns], seed=seed, sample__in=samples)
    by_key = {(o.sample_id, o.method_id): o for o in outputs}
    rows = [GridRow(sample=s, outputs=[by_key.get((s.pk, c.method_id)) for c in columns]) for s in samples]
    return columns, rows


def experiment_seconds_per_image(experiment: Experiment) -> dict[str, float]:
    columns = experiment_columns(experiment)
    rows = (
        experiment_outputs(experiment, columns)
        .values("method_id")
        .annotate(total=Sum("seconds"), n=Count("id"))
        .order_by()
    )
    by_method = {r["method_id"]: r["total"] / r["n"] for r in rows if r["n"]}
    return {c.key: by_method[c.method_id] for c in columns if c.method_id in by_method}


def output_detail(pk: int) -> Output:
    return Output.objects.select_related("method", "sample", "sample__dataset").get(pk=pk)


def output_columns(output: Output) -> list[ExperimentMethod]:
    """The experiment columns that show this output (its method, on its dataset)."""
    return list(
        ExperimentMethod.objects.filter(method=output.method, experiment__dataset=output.sample.dataset_id)
        .select_related("experiment")
        .order_by("experiment__name")
    )
