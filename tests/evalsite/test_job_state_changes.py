"""Every state change of a job checks its claim and its status: a worker that lost its job
never writes an image, a row, or a status; nothing sticks running or queued forever."""
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from evalsite.models import GenerationJob, JobStatus, Output
from evalsite.services import generator_cache
from evalsite.services.generation import job_run
from evalsite.services.jobs import job_claim, job_finish, job_heartbeat, job_progress, job_release, jobs_recover
from evalsite.services.methods import method_spec
from tests.conftest import jobs_of
from tests.evalsite.test_generation_jobs import make_stale

pytestmark = pytest.mark.django_db


def test_a_worker_whose_job_was_failed_by_the_sweep_cannot_flip_it(make_experiment, settings):
    job = jobs_of(make_experiment()).first()
    job_claim(job_id=job.pk, token="slow-worker")
    make_stale(job, settings, attempts=settings.EVALSITE_MAX_ATTEMPTS)
    assert jobs_recover() == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.claim == ""  # the claim goes with the failure
    # The slow worker comes back and reports: nothing changes.
    assert job_finish(job_id=job.pk, token="slow-worker") is False
    assert job_progress(job_id=job.pk, token="slow-worker", done=3) is False
    assert job_release(job_id=job.pk, token="slow-worker") is False
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.progress_done == 0


def test_a_requeued_job_is_not_finished_by_its_old_worker(make_experiment, settings):
    job = jobs_of(make_experiment()).first()
    job_claim(job_id=job.pk, token="old")
    make_stale(job, settings)
    jobs_recover()
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.claim == ""
    assert job_finish(job_id=job.pk, token="old", error="late failure") is False
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.error.startswith("re-queued")


def test_a_finished_job_is_not_flipped_by_a_second_finish(make_experiment):
    job = jobs_of(make_experiment()).first()
    job_claim(job_id=job.pk, token="w")
    assert job_finish(job_id=job.pk, token="w") is True
    assert job_finish(job_id=job.pk, token="w", error="boom") is False
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.error == ""


def test_a_database_error_right_after_the_claim_hands_the_job_back(make_experiment, monkeypatch):
    """Whatever runs after the claim runs under the heartbeat and the error handling."""
    job = jobs_of(make_experiment(), "pbe_tiny").first()

    def broken(method):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("evalsite.services.generation.method_spec", broken)
    with pytest.raises(OperationalError):
        job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.claim == ""  # released, not left running


class ClaimStealingGenerator:
    """Wraps the real tiny generator; while it computes, another worker takes the job."""

    def __init__(self, inner, job_id):
        self.inner, self.job_id = inner, job_id

    def describe(self):
        return self.inner.describe()

    def generate(self, requests, settings):
        images = self.inner.generate(requests, settings)
        GenerationJob.objects.filter(pk=self.job_id).update(claim="thief")
        return images


def test_a_worker_that_loses_its_claim_mid_generate_writes_no_row_and_no_file(make_experiment, media_root):
    experiment = make_experiment(batch_size=6)
    job = jobs_of(experiment, "pbe_tiny").get()
    spec = method_spec(job.method)
    real = generator_cache.generator_get(spec, identity=job.method.identity)
    key = generator_cache._key(spec, True, job.method.identity)
    generator_cache._loaded[key] = ClaimStealingGenerator(real, job.pk)
    try:
        report = job_run(job_id=job.pk)
    finally:
        generator_cache._loaded.pop(key, None)
    assert report.status == "claim-lost" and report.generated == 0
    assert not Output.objects.filter(method=job.method).exists()
    outputs = media_root / "outputs"
    assert not outputs.exists() or not [p for p in outputs.rglob("*") if p.is_file()]
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.claim == "thief"  # the thief's, untouched


def test_transient_errors_that_outlast_the_retries_fail_the_job_with_a_message(make_experiment, monkeypatch):
    from evalsite.tasks import MAX_RETRIES, generate_job

    job = jobs_of(make_experiment(), "pbe_tiny").first()
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr("evalsite.services.generation._generate_missing", flaky)
    result = generate_job.apply(args=[job.pk])  # in-process; retries run inline
    assert isinstance(result.result, OperationalError)
    assert len(calls) == MAX_RETRIES + 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.claim == ""
    assert f"gave up after {MAX_RETRIES} retries of a database error (OperationalError" in job.error
    assert "run `evaluate` again" in job.error
    # And it is not sent again by the sweep (only queued jobs are).
    GenerationJob.objects.filter(pk=job.pk).update(queued_at=timezone.now() - timedelta(days=1))
    assert job.pk not in jobs_recover()


def test_a_job_heartbeat_needs_the_claim_and_the_running_status(make_experiment):
    job = jobs_of(make_experiment()).first()
    job_claim(job_id=job.pk, token="w")
    assert job_heartbeat(job_id=job.pk, token="w") is True
    assert job_heartbeat(job_id=job.pk, token="other") is False
    GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.FAILED)
    assert job_heartbeat(job_id=job.pk, token="w") is False
