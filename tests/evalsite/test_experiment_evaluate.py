"""Evaluating experiment files: method identities, experiments that grow, outputs shared by
identity, cancelling, and job creation in a few bulk queries."""
import shutil

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from evalsite.experiment_config import parse_experiment_config
from evalsite.models import FileDigest, GenerationJob, JobStatus, Method, Output
from evalsite.services.experiments import ExperimentError, experiment_cancel, experiment_evaluate
from evalsite.services.generation import job_run
from evalsite.services.methods import checkpoint_identity
from tests.conftest import jobs_of, outputs_of

pytestmark = pytest.mark.django_db

BASE = """
name = "{name}"
dataset = "{dataset}"
seeds = {seeds}
num_inference_steps = {steps}
resolution = 64
batch_size = {batch_size}
"""


def config(name="exp", seeds=(0,), steps=2, batch_size=6, dataset="demo", methods=(("copy_paste", "copy_paste", ""),
                                                                                 ("pbe", "pbe", "tiny/pbe"))):
    text = BASE.format(name=name, dataset=dataset, seeds=list(seeds), steps=steps, batch_size=batch_size)
    for key, family, checkpoint in methods:
        text += f'\n[[methods]]\nkey = "{key}"\nfamily = "{family}"\n'
        if checkpoint:
            text += f'checkpoint = "{checkpoint}"\n'
    return parse_experiment_config(text)


@pytest.fixture
def ready(demo_dataset, weights_dir, media_root):
    return weights_dir


def run_jobs(experiment):
    for job in jobs_of(experiment):
        job_run(job_id=job.pk)


def test_identity_covers_family_params_checkpoint_content_and_pixel_settings(ready):
    base = experiment_evaluate(config=config()).experiment
    pbe = base.methods.get(key="pbe").method
    copy = base.methods.get(key="copy_paste").method
    assert pbe.checkpoint_hash == checkpoint_identity(ready / "tiny" / "pbe") and len(pbe.identity) == 64
    # Steps change the sampler's pixels: a new pbe identity, the same copy_paste one.
    other = experiment_evaluate(config=config(name="more-steps", steps=3)).experiment
    assert other.methods.get(key="pbe").method != pbe
    assert other.methods.get(key="copy_paste").method == copy
    # The same weights at another path: the same identity.
    shutil.copytree(ready / "tiny" / "pbe", ready / "copied")
    moved = experiment_evaluate(config=config(name="moved", methods=[("p", "pbe", "copied")])).experiment
    assert moved.methods.get().method == pbe


def test_weights_rewritten_at_the_same_path_are_a_new_identity_and_never_mixed(ready, settings):
    from generators.tiny import build_tiny_pbe

    shutil.copytree(ready / "tiny" / "pbe", ready / "mine")
    first = experiment_evaluate(config=config(methods=[("pbe", "pbe", "mine")])).experiment
    old = first.methods.get().method
    # Retrained in place before the queued job ran: the worker refuses to mix.
    shutil.rmtree(ready / "mine")
    build_tiny_pbe(ready / "mine", seed=7)
    job = jobs_of(first).get()
    job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "changed since this method was queued" in job.error
    assert not Output.objects.exists()
    # evaluate again: the key now names the new identity, whose images are made afresh.
    report = experiment_evaluate(config=config(methods=[("pbe", "pbe", "mine")]))
    assert [(c.key, c.change) for c in report.changes] == [("pbe", "changed")]
    assert report.changes[0].previous_identity == old.identity and report.changes[0].images == 6
    run_jobs(report.experiment)
    assert outputs_of(report.experiment).count() == 6
    assert not Output.objects.filter(method=old).exists()


def test_file_digests_are_computed_once_and_redone_when_a_file_changes(ready):
    checkpoint = ready / "digest-me"
    shutil.copytree(ready / "tiny" / "pbe", checkpoint)
    first = checkpoint_identity(checkpoint)
    count = FileDigest.objects.count()
    assert count >= 5
    with CaptureQueriesContext(connection) as queries:
        assert checkpoint_identity(checkpoint) == first
    assert not [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    config_file = checkpoint / "unet" / "config.json"
    config_file.write_text(config_file.read_text() + " ")
    assert checkpoint_identity(checkpoint) != first
    assert FileDigest.objects.count() == count  # the old entry of that file is replaced
    (checkpoint / ".cache").mkdir()  # download caches are not weights
    (checkpoint / ".cache" / "lock").write_text("x")
    assert checkpoint_identity(checkpoint) == checkpoint_identity(checkpoint)


def test_a_second_experiment_with_the_same_baseline_generates_nothing_for_it(ready):
    a = experiment_evaluate(config=config(name="a")).experiment
    run_jobs(a)
    report = experiment_evaluate(config=config(name="b", methods=[("pbe_again", "pbe", "tiny/pbe"), ("cp", "copy_paste", "")]))
    assert report.created and report.images_missing == 0 and report.jobs_created == 0
    assert outputs_of(report.experiment).count() == 12


def test_editing_the_file_adds_changes_and_removes_columns_and_seeds(ready):
    first = experiment_evaluate(config=config(seeds=(0, 1))).experiment
    for job in jobs_of(first, "copy_paste").filter(seed=1):
        job_run(job_id=job.pk)
    report = experiment_evaluate(config=config(seeds=(1, 2, 3), steps=3, methods=[("pbe", "pbe", "tiny/pbe"), ("extra", "copy_paste", "")]))
    experiment = report.experiment
    assert not report.created
    changes = {c.key: c for c in report.changes}
    assert changes["pbe"].change == "changed" and changes["pbe"].images == 3 * 6
    assert changes["copy_paste"].change == "removed" and changes["copy_paste"].images == 2 * 6  # seeds 0, 1
    # copy_paste under a new key is the same identity (steps do not change its pixels):
    # its seed 1 images exist, seeds 2 and 3 are to make.
    assert changes["extra"].change == "added" and changes["extra"].images == 2 * 6
    assert report.seeds_added == [2, 3] and report.seeds_removed == [0]
    assert list(experiment.methods.values_list("key", flat=True)) == ["pbe", "extra"]
    assert experiment.seeds == [1, 2, 3] and experiment.num_inference_steps == 3
    # The queued jobs of what left (old pbe identity: seeds 0 and 1; copy_paste seed 0) stop;
    # copy_paste seed 1 was done, and the new column "extra" (same identity) needs seed 1.
    assert report.jobs_cancelled == 3
    cancelled = GenerationJob.objects.filter(status=JobStatus.CANCELLED)
    assert sorted(cancelled.values_list("method__family", "seed")) == [("copy_paste", 0), ("pbe", 0), ("pbe", 1)]


def test_the_command_says_which_keys_changed_and_what_it_costs(ready, tmp_path, capsys):
    file = tmp_path / "e.toml"
    text = BASE.format(name="cli", dataset="demo", seeds=[0], steps=2, batch_size=6) + (
        '[[methods]]\nkey = "copy_paste"\nfamily = "copy_paste"\n[[methods]]\nkey = "pbe"\nfamily = "pbe"\ncheckpoint = "tiny/pbe"\n'
    )
    file.write_text(text)
    call_command("evaluate", str(file))
    out = capsys.readouterr().out
    assert "experiment 'cli' created" in out and "12 image(s) in all: 0 exist, 12 to generate; 2 new job(s)" in out
    assert "method 'pbe': hashing " in out and "once per version of the weights" in out
    call_command("evaluate", str(file))
    out = capsys.readouterr().out
    assert "is up to date with its file" in out and "hashing" not in out  # digests are cached
    file.write_text(text.replace("num_inference_steps = 2", "num_inference_steps = 4"))
    call_command("evaluate", str(file))
    out = capsys.readouterr().out
    assert "~ pbe: changed (method " in out and "6 image(s) to generate; the old images stay stored" in out
    assert "copy_paste" not in out  # its identity did not change


def test_changing_the_dataset_of_an_experiment_is_refused(ready, demo_dataset_dir):
    from evalsite.services.datasets import dataset_import

    experiment_evaluate(config=config())
    dataset_import(path=demo_dataset_dir, name="other")
    with pytest.raises(ExperimentError, match="uses dataset demo@.*An experiment's dataset cannot change"):
        experiment_evaluate(config=config(dataset="other"))


def test_thousands_of_jobs_are_created_in_a_few_bulk_queries(ready):
    seeds = tuple(range(200))  # 2 methods x 6 samples x 200 seeds, one sample per job
    with CaptureQueriesContext(connection) as queries:
        report = experiment_evaluate(config=config(seeds=seeds, batch_size=1))
    assert report.jobs_created == 2 * 6 * 200 == GenerationJob.objects.count()
    assert GenerationJob.samples.through.objects.count() == 2400
    # Bulk inserts: one on PostgreSQL, batches of 999 parameters on SQLite; never a
    # query (let alone three) per job.
    assert len(queries.captured_queries) < 2400 / 25, len(queries.captured_queries)


def test_cancel_stops_queued_work_but_not_what_another_experiment_needs(ready):
    a = experiment_evaluate(config=config(name="a", seeds=(0, 1))).experiment
    experiment_evaluate(config=config(name="b", seeds=(1,), methods=[("pbe", "pbe", "tiny/pbe")]))
    running = jobs_of(a).filter(seed=0).first()
    from evalsite.services.jobs import job_claim

    job_claim(job_id=running.pk, token="w")
    report = experiment_cancel(name="a")
    # seed 1 of pbe is b's too; everything else of a's is cancelled; the running job stops.
    assert report.kept_for_others == 1 and report.stopping == 1 and report.cancelled == 2
    statuses = dict(jobs_of(a).values_list("pk", "status"))
    assert statuses[running.pk] == JobStatus.CANCELLED
    assert jobs_of(a).get(seed=1, method__family="pbe").status == JobStatus.QUEUED
    # A worker told to stop writes the batch in hand, then lets go.
    assert job_run(job_id=running.pk).status == "skipped"  # a cancelled job is not taken up
    # evaluate again resumes it; the job its worker still holds simply goes on.
    report = experiment_evaluate(config=config(name="a", seeds=(0, 1)))
    assert report.experiment.cancelled_at is None
    assert jobs_of(a).filter(status=JobStatus.CANCELLED).count() == 0
    running.refresh_from_db()
    assert running.status == JobStatus.RUNNING and running.claim == "w"


def test_a_job_cancelled_while_running_keeps_the_batch_in_hand_and_stops(ready):
    experiment = experiment_evaluate(config=config(batch_size=3, methods=[("pbe", "pbe", "tiny/pbe")])).experiment
    from evalsite.services import generator_cache
    from evalsite.services.methods import method_spec

    job = jobs_of(experiment).first()
    spec = method_spec(job.method)
    real = generator_cache.generator_get(spec, identity=job.method.identity)

    class CancelledMidway:
        def describe(self):
            return real.describe()

        def generate(self, requests, settings):
            experiment_cancel(name="exp")
            return real.generate(requests, settings)

    key = generator_cache._key(spec, True, job.method.identity)
    generator_cache._loaded[key] = CancelledMidway()
    try:
        report = job_run(job_id=job.pk)
    finally:
        generator_cache._loaded.pop(key, None)
    assert report.status == "cancelled" and report.generated == 3
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.claim == "" and job.progress_done == 3
    assert Output.objects.count() == 3


def test_experiments_command_lists_progress_and_status(ready, capsys):
    experiment = experiment_evaluate(config=config(name="listed")).experiment
    for job in jobs_of(experiment).filter(method__family="copy_paste"):
        job_run(job_id=job.pk)
    call_command("experiments")
    out = capsys.readouterr().out
    assert "listed" in out and "6/12 (50%)" in out and "in progress" in out
    call_command("evaluate", cancel="listed")
    assert "1 queued job(s) will not run" in capsys.readouterr().out
    call_command("experiments")
    assert "cancelled" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no experiment named 'nope'"):
        call_command("evaluate", cancel="nope")


def test_a_missing_checkpoint_is_refused_before_any_job_naming_it(ready):
    with pytest.raises(ExperimentError) as error:
        experiment_evaluate(config=config(methods=[("pbe", "pbe", "no/such/thing")]))
    assert str(ready / "no/such/thing") in str(error.value) and "unet" in str(error.value)
    assert not GenerationJob.objects.exists() and not Method.objects.exists()


DTC_AND_PBE = BASE.format(name="tables", dataset="demo", seeds=[0], steps=2, batch_size=6).replace(
    "num_inference_steps = 2\n", "") + """
[[methods]]
key = "PBE_best"
family = "pbe"
checkpoint = "tiny/pbe_dinov2_perceptual"
params = {{ encoder = "dinov2" }}

[[methods]]
key = "DTC"
family = "dtc"
checkpoint = "tiny/dtc_film"
params = {{ fusion = "{fusion}" }}
num_inference_steps = 2
"""


def test_dtc_and_pbe_variants_run_with_their_own_steps(ready):
    experiment = experiment_evaluate(config=parse_experiment_config(DTC_AND_PBE.format(fusion="film"))).experiment
    dtc = experiment.methods.get(key="DTC").method
    pbe = experiment.methods.get(key="PBE_best").method
    assert (dtc.family, dtc.params, dtc.num_inference_steps) == ("dtc", {"fusion": "film"}, 2)
    assert (pbe.params, pbe.num_inference_steps) == ({"encoder": "dinov2"}, 50)  # PBE's own default
    for job in jobs_of(experiment).filter(method=dtc):
        job_run(job_id=job.pk)
    outputs = outputs_of(experiment).filter(method=dtc)
    assert outputs.count() == 6
    from PIL import Image

    for output in outputs:
        with output.image.open("rb") as handle:
            assert Image.open(handle).size == (64, 64)


def test_a_dtc_checkpoint_of_another_fusion_is_refused_before_any_job(ready):
    with pytest.raises(ExperimentError) as error:
        experiment_evaluate(config=parse_experiment_config(DTC_AND_PBE.format(fusion="addition")))
    assert "method 'DTC'" in str(error.value)
    assert "its fusion layers are 'film' (hint/config.json), the method asks for fusion = 'addition'" in str(error.value)
    assert not GenerationJob.objects.exists() and not Method.objects.exists()
