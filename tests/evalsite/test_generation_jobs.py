"""The generation service run in-process on real tiny models (the worker path is in
tests/e2e): idempotency, failures a person can act on, the claim and the sweep."""
import shutil
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from PIL import Image

from evalsite.models import GenerationJob, JobStatus, Output
from evalsite.services.generation import job_run
from evalsite.services.jobs import job_claim, jobs_recover
from tests.conftest import jobs_of, outputs_of

pytestmark = pytest.mark.django_db


def run_all(experiment):
    return [job_run(job_id=job.pk) for job in jobs_of(experiment)]


def test_every_sample_method_and_seed_gets_one_output(make_experiment, media_root):
    experiment = make_experiment(seeds=(0, 7), batch_size=4)
    # 2 methods x 2 seeds x 2 batches (6 samples, 4 per batch)
    assert jobs_of(experiment).count() == 8
    reports = run_all(experiment)
    assert {r.status for r in reports} == {"succeeded"}
    assert Output.objects.count() == 2 * 2 * 6
    for output in Output.objects.all():
        with Image.open(media_root / output.image.name) as image:
            assert image.size == (64, 64) and image.mode == "RGB"
        assert output.provenance["family"] == output.method.family
        assert output.provenance["method_identity"] == output.method.identity
        assert output.provenance["seed"] == output.seed
        if output.method.family == "pbe":
            assert output.provenance["settings"]["num_inference_steps"] == 2
        else:  # copy_paste runs no sampler: steps are not part of its identity
            assert output.provenance["settings"] == {"resolution": 64}
        assert output.device == "cpu" and output.seconds > 0
    assert set(jobs_of(experiment).values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    assert all(j.progress_done == j.progress_total for j in jobs_of(experiment))


def test_rerunning_fills_only_the_gaps(make_experiment, media_root):
    experiment = make_experiment()
    run_all(experiment)
    first = {o.pk: (media_root / o.image.name).stat().st_mtime_ns for o in Output.objects.all()}
    victim = outputs_of(experiment, "pbe_tiny").first()
    victim_bytes = (media_root / victim.image.name).read_bytes()
    victim.delete()
    GenerationJob.objects.update(status=JobStatus.QUEUED)
    reports = run_all(experiment)
    assert sum(r.generated for r in reports) == 1
    assert sum(r.skipped_existing for r in reports) == len(first) - 1
    for output in Output.objects.all():
        if output.pk in first:
            assert (media_root / output.image.name).stat().st_mtime_ns == first[output.pk]
    regenerated = outputs_of(experiment, "pbe_tiny").get(sample=victim.sample, seed=victim.seed)
    assert (media_root / regenerated.image.name).read_bytes() == victim_bytes  # seeded: same image


def test_finished_jobs_are_not_run_again(make_experiment):
    experiment = make_experiment()
    run_all(experiment)
    assert {r.status for r in run_all(experiment)} == {"skipped"}


def test_a_checkpoint_missing_on_the_worker_fails_its_job_with_the_path_and_the_others_go_on(
    make_experiment, weights_dir
):
    # evaluate saw the checkpoint (it hashes it); the worker's machine does not have it.
    shutil.copytree(weights_dir / "tiny" / "pbe", weights_dir / "elsewhere")
    experiment = make_experiment(checkpoint="elsewhere", batch_size=6)
    shutil.rmtree(weights_dir / "elsewhere")
    reports = {job.method.family: job_run(job_id=job.pk) for job in jobs_of(experiment)}
    assert reports["copy_paste"].status == "succeeded"
    failed = jobs_of(experiment, "pbe_tiny").get()
    assert failed.status == JobStatus.FAILED and failed.claim == ""
    assert str(weights_dir / "elsewhere") in failed.error
    assert "unet" in failed.error  # names the layout expected
    assert outputs_of(experiment, "copy_paste").count() == 6


def test_corrupt_image_fails_its_job_naming_the_sample_and_the_rest_are_generated(make_experiment, media_root):
    experiment = make_experiment(batch_size=6)
    cup = experiment.dataset.samples.get(sample_id="coffee-cup")
    (media_root / cup.scene.name).write_bytes(b"not a png any more")
    for job in jobs_of(experiment):
        job_run(job_id=job.pk)
    for job in jobs_of(experiment):
        assert job.status == JobStatus.FAILED
        assert "sample 'coffee-cup': cannot read its images" in job.error
    assert Output.objects.count() == 2 * 5
    assert not Output.objects.filter(sample=cup).exists()


def test_a_job_held_by_a_live_worker_is_not_claimed_twice(make_experiment):
    experiment = make_experiment()
    job = jobs_of(experiment).first()
    assert job_claim(job_id=job.pk, token="a") is not None
    assert job_claim(job_id=job.pk, token="b") is None
    assert job_run(job_id=job.pk).status == "skipped"


def test_the_sweep_requeues_jobs_whose_worker_went_silent(make_experiment, settings, django_capture_on_commit_callbacks):
    experiment = make_experiment()
    silent, live = list(jobs_of(experiment)[:2])
    job_claim(job_id=silent.pk, token="dead-worker")
    job_claim(job_id=live.pk, token="live-worker")
    GenerationJob.objects.filter(pk=silent.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.EVALSITE_STALE_SECONDS + 5)
    )
    with django_capture_on_commit_callbacks() as callbacks:
        assert jobs_recover() == [silent.pk]
    assert len(callbacks) == 1  # one message re-sent, after the commit
    silent.refresh_from_db()
    assert silent.status == JobStatus.QUEUED and "dead-worker went silent" in silent.error
    live.refresh_from_db()
    assert live.status == JobStatus.RUNNING
    # The silent worker's late writes are refused: its claim is gone.
    from evalsite.services.jobs import job_heartbeat

    assert job_heartbeat(job_id=silent.pk, token="dead-worker") is False


def test_pbe_outputs_do_not_depend_on_the_batch_size(make_experiment, media_root):
    # batch_size is not part of a method's identity: with batch_invariant (the default)
    # each image is the same whatever batch it is made in. Made in batches of 1 first,
    # then removed and made again in one batch of 6 by the same experiment.
    small = make_experiment(name="batches", batch_size=1)
    run_all(small)
    first = {o.sample_id: np.asarray(Image.open(media_root / o.image.name)) for o in outputs_of(small, "pbe_tiny")}
    assert len(first) == 6
    outputs_of(small, "pbe_tiny").delete()
    large = make_experiment(name="batches", batch_size=6)
    assert large.pk == small.pk
    new_jobs = jobs_of(large, "pbe_tiny").exclude(status=JobStatus.SUCCEEDED)
    assert [job.progress_total for job in new_jobs] == [6]
    run_all(large)
    for output in outputs_of(large, "pbe_tiny"):
        b = np.asarray(Image.open(media_root / output.image.name))
        assert np.array_equal(first[output.sample_id], b), output.sample.sample_id
        assert output.provenance["batch_size"] == 6


def make_stale(job, settings, **fields):
    GenerationJob.objects.filter(pk=job.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.EVALSITE_STALE_SECONDS + 5), **fields
    )


def test_a_stale_running_job_is_taken_over_by_a_redelivered_message(make_experiment, settings):
    job = jobs_of(make_experiment()).first()
    job_claim(job_id=job.pk, token="dead-worker")
    make_stale(job, settings)
    report = job_run(job_id=job.pk)
    job.refresh_from_db()
    assert report.status == "succeeded" and job.attempts == 2 and job.status == JobStatus.SUCCEEDED


def test_a_job_whose_worker_keeps_dying_is_failed_not_retried_forever(make_experiment, settings):
    job = jobs_of(make_experiment()).first()
    job_claim(job_id=job.pk, token="dead-worker")
    make_stale(job, settings, attempts=settings.EVALSITE_MAX_ATTEMPTS)
    assert jobs_recover() == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert f"the worker stopped {settings.EVALSITE_MAX_ATTEMPTS} time(s)" in job.error and "dead-worker" in job.error


def test_a_queued_job_whose_message_is_gone_is_sent_again(
    make_experiment, settings, broker_env, django_capture_on_commit_callbacks
):
    from tests.conftest import purge_queues

    purge_queues()
    experiment = make_experiment()
    old = timezone.now() - timedelta(seconds=settings.EVALSITE_STALE_SECONDS + 5)
    lost = jobs_of(experiment).first()
    GenerationJob.objects.filter(pk=lost.pk).update(queued_at=old)
    with django_capture_on_commit_callbacks() as callbacks:
        assert jobs_recover() == [lost.pk]  # the other jobs were queued just now
    assert len(callbacks) == 1
    lost.refresh_from_db()
    assert lost.queued_at > old


class FailingGenerator:
    """Stands in for a model that breaks mid-inference (a bug, or CUDA running out of
    memory, which cannot happen on this CPU-only machine)."""

    def __init__(self, error):
        self.error = error

    def describe(self):
        return {"family": "pbe"}

    def generate(self, requests, settings):
        raise self.error


def install_generator(job, generator):
    from evalsite.services import generator_cache
    from evalsite.services.methods import method_spec

    key = generator_cache._key(method_spec(job.method), True, job.method.identity)
    generator_cache._loaded[key] = generator
    return key


def test_an_unexpected_error_fails_the_job_with_its_message(make_experiment):
    experiment = make_experiment(batch_size=6)
    job = jobs_of(experiment, "pbe_tiny").get()
    key = install_generator(job, FailingGenerator(RuntimeError("expected scalar type Half but found Float")))
    try:
        report = job_run(job_id=job.pk)
    finally:
        from evalsite.services import generator_cache

        generator_cache._loaded.pop(key, None)
    job.refresh_from_db()
    assert report.status == "failed" and job.status == JobStatus.FAILED
    assert f"unexpected error generating with method pbe {job.method.short_identity} (RuntimeError: expected scalar type Half" in job.error
    assert job_run(job_id=jobs_of(experiment, "copy_paste").get().pk).status == "succeeded"


def test_out_of_memory_names_the_setting_to_change_and_drops_the_model(make_experiment):
    import torch

    from evalsite.services import generator_cache

    experiment = make_experiment(batch_size=6)
    job = jobs_of(experiment, "pbe_tiny").get()
    key = install_generator(job, FailingGenerator(torch.cuda.OutOfMemoryError("CUDA out of memory")))
    job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert (f"out of memory on cpu generating 6 image(s) at 64 px with method pbe {job.method.short_identity}; "
            "lower batch_size (now 6)") in job.error
    assert key not in generator_cache._loaded


def test_each_model_is_loaded_once_per_process(make_experiment):
    from evalsite.services import generator_cache
    from evalsite.services.methods import method_spec

    job = jobs_of(make_experiment(), "pbe_tiny").first()
    spec = method_spec(job.method)
    first = generator_cache.generator_get(spec)
    assert generator_cache.generator_get(spec) is first
    assert generator_cache.generator_get(spec, batch_invariant=False) is not first


def test_only_old_partial_files_are_removed(media_root):
    import os
    import time as clock

    from evalsite.services.storage import remove_partials

    folder = media_root / "outputs" / "x"
    folder.mkdir(parents=True)
    old, fresh, real = folder / "a.png.1.partial", folder / "b.png.2.partial", folder / "c.png"
    for file in (old, fresh, real):
        file.write_bytes(b"x")
    os.utime(old, (clock.time() - 600, clock.time() - 600))
    assert remove_partials("outputs/x", older_than=120) == 1
    assert not old.exists() and fresh.exists() and real.exists()
