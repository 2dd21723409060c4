"""Methods become identities shared between experiments (README "Method identity").

The per-experiment method rows become ExperimentMethod (an experiment's column: key and
position); a new Method row holds the identity that outputs and jobs are keyed by. Rows
from before this migration get an identity of their own per experiment ("legacy"): their
checkpoint's content was never recorded, so they are never shared with new methods, and
running `evaluate` on their file again computes the real identity.
"""
import hashlib
import json

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

SAMPLING_FREE_FAMILIES = {"copy_paste"}


def forwards(apps, schema_editor):
    ExperimentMethod = apps.get_model("evalsite", "ExperimentMethod")
    Method = apps.get_model("evalsite", "Method")
    GenerationJob = apps.get_model("evalsite", "GenerationJob")
    Output = apps.get_model("evalsite", "Output")
    for column in ExperimentMethod.objects.select_related("experiment"):
        experiment = column.experiment
        samples = column.family not in SAMPLING_FREE_FAMILIES
        payload = {
            "legacy_experiment_method": column.pk,
            "family": column.family,
            "params": column.params,
            "checkpoint": column.checkpoint,
        }
        method = Method.objects.create(
            identity=hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest(),
            family=column.family,
            params=column.params,
            checkpoint=column.checkpoint,
            checkpoint_hash="",
            num_inference_steps=experiment.num_inference_steps if samples else None,
            guidance_scale=experiment.guidance_scale if samples else None,
            resolution=experiment.resolution,
            batch_invariant=bool(experiment.config.get("batch_invariant", True)),
        )
        column.method_identity = method
        column.save(update_fields=["method_identity"])
        GenerationJob.objects.filter(method=column).update(method_identity=method, dataset_id=experiment.dataset_id)
        Output.objects.filter(method=column).update(method_identity=method)


class Migration(migrations.Migration):
    dependencies = [("evalsite", "0001_initial")]

    operations = [
        migrations.RemoveConstraint(model_name="output", name="one_output_per_method_sample_seed"),
        migrations.RenameModel(old_name="Method", new_name="ExperimentMethod"),
        migrations.CreateModel(
            name="Method",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("identity", models.CharField(max_length=64, unique=True)),
                ("family", models.CharField(max_length=50)),
                ("params", models.JSONField(default=dict)),
                ("checkpoint", models.CharField(blank=True, help_text="As written in the experiment file", max_length=1000)),
                ("checkpoint_hash", models.CharField(blank=True, max_length=64)),
                ("num_inference_steps", models.PositiveIntegerField(blank=True, null=True)),
                ("guidance_scale", models.FloatField(blank=True, null=True)),
                ("resolution", models.PositiveIntegerField()),
                ("batch_invariant", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={"ordering": ["id"]},
        ),
        migrations.AddField(
            model_name="experimentmethod",
            name="method_identity",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="evalsite.method"),
        ),
        migrations.AddField(
            model_name="generationjob",
            name="method_identity",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="evalsite.method"),
        ),
        migrations.AddField(
            model_name="generationjob",
            name="dataset",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name="jobs", to="evalsite.dataset"),
        ),
        migrations.AddField(
            model_name="output",
            name="method_identity",
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE, related_name="+", to="evalsite.method"),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
        # Drop what moved to Method, and the per-experiment links of jobs and outputs.
        migrations.AlterModelOptions(name="generationjob", options={"ordering": ["id"]}),
        migrations.AlterModelOptions(name="output", options={"ordering": ["method", "sample__sample_id", "seed"]}),
        migrations.RemoveField(model_name="experimentmethod", name="family"),
        migrations.RemoveField(model_name="experimentmethod", name="params"),
        migrations.RemoveField(model_name="experimentmethod", name="checkpoint"),
        migrations.RemoveField(model_name="generationjob", name="method"),
        migrations.RemoveField(model_name="generationjob", name="experiment"),
        migrations.RemoveField(model_name="output", name="method"),
        migrations.RenameField(model_name="experimentmethod", old_name="method_identity", new_name="method"),
        migrations.RenameField(model_name="generationjob", old_name="method_identity", new_name="method"),
        migrations.RenameField(model_name="output", old_name="method_identity", new_name="method"),
        migrations.AlterField(
            model_name="experimentmethod",
            name="method",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="experiment_methods", to="evalsite.method"),
        ),
        migrations.AlterField(
            model_name="generationjob",
            name="method",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="jobs", to="evalsite.method"),
        ),
        migrations.AlterField(
            model_name="generationjob",
            name="dataset",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="jobs", to="evalsite.dataset"),
        ),
        migrations.AlterField(
            model_name="output",
            name="method",
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="outputs", to="evalsite.method"),
        ),
        migrations.AddConstraint(
            model_name="output",
            constraint=models.UniqueConstraint(fields=("method", "sample", "seed"), name="one_output_per_method_sample_seed"),
        ),
        migrations.AlterField(
            model_name="generationjob",
            name="status",
            field=models.CharField(
                choices=[("queued", "Queued"), ("running", "Running"), ("succeeded", "Succeeded"), ("failed", "Failed"), ("cancelled", "Cancelled")],
                default="queued",
                max_length=20,
            ),
        ),
        migrations.AddIndex(
            model_name="generationjob",
            index=models.Index(fields=["method", "dataset", "seed"], name="evalsite_ge_method__85a807_idx"),
        ),
        migrations.AddField(model_name="experiment", name="cancelled_at", field=models.DateTimeField(blank=True, null=True)),
        migrations.AddField(
            model_name="experiment",
            name="updated_at",
            field=models.DateTimeField(auto_now=True, default=django.utils.timezone.now),
            preserve_default=False,
        ),
        migrations.CreateModel(
            name="FileDigest",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("path", models.CharField(max_length=1000)),
                ("size", models.BigIntegerField()),
                ("mtime_ns", models.BigIntegerField()),
                ("sha256", models.CharField(max_length=64)),
            ],
            options={"constraints": [models.UniqueConstraint(fields=("path", "size", "mtime_ns"), name="file_digest_unique")]},
        ),
        migrations.CreateModel(
            name="Worker",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=200, unique=True)),
                ("queues", models.CharField(max_length=200)),
                ("device", models.CharField(blank=True, max_length=50)),
                ("started_at", models.DateTimeField()),
                ("seen_at", models.DateTimeField()),
            ],
        ),
    ]
