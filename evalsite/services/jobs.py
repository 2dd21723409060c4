"""The job life cycle on the rows: claim, heartbeat, finish, fail, and the sweep that
re-queues jobs whose worker went silent (a killed worker's broker message may be gone
or held for the whole visibility timeout; the rows are what recovery trusts)."""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from evalsite.models import GenerationJob, JobStatus

log = logging.getLogger(__name__)


def new_claim_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def job_claim(*, job_id: int, token: str) -> GenerationJob | None:
    """Take the job for this worker, or None when it is finished, failed, or held by a
    worker whose heartbeat is still fresh (a duplicate or redelivered message)."""
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.EVALSITE_STALE_SECONDS)
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            log.warning("job %s no longer exists; message dropped", job_id)
            return None
        if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            return None
        if job.status == JobStatus.RUNNING and job.heartbeat_at and job.heartbeat_at >= stale_before:
            return None
        job.status = JobStatus.RUNNING
        job.claim = token
        job.attempts += 1
        job.started_at = now
        job.heartbeat_at = now
        job.finished_at = None
        job.save(update_fields=["status", "claim", "attempts", "started_at", "heartbeat_at", "finished_at"])
        return job


def job_heartbeat(*, job_id: int, token: str) -> bool:
    """False when the claim was lost (the sweep handed the job to someone else)."""
    return bool(
        GenerationJob.objects.filter(pk=job_id, claim=token, status=JobStatus.RUNNING).update(
            heartbeat_at=timezone.now()
        )
    )


def job_progress(*, job_id: int, token: str, done: int) -> bool:
    return bool(
        GenerationJob.objects.filter(pk=job_id, claim=token, status=JobStatus.RUNNING).update(
            progress_done=done, heartbeat_at=timezone.now()
        )
    )


def job_finish(*, job_id: int, token: str, error: str = "") -> None:
    GenerationJob.objects.filter(pk=job_id, claim=token).update(
        status=JobStatus.FAILED if error else JobStatus.SUCCEEDED,
        error=error,
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )


def job_release(*, job_id: int, token: str) -> None:
    """Hand the job back to the queue (a transient error; the task will be retried)."""
    GenerationJob.objects.filter(pk=job_id, claim=token).update(status=JobStatus.QUEUED, claim="")


def jobs_requeue_stale() -> list[int]:
    from evalsite.tasks import generate_job

    cutoff = timezone.now() - timedelta(seconds=settings.EVALSITE_STALE_SECONDS)
    with transaction.atomic():
        stale = list(
            GenerationJob.objects.select_for_update(skip_locked=True).filter(
                status=JobStatus.RUNNING, heartbeat_at__lt=cutoff
            )
        )
        for job in stale:
            log.warning("job %s: worker %s silent since %s; re-queuing", job.pk, job.claim, job.heartbeat_at)
            job.error = f"re-queued: worker {job.claim} went silent (last heartbeat {job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)"
            job.status = JobStatus.QUEUED
            job.claim = ""
            job.save(update_fields=["status", "claim", "error"])
            generate_job.delay_on_commit(job.pk)
    return [job.pk for job in stale]


class Heartbeat:
    """Beats for a running job from a side thread, so that a long batch on the GPU
    still looks alive. `lost` turns true when the claim is no longer ours."""

    def __init__(self, *, job_id: int, token: str, interval: float | None = None):
        self.job_id = job_id
        self.token = token
        self.interval = interval or settings.EVALSITE_HEARTBEAT_SECONDS
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _run(self):
        try:
            while not self._stop.wait(self.interval):
                try:
                    if not job_heartbeat(job_id=self.job_id, token=self.token):
                        self.lost = True
                        return
                except Exception:  # a database blip must not kill the beat
                    log.exception("heartbeat for job %s failed", self.job_id)
                    close_old_connections()
        finally:
            connection.close()
