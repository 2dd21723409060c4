"""The job life cycle on the rows: claim, heartbeat, finish, fail, and the recovery sweep,
for both kinds of job (generation and metrics; `model` says which).

The rows are what recovery trusts: a killed worker's broker message may be gone (the
filesystem broker deletes it on fetch) or held for the whole visibility timeout (Redis).
Every time comparison uses the database's clock, so workers on hosts whose clocks
disagree do not see each other's live jobs as stale.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Now

from evalsite.dispatch import send_fine_tune_job, send_generation_job, send_metric_job
from evalsite.models import FineTune, GenerationJob, JobStatus, MetricJob
from evalsite.queues import CPU_QUEUE, GPU_QUEUE
from evalsite.services.broker import broker_queue_size
from evalsite.services.fine_tune_waits import fine_tune_ended, fine_tunes_recover, waiting_experiments_lock
from evalsite.services.metric_requests import experiments_lock, metrics_request_when_generated

log = logging.getLogger(__name__)


def new_claim_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _stale_cutoff():
    return Now() - timedelta(seconds=settings.EVALSITE_STALE_SECONDS)


# Per kind of job: what the claim brings along, how it is sent, its queue, how to retry.
_KINDS = {
    GenerationJob: (("method", "fine_tune"), send_generation_job, GPU_QUEUE, "run `evaluate` again"),
    MetricJob: (("experiment",), send_metric_job, CPU_QUEUE, "run `compute_metrics` again"),
    FineTune: (("dataset",), send_fine_tune_job, GPU_QUEUE, "run `evaluate` again"),
}


def _gave_up_message(job) -> str:
    return (
        f"the worker stopped {job.attempts} time(s) while running this job (killed, out of host "
        f"memory, or crashed; last worker {job.claim or 'unknown'}); see that worker's log, fix the "
        f"cause, then {_KINDS[type(job)][3]} to retry"
    )


def job_claim(*, job_id: int, token: str, model=GenerationJob):
    """Take the job for this worker, or None when it is finished, failed, cancelled, or
    held by a worker whose heartbeat is still fresh (a duplicate or redelivered message)."""
    with transaction.atomic():
        seen = model.objects.filter(pk=job_id).first()
        if seen is None:
            log.warning("%s %s no longer exists; message dropped", model.__name__, job_id)
            return None
        if seen.status == JobStatus.RUNNING and seen.attempts >= settings.EVALSITE_MAX_ATTEMPTS:
            _lock_experiments_of(seen)  # it may be failed below: the locks' order first
        job = model.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            return None
        if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
            return None
        if job.status == JobStatus.RUNNING:
            if model.objects.filter(pk=job_id, heartbeat_at__gte=_stale_cutoff()).exists():
                return None
            if job.attempts >= settings.EVALSITE_MAX_ATTEMPTS:
                _fail(job, _gave_up_message(job))
                return None
        model.objects.filter(pk=job_id).update(
            status=JobStatus.RUNNING,
            claim=token,
            attempts=F("attempts") + 1,
            started_at=Now(),
            heartbeat_at=Now(),
            finished_at=None,
            error="",
        )
        # The method comes with the job: nothing between the claim and the heartbeat
        # needs the database again.
        return model.objects.select_related(*_KINDS[model][0]).get(pk=job_id)


def job_heartbeat(*, job_id: int, token: str, model=GenerationJob) -> bool:
    """False when the claim was lost (the sweep handed the job to someone else)."""
    return bool(model.objects.filter(pk=job_id, claim=token, status=JobStatus.RUNNING).update(heartbeat_at=Now()))


def job_may_write(*, job_id: int, token: str) -> bool:
    """Before writing outputs: the job is still ours. A job cancelled while running is
    still ours for the batch in hand (cancelling lets running jobs finish it)."""
    return bool(
        GenerationJob.objects.filter(
            pk=job_id, claim=token, status__in=[JobStatus.RUNNING, JobStatus.CANCELLED]
        ).update(heartbeat_at=Now())
    )


def job_progress(*, job_id: int, token: str, done: int) -> bool:
    """False when the job is no longer ours to go on with (claim lost, or cancelled)."""
    return bool(
        GenerationJob.objects.filter(pk=job_id, claim=token, status=JobStatus.RUNNING).update(
            progress_done=done, heartbeat_at=Now()
        )
    )


def job_finish(*, job_id: int, token: str, error: str = "", model=GenerationJob) -> bool:
    return bool(
        model.objects.filter(pk=job_id, claim=token, status=JobStatus.RUNNING).update(
            status=JobStatus.FAILED if error else JobStatus.SUCCEEDED,
            claim="",
            error=error,
            finished_at=Now(),
            heartbeat_at=Now(),
        )
    )


def job_stop_cancelled(*, job_id: int, token: str, done: int) -> bool:
    """A worker whose job was cancelled under it lets go of it."""
    return bool(
        GenerationJob.objects.filter(pk=job_id, claim=token, status=JobStatus.CANCELLED).update(
            claim="", progress_done=done, finished_at=Now()
        )
    )


def job_release(*, job_id: int, token: str, model=GenerationJob) -> bool:
    """Hand the job back to the queue (a transient error; the task will be retried, and
    the sweep re-sends it should the retry message be lost)."""
    return bool(
        model.objects.filter(pk=job_id, claim=token, status=JobStatus.RUNNING).update(
            status=JobStatus.QUEUED, claim="", queued_at=Now()
        )
    )


def job_fail_queued(*, job_id: int, message: str, model=GenerationJob) -> bool:
    """Fail a job that waits in the queue (its transient-error retries ran out); a job
    some worker has claimed again meanwhile is left to that worker."""
    with transaction.atomic():
        job = model.objects.filter(pk=job_id).first()
        if job is None:
            return False
        _lock_experiments_of(job)
        failed = bool(
            model.objects.filter(pk=job_id, status=JobStatus.QUEUED, claim="").update(
                status=JobStatus.FAILED, error=message, finished_at=Now()
            )
        )
        if failed:
            _generation_ended(job)
        return failed


def _fail(job, message: str) -> None:
    """Called inside a transaction (the claim's, the sweep's) that locked the job's
    experiments before its row."""
    if type(job).objects.filter(pk=job.pk, status=JobStatus.RUNNING, claim=job.claim).update(
        status=JobStatus.FAILED, claim="", error=message, finished_at=Now()
    ):
        _generation_ended(job)


def _lock_experiments_of(job) -> None:
    if isinstance(job, GenerationJob):  # before the job's row, as a job's own end does
        experiments_lock(method_id=job.method_id, dataset_id=job.dataset_id)
    elif isinstance(job, FineTune):
        waiting_experiments_lock(job)


def _generation_ended(job) -> None:
    """A generation job that ended by failing may have been its experiments' last: their
    metrics are queued, as when a job ends on its own. A failed fine-tuning fails the
    generation jobs waiting for it."""
    if isinstance(job, GenerationJob):
        metrics_request_when_generated(method_id=job.method_id, dataset_id=job.dataset_id)
    elif isinstance(job, FineTune):
        fine_tune_ended(job)


def jobs_recover() -> list[int]:
    """Re-queue running jobs whose worker went silent (or fail them after
    EVALSITE_MAX_ATTEMPTS), and re-send queued jobs whose message was lost: queued for
    longer than EVALSITE_STALE_SECONDS while the broker's queue is empty. Duplicate
    messages are harmless: a job is claimed once. Generation and metric jobs alike."""
    acted: list[int] = []
    for model, (_, send, queue, _) in _KINDS.items():
        acted += _recover(model, send, queue)
    return acted + fine_tunes_recover()


def _recover(model, send, queue) -> list[int]:
    acted: list[int] = []
    silent = model.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=_stale_cutoff())
    for seen in silent:
        # One transaction a job; a job's experiments are locked before its row (the order
        # a job's own end and `evaluate --cancel` take them in).
        with transaction.atomic():
            if seen.attempts >= settings.EVALSITE_MAX_ATTEMPTS:
                _lock_experiments_of(seen)
            job = model.objects.select_for_update(skip_locked=True).filter(
                pk=seen.pk, status=JobStatus.RUNNING, heartbeat_at__lt=_stale_cutoff()
            ).first()
            if job is None:
                continue  # it beat again, or another sweep has it
            acted.append(job.pk)
            if job.attempts >= settings.EVALSITE_MAX_ATTEMPTS:
                log.error("%s: giving up after %s attempts", job, job.attempts)
                _fail(job, _gave_up_message(job))
                continue
            log.warning("%s: worker %s silent since %s; re-queuing", job, job.claim, job.heartbeat_at)
            model.objects.filter(pk=job.pk, status=JobStatus.RUNNING, claim=job.claim).update(
                status=JobStatus.QUEUED,
                claim="",
                queued_at=Now(),
                error=f"re-queued: worker {job.claim} went silent (last heartbeat {job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)",
            )
            send(job.pk)

    waiting = model.objects.filter(status=JobStatus.QUEUED, queued_at__lt=_stale_cutoff())
    # Subqueries, not joins: PostgreSQL refuses FOR UPDATE on the nullable side of an outer join.
    if model is GenerationJob:  # one waiting for its fine-tuning is sent when that succeeds
        done = FineTune.objects.filter(status=JobStatus.SUCCEEDED).values("pk")
        waiting = waiting.filter(Q(fine_tune_id__isnull=True) | Q(fine_tune_id__in=done))
    elif model is FineTune:  # one that no generation job waits for (any more) is left alone
        waiting = waiting.filter(pk__in=GenerationJob.objects.filter(status=JobStatus.QUEUED).values("fine_tune_id"))
    if waiting.exists() and broker_queue_size(queue) == 0:
        with transaction.atomic():
            for job in waiting.select_for_update(skip_locked=True):
                log.warning("%s: queued but its message is gone; sending it again", job)
                model.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(queued_at=Now())
                send(job.pk)
                acted.append(job.pk)
    return acted


class Heartbeat:
    """Beats for a running job from a side thread, so that a long batch on the GPU
    still looks alive. `lost` turns true when the claim is no longer ours."""

    def __init__(self, *, job_id: int, token: str, interval: float | None = None, model=GenerationJob):
        self.model = model
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
                    if not job_heartbeat(job_id=self.job_id, token=self.token, model=self.model):
                        self.lost = True
                        return
                except Exception:  # a database blip must not kill the beat
                    log.exception("heartbeat for job %s failed", self.job_id)
                    close_old_connections()
        finally:
            connection.close()


def transient_gave_up_message(exc: BaseException, retries: int, model=GenerationJob) -> str:
    return (
        f"gave up after {retries} retries of a database error ({type(exc).__name__}: {exc}); check that "
        f"the workers reach the database (DATABASE_URL), then {_KINDS[model][3]} to retry"
    )
