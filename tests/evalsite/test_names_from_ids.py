"""File names come from ids, never from user text: keys that sanitise alike do not
collide, odd sample ids are refused with their row, and two imports of the same data at
once leave one dataset whose files are all there."""
import threading

import pytest
from django.db import connections

from evalsite.dataset_manifest import ManifestError, read_manifest
from evalsite.experiment_config import parse_experiment_config
from evalsite.services.datasets import dataset_import
from evalsite.services.experiments import experiment_evaluate
from evalsite.services.generation import job_run
from tests.conftest import jobs_of, outputs_of
from tests.evalsite.test_import_dataset import good_row, write_dataset


@pytest.mark.django_db
def test_method_keys_that_sanitise_alike_write_different_files(demo_dataset, weights_dir, media_root):
    text = """
name = "keys"
dataset = "demo"
num_inference_steps = 2
resolution = 64
batch_size = 6
[[methods]]
key = "pbe+ft"
family = "pbe"
checkpoint = "tiny/pbe"
[[methods]]
key = "pbeft"
family = "pbe"
checkpoint = "variant"
"""
    from generators.tiny import build_tiny_pbe

    build_tiny_pbe(weights_dir / "variant", seed=3)
    experiment = experiment_evaluate(config=parse_experiment_config(text)).experiment
    for job in jobs_of(experiment):
        job_run(job_id=job.pk)
    names = {o.image.name for o in outputs_of(experiment)}
    assert len(names) == 12  # today's sanitised keys would give 6 names for 12 images
    files = {p.relative_to(media_root).as_posix() for p in (media_root / "outputs").rglob("*.png")}
    assert files == names
    assert not any("pbe" in name for name in names)  # no user text in a file name


@pytest.mark.parametrize("sample_id", [".", "..", "///", "?*"])
def test_sample_ids_that_cannot_name_a_file_are_refused_with_the_row(tmp_path, sample_id):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [good_row(folder, "fine"), {**good_row(folder, "odd"), "sample_id": sample_id}]
    with pytest.raises(ManifestError) as error:
        read_manifest(write_dataset(folder, rows))
    assert f"line 3 (sample {sample_id!r}): sample_id {sample_id!r} cannot name a file" in str(error.value)


@pytest.mark.django_db
@pytest.mark.parametrize("name", [".", "..", "a/b", "x@1"])
def test_dataset_names_that_cannot_be_referred_to_are_refused(media_root, demo_dataset_dir, name):
    with pytest.raises(ValueError, match=f"dataset name {name!r}"):
        dataset_import(path=demo_dataset_dir, name=name)


@pytest.mark.django_db(transaction=True)
def test_two_imports_of_the_same_data_at_once_leave_one_dataset_with_all_its_files(media_root, demo_dataset_dir):
    # Both imports pass the "already imported?" check and write their files before either
    # creates its row; then one wins the unique constraint.
    both_written = threading.Barrier(2, timeout=60)
    results, errors = [], []

    def run():
        def on_progress(done, total):
            if done == total:
                both_written.wait()

        try:
            results.append(dataset_import(path=demo_dataset_dir, name="demo", on_progress=on_progress))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sorted(r.created for r in results) == [False, True]
    assert results[0].dataset.pk == results[1].dataset.pk
    dataset = results[0].dataset
    stored = {p.relative_to(media_root).as_posix() for p in media_root.rglob("*.png")}
    referenced = set()
    for sample in dataset.samples.all():
        for field in ("scene", "mask", "reference", "ground_truth", "preview"):
            name = getattr(sample, field).name
            if name:
                referenced.add(name)
    assert referenced and referenced == stored  # the winner's files all there, the loser's gone
