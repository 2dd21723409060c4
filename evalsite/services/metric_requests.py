"""Queueing metric jobs: by hand (compute_metrics), and by the end of an experiment's
generation, however it ended (a job's own end, or the sweep or the retries giving up on
one). Kept apart from the job runner so that the job life cycle (jobs.py) can call it."""
from __future__ import annotations

from django.db import transaction

from evalsite.dispatch import send_metric_job
from evalsite.models import ACTIVE_JOB_STATUSES, Experiment, ExperimentMethod, JobStatus, MetricJob
from evalsite.selectors import experiment_jobs


def metrics_request(*, experiment: Experiment) -> tuple[MetricJob, bool]:
    """Queue the experiment's metric job, or find the one already queued; (job, whether it
    was queued now). A running job is not enough: it fixed its samples when it started, and
    the experiment may have grown or finished generating since."""
    with transaction.atomic():
        list(Experiment.objects.select_for_update().filter(pk=experiment.pk))  # one request at a time
        queued = experiment.metric_jobs.filter(status=JobStatus.QUEUED).order_by("id").first()
        if queued is not None:
            return queued, False
        job = MetricJob.objects.create(experiment=experiment, stage="waiting for a worker")
        send_metric_job(job.pk)
        return job, True


def experiments_lock(*, method_id: int, dataset_id: int) -> list[Experiment]:
    """The experiments showing this method's images, locked in id order. A generation job's
    end takes these locks before its own row's: the order `evaluate --cancel` takes them in,
    so the two never deadlock, and of two jobs ending at once the second to take them sees
    the first one's end."""
    return list(
        Experiment.objects.select_for_update().filter(
            pk__in=ExperimentMethod.objects.filter(method_id=method_id).values("experiment_id"),
            dataset_id=dataset_id, cancelled_at__isnull=True,
        ).order_by("pk")
    )


def metrics_request_when_generated(*, method_id: int, dataset_id: int) -> list[int]:
    """After a generation job ended: queue the metrics of every experiment on this method
    whose generation has now ended (whatever failed: the table is scored on the samples
    every method has, and says so). Call it in the transaction that ends the job."""
    queued = []
    for experiment in experiments_lock(method_id=method_id, dataset_id=dataset_id):
        if not experiment.metrics:
            continue
        if experiment_jobs(experiment).filter(status__in=ACTIVE_JOB_STATUSES).exists():
            continue
        queued.append(metrics_request(experiment=experiment)[0].pk)
    return queued
