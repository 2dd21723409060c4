"""Generation jobs waiting for DreamPaint's fine-tunings: sent when one succeeds, failed
with its message when it fails, and the sweep's and `evaluate --cancel`'s part in it.
Apart from fine_tuning.py so that the job life cycle (jobs.py) can call it."""
from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError, transaction
from django.db.models.functions import Now

from evalsite.dispatch import send_fine_tune_job, send_generation_job
from evalsite.models import ACTIVE_JOB_STATUSES, FineTune, GenerationJob, JobStatus
from evalsite.services.metric_requests import experiments_lock, metrics_request_when_generated

log = logging.getLogger(__name__)


def _waiting_jobs(fine_tune: FineTune):
    return GenerationJob.objects.filter(fine_tune=fine_tune, status=JobStatus.QUEUED)


def waiting_experiments_lock(fine_tune: FineTune) -> None:
    for method_id, dataset_id in sorted(set(_waiting_jobs(fine_tune).values_list("method_id", "dataset_id"))):
        experiments_lock(method_id=method_id, dataset_id=dataset_id)


def fine_tune_ended(fine_tune: FineTune) -> None:
    """In the transaction that ended the fine-tuning: send the generation jobs waiting for
    it, or fail them with its message (their experiments' metrics then follow)."""
    fine_tune.refresh_from_db(fields=["status", "error"])
    if fine_tune.status == JobStatus.SUCCEEDED:
        for job_id in _waiting_jobs(fine_tune).values_list("pk", flat=True):
            GenerationJob.objects.filter(pk=job_id).update(queued_at=Now())
            send_generation_job(job_id)
        return
    if fine_tune.status != JobStatus.FAILED:
        return
    pairs = set(_waiting_jobs(fine_tune).values_list("method_id", "dataset_id"))
    _waiting_jobs(fine_tune).update(
        status=JobStatus.FAILED, finished_at=Now(), error=f"DreamPaint's fine-tuning failed: {fine_tune.error}",
    )
    for method_id, dataset_id in sorted(pairs):
        try:  # a problem queuing metrics is logged (and rolled back alone), never charged to the fine-tuning
            with transaction.atomic():
                metrics_request_when_generated(method_id=method_id, dataset_id=dataset_id)
        except (OperationalError, InterfaceError):
            raise
        except Exception:
            log.exception("could not queue the metrics of experiments on method %s; run compute_metrics", method_id)


def fine_tunes_recover() -> list[int]:
    """For the workers' sweep: generation jobs still waiting for a fine-tuning that ended
    without them seeing it (an `evaluate` committed while it ended) are failed with its
    message, or it is queued again when it was cancelled. Returns the fine-tunings acted on."""
    acted = []
    waiting = GenerationJob.objects.filter(status=JobStatus.QUEUED).values("fine_tune_id")
    for fine_tune in FineTune.objects.filter(pk__in=waiting, status__in=[JobStatus.FAILED, JobStatus.CANCELLED]):
        with transaction.atomic():
            waiting_experiments_lock(fine_tune)
            if fine_tune.status == JobStatus.FAILED:
                fine_tune_ended(fine_tune)
            elif FineTune.objects.filter(pk=fine_tune.pk, status=JobStatus.CANCELLED).update(
                status=JobStatus.QUEUED, claim="", queued_at=Now(), error=""
            ):
                send_fine_tune_job(fine_tune.pk)
        acted.append(fine_tune.pk)
    return acted


def fine_tunes_cancel_unneeded() -> int:
    """After `evaluate --cancel`: fine-tunings no active generation job waits for stop (a
    running one after its next progress write, its progress saved; `evaluate` resumes it)."""
    waited_for = GenerationJob.objects.filter(fine_tune__isnull=False, status__in=ACTIVE_JOB_STATUSES).values("fine_tune_id")
    return FineTune.objects.filter(status__in=ACTIVE_JOB_STATUSES).exclude(pk__in=waited_for).update(
        status=JobStatus.CANCELLED, error="cancelled with evaluate --cancel: no experiment waits for it", finished_at=Now()
    )
