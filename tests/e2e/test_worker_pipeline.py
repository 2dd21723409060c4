"""Real worker processes, the real broker (Redis in CI, the embedded filesystem broker
otherwise) and the real database, from import to images on disk."""
import time

import pytest
from django.db import connection
from PIL import Image

from evalsite import selectors
from evalsite.models import GenerationJob, JobStatus, Output
from evalsite.services.experiments import experiment_enqueue
from evalsite.services.storage import PARTIAL_SUFFIX

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def wait_until(predicate, timeout, what, worker=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection.close()  # see other processes' commits with a fresh connection
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\nworker log:\n{worker.log()}" if worker else ""))


def assert_outputs_complete(experiment, media_root):
    expected = selectors.experiment_progress(experiment).expected
    outputs = list(Output.objects.filter(method__experiment=experiment))
    assert len(outputs) == expected
    assert len({(o.method_id, o.sample_id, o.seed) for o in outputs}) == expected
    for output in outputs:
        with Image.open(media_root / output.image.name) as image:
            image.verify()  # a truncated or corrupt PNG raises here
    on_disk = sorted(p for p in (media_root / "outputs").rglob("*") if p.is_file())
    assert not [p for p in on_disk if p.name.endswith(PARTIAL_SUFFIX)]
    assert sorted(media_root / o.image.name for o in outputs) == on_disk


def test_import_to_outputs_through_a_real_worker(make_experiment, media_root, start_worker):
    experiment = make_experiment(seeds=(0, 1), batch_size=3)
    worker = start_worker()
    experiment_enqueue(experiment=experiment)
    wait_until(lambda: selectors.experiment_progress(experiment).finished, 180, "the experiment", worker)
    assert set(experiment.jobs.values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    assert_outputs_complete(experiment, media_root)
    assert Output.objects.filter(method__experiment=experiment).count() == 2 * 2 * 6


def test_sigkill_mid_job_then_a_new_worker_finishes_everything_exactly_once(make_experiment, media_root, start_worker):
    # Enough work that the kill lands in the middle: 2 methods x 3 seeds x 6 samples.
    experiment = make_experiment(name="kill", seeds=(0, 1, 2), batch_size=2, steps=8, resolution=128)
    fast_recovery = dict(EVALSITE_HEARTBEAT_SECONDS=0.5, EVALSITE_STALE_SECONDS=3, EVALSITE_SWEEP_SECONDS=1)
    first = start_worker("first", **fast_recovery)
    experiment_enqueue(experiment=experiment)
    total = selectors.experiment_progress(experiment).expected

    def some_pbe_outputs_exist():
        return Output.objects.filter(method__experiment=experiment, method__key="pbe_tiny").count() >= 2

    wait_until(some_pbe_outputs_exist, 180, "the first outputs", first)
    first.kill()
    done_at_kill = Output.objects.filter(method__experiment=experiment).count()
    assert done_at_kill < total, "the experiment finished before the kill; give it more work"
    assert GenerationJob.objects.filter(experiment=experiment, status=JobStatus.RUNNING).exists()

    second = start_worker("second", **fast_recovery)
    wait_until(lambda: selectors.experiment_progress(experiment).finished, 240, "recovery", second)
    assert set(experiment.jobs.values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    assert_outputs_complete(experiment, media_root)
    retried = GenerationJob.objects.filter(experiment=experiment, attempts__gte=2)
    assert retried.exists()  # the sweep handed the killed job to the new worker
