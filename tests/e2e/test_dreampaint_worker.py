"""DreamPaint through real worker processes: one fine-tuning per product whatever the number
of experiments that need it, and a worker killed mid-fine-tuning."""
import csv
import shutil

import pytest

from evalsite import selectors
from evalsite.experiment_config import parse_experiment_config
from evalsite.models import FineTune, JobStatus
from evalsite.services.experiments import experiment_evaluate
from evalsite.services.fine_tuning import fine_tune_folder
from tests.conftest import jobs_of
from tests.e2e.test_worker_pipeline import assert_outputs_complete, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EXPERIMENT = """
name = "{name}"
dataset = "{dataset}"
seeds = [0]
num_inference_steps = {steps}
resolution = 64
batch_size = 4
metrics = []

[[methods]]
key = "DreamPaint"
family = "dreampaint"
checkpoint = "tiny/sd_inpainting"
params = {{ mode = "lora", steps = {train_steps}, rank = 4, resolution = 64 }}
"""


def evaluate(name, steps=2, train_steps=4, dataset="demo"):
    text = EXPERIMENT.format(name=name, steps=steps, train_steps=train_steps, dataset=dataset)
    return experiment_evaluate(config=parse_experiment_config(text)).experiment


def test_two_experiments_needing_a_product_fine_tune_it_once(demo_dataset, weights_dir, media_root, start_worker):
    # Two methods (their sampling steps differ) with one recipe, evaluated before any worker runs.
    first, second = evaluate("first", steps=2), evaluate("second", steps=3)
    assert FineTune.objects.count() == 6
    worker = start_worker()
    for experiment in (first, second):
        wait_until(lambda e=experiment: selectors.experiment_progress(e).finished, 240, experiment.name, worker)
        assert set(jobs_of(experiment).values_list("status", flat=True)) == {JobStatus.SUCCEEDED}
    assert_outputs_complete(first, media_root, of_all=False)
    assert_outputs_complete(second, media_root, of_all=False)
    assert FineTune.objects.count() == 6
    assert set(FineTune.objects.values_list("status", "attempts")) == {(JobStatus.SUCCEEDED, 1)}
    assert all((fine_tune_folder(f) / "pytorch_lora_weights.safetensors").is_file() for f in FineTune.objects.all())


@pytest.fixture
def one_product(media_root, demo_dataset_dir, tmp_path):
    from evalsite.services.datasets import dataset_import

    folder = shutil.copytree(demo_dataset_dir, tmp_path / "one")
    manifest = folder / "manifest.csv"
    rows = list(csv.DictReader(manifest.open()))[:1]
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dataset_import(path=folder, name="one").dataset


def test_a_worker_killed_mid_fine_tuning_leaves_no_adapter_and_the_next_goes_on(
    one_product, weights_dir, media_root, start_worker
):
    experiment = evaluate("killed", train_steps=200, dataset="one")  # long enough to be killed in the middle
    fast_recovery = dict(EVALSITE_HEARTBEAT_SECONDS=0.5, EVALSITE_STALE_SECONDS=3, EVALSITE_SWEEP_SECONDS=1)
    first = start_worker("first", **fast_recovery)

    def saved_progress():
        running = FineTune.objects.filter(status=JobStatus.RUNNING, progress_done__gte=60).first()
        return running is not None and (fine_tune_folder(running).with_name(fine_tune_folder(running).name + ".partial")
                                        / "progress.pt").is_file()

    wait_until(saved_progress, 180, "a fine-tuning past its first save", first)
    first.kill()
    killed = FineTune.objects.get(status=JobStatus.RUNNING)
    assert not fine_tune_folder(killed).exists(), "a half-trained adapter where generation jobs look"
    assert not jobs_of(experiment).filter(fine_tune=killed, status=JobStatus.SUCCEEDED).exists()

    second = start_worker("second", **fast_recovery)
    wait_until(lambda: FineTune.objects.get(pk=killed.pk).status == JobStatus.SUCCEEDED, 300, "the resumed fine-tuning", second)
    # It went on from a save (every 50 steps), not from the start.
    import re

    assert re.search(r"'resumed_from': (50|100|150)\b", second.log()), second.log()
    killed.refresh_from_db()
    assert killed.attempts == 2 and len(killed.losses) == 200
    wait_until(lambda: selectors.experiment_progress(experiment).finished, 120, "the product's images", second)
    assert_outputs_complete(experiment, media_root, of_all=False)
