"""Databases made before method identities keep their experiments, jobs and images."""
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("evalsite", "0001_initial")]
AFTER = [("evalsite", "0002_method_identity")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_legacy_methods_become_identities_of_their_own():
    old = migrate(BEFORE)
    try:
        dataset = old.get_model("evalsite", "Dataset").objects.create(name="d", content_hash="a" * 64, source_path="/x")
        sample = old.get_model("evalsite", "Sample").objects.create(
            dataset=dataset, sample_id="s1", scene="s.png", mask="m.png", reference="r.png", width=8, height=8
        )
        experiments = old.get_model("evalsite", "Experiment").objects
        methods = old.get_model("evalsite", "Method").objects
        jobs = old.get_model("evalsite", "GenerationJob").objects
        outputs = old.get_model("evalsite", "Output").objects
        made = {}
        for name in ("one", "two"):  # the same method in two experiments stays two identities
            experiment = experiments.create(
                name=name, dataset=dataset, config={"batch_invariant": True}, config_hash="h", seeds=[0],
                num_inference_steps=7, guidance_scale=3.0, resolution=64, batch_size=1,
            )
            method = methods.create(experiment=experiment, key="pbe", family="pbe", params={"encoder": "clip_cls"},
                                    checkpoint="tiny/pbe", position=0)
            job = jobs.create(experiment=experiment, method=method, seed=0, status="succeeded", progress_total=1)
            job.samples.set([sample])
            output = outputs.create(method=method, sample=sample, seed=0, job=job, image=f"outputs/{name}.png",
                                    device="cpu", seconds=1.0)
            made[name] = (method.pk, job.pk, output.pk)

        new = migrate(AFTER)
        columns = new.get_model("evalsite", "ExperimentMethod").objects
        identities = set()
        for name, (column_id, job_id, output_id) in made.items():
            column = columns.select_related("method", "experiment").get(pk=column_id)
            assert column.key == "pbe" and column.experiment.name == name
            method = column.method
            assert (method.family, method.params, method.checkpoint) == ("pbe", {"encoder": "clip_cls"}, "tiny/pbe")
            assert (method.num_inference_steps, method.guidance_scale, method.resolution) == (7, 3.0, 64)
            assert method.checkpoint_hash == ""  # unknown: never shared, never checked
            job = new.get_model("evalsite", "GenerationJob").objects.get(pk=job_id)
            assert job.method_id == method.pk and job.dataset_id == dataset.pk
            assert list(job.samples.values_list("sample_id", flat=True)) == ["s1"]
            assert new.get_model("evalsite", "Output").objects.get(pk=output_id).method_id == method.pk
            identities.add(method.identity)
        assert len(identities) == 2
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
