"""Reads for views, commands and exports."""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, Sum

from evalsite.models import Dataset, Experiment, GenerationJob, JobStatus, Output


def dataset_get_by_reference(reference: str) -> Dataset | None:
    """`name` (newest version) or `name@version` (a content-hash prefix)."""
    name, _, version = reference.partition("@")
    datasets = Dataset.objects.filter(name=name)
    if version:
        datasets = datasets.filter(content_hash__startswith=version)
    return datasets.order_by("-created_at", "-id").first()


@dataclass
class Progress:
    expected: int
    done: int
    jobs_by_status: dict[str, int]

    @property
    def finished(self) -> bool:
        active = self.jobs_by_status.get(JobStatus.QUEUED, 0) + self.jobs_by_status.get(JobStatus.RUNNING, 0)
        return active == 0

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.expected if self.expected else 100.0


def experiment_list():
    return Experiment.objects.select_related("dataset").annotate(
        method_count=Count("methods", distinct=True),
        jobs_active=Count("jobs", filter=Q(jobs__status__in=[JobStatus.QUEUED, JobStatus.RUNNING]), distinct=True),
        jobs_failed=Count("jobs", filter=Q(jobs__status=JobStatus.FAILED), distinct=True),
    )


def experiment_progress(experiment: Experiment) -> Progress:
    counts = dict(
        GenerationJob.objects.filter(experiment=experiment).values_list("status").annotate(n=Count("id"))
    )
    expected = (
        experiment.methods.count() * len(experiment.seeds) * experiment.dataset.samples.count()
    )
    done = Output.objects.filter(method__experiment=experiment).count()
    return Progress(expected=expected, done=done, jobs_by_status={s: counts.get(s, 0) for s in JobStatus.values})


def experiment_jobs(experiment: Experiment):
    return (
        GenerationJob.objects.filter(experiment=experiment)
        .select_related("method")
        .annotate(sample_count=Count("samples"))
        .order_by("method__position", "seed", "id")
    )


def experiment_failures(experiment: Experiment):
    return experiment_jobs(experiment).filter(status=JobStatus.FAILED)


@dataclass
class GridRow:
    sample: object
    outputs: list  # one entry per method, Output or None


def experiment_grid(experiment: Experiment, *, seed: int | None = None, limit: int = 50, offset: int = 0):
    """Rows of (sample, output per method) for one seed, in method column order."""
    seed = experiment.seeds[0] if seed is None else seed
    methods = list(experiment.methods.all())
    samples = list(experiment.dataset.samples.order_by("sample_id")[offset : offset + limit])
    outputs = Output.objects.filter(method__experiment=experiment, seed=seed, sample__in=samples).select_related("method")
    by_key = {(o.sample_id, o.method_id): o for o in outputs}
    rows = [GridRow(sample=s, outputs=[by_key.get((s.pk, m.pk)) for m in methods]) for s in samples]
    return methods, rows


def experiment_seconds_per_image(experiment: Experiment) -> dict[str, float]:
    rows = (
        Output.objects.filter(method__experiment=experiment)
        .values("method__key")
        .annotate(total=Sum("seconds"), n=Count("id"))
    )
    return {r["method__key"]: r["total"] / r["n"] for r in rows if r["n"]}
