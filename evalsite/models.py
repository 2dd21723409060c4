"""The experiment data model. Rows are the truth: the broker only carries job ids."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Dataset(models.Model):
    name = models.CharField(max_length=200)
    # sha256 over the manifest rows and every file's bytes: the dataset's version.
    content_hash = models.CharField(max_length=64)
    source_path = models.CharField(max_length=1000, help_text="Folder it was imported from")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "content_hash"], name="dataset_name_version_unique")
        ]
        ordering = ["name", "-created_at"]

    def __str__(self):
        return f"{self.name}@{self.version}"

    @property
    def version(self) -> str:
        return self.content_hash[:12]


class Sample(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="samples")
    sample_id = models.CharField(max_length=200)
    scene = models.FileField(max_length=500)
    mask = models.FileField(max_length=500)
    reference = models.FileField(max_length=500)
    ground_truth = models.FileField(max_length=500, blank=True)
    preview = models.FileField(max_length=500, blank=True, help_text="Scene with the mask outlined")
    product_id = models.CharField(max_length=200, blank=True)
    caption = models.TextField(blank=True)
    category = models.CharField(max_length=200, blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "sample_id"], name="sample_id_unique_in_dataset")
        ]
        ordering = ["dataset", "sample_id"]

    def __str__(self):
        return self.sample_id


class Experiment(models.Model):
    name = models.CharField(max_length=200, unique=True)
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="experiments")
    config = models.JSONField(help_text="The experiment file as parsed")
    config_hash = models.CharField(max_length=64)
    seeds = models.JSONField()
    num_inference_steps = models.PositiveIntegerField()
    guidance_scale = models.FloatField()
    resolution = models.PositiveIntegerField()
    batch_size = models.PositiveIntegerField()
    metrics = models.JSONField(default=list)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name


class Method(models.Model):
    """A model variant inside one experiment. `family` is a stable registry key."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="methods")
    key = models.CharField(max_length=100)
    family = models.CharField(max_length=50)
    params = models.JSONField(default=dict)
    checkpoint = models.CharField(max_length=1000, blank=True)
    position = models.PositiveIntegerField(default=0, help_text="Column order in tables")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "key"], name="method_key_unique_in_experiment")
        ]
        ordering = ["experiment", "position"]

    def __str__(self):
        return self.key


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class GenerationJob(models.Model):
    """A batch of samples for one method and seed."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="jobs")
    method = models.ForeignKey(Method, on_delete=models.CASCADE, related_name="jobs")
    seed = models.BigIntegerField()
    samples = models.ManyToManyField(Sample, related_name="jobs")
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    # Who holds the job: "host:pid:nonce". A worker that finds another claim stops writing.
    claim = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When its message was last sent: a job queued long ago while the broker's queue is
    # empty has lost its message, and the sweep sends it again.
    queued_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["experiment", "method__position", "seed", "id"]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["status", "queued_at"]),
        ]

    def __str__(self):
        return f"job {self.pk} ({self.method.key}, seed {self.seed}, {self.status})"

    @property
    def seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class Output(models.Model):
    method = models.ForeignKey(Method, on_delete=models.CASCADE, related_name="outputs")
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="outputs")
    seed = models.BigIntegerField()
    job = models.ForeignKey(GenerationJob, null=True, on_delete=models.SET_NULL, related_name="outputs")
    image = models.FileField(max_length=500)
    provenance = models.JSONField(default=dict)
    device = models.CharField(max_length=50)
    seconds = models.FloatField(help_text="Generation time per image (batch time / batch size)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["method", "sample", "seed"], name="one_output_per_method_sample_seed")
        ]
        ordering = ["method__position", "sample__sample_id", "seed"]

    def __str__(self):
        return f"{self.method.key}/{self.sample.sample_id}/seed{self.seed}"
