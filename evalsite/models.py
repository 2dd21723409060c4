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
    """A view: dataset x methods x seeds. It grows when its file is edited and evaluated
    again; its images belong to the methods, so experiments that share a method share them."""

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
    # Set by `evaluate --cancel`, cleared by the next `evaluate`.
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name


class Method(models.Model):
    """A method's identity: family, resolved params, the checkpoint's content and the
    settings that change pixels. Outputs are keyed by it, so every experiment that uses
    the same method shares its images; retrained weights are a new identity."""

    identity = models.CharField(max_length=64, unique=True)
    family = models.CharField(max_length=50)  # a stable registry key
    params = models.JSONField(default=dict)
    checkpoint = models.CharField(max_length=1000, blank=True, help_text="As written in the experiment file")
    # sha256 over the checkpoint's files; empty for families without one, and for rows
    # migrated from before identities existed (never shared, never checked).
    checkpoint_hash = models.CharField(max_length=64, blank=True)
    # Settings that change pixels; null where the family does not sample (copy_paste).
    num_inference_steps = models.PositiveIntegerField(null=True, blank=True)
    guidance_scale = models.FloatField(null=True, blank=True)
    resolution = models.PositiveIntegerField()
    batch_invariant = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.family} {self.identity[:12]}"

    @property
    def short_identity(self) -> str:
        return self.identity[:12]


class ExperimentMethod(models.Model):
    """A column of an experiment: its key in the file, and the method it names now."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="methods")
    method = models.ForeignKey(Method, on_delete=models.PROTECT, related_name="experiment_methods")
    key = models.CharField(max_length=100)
    position = models.PositiveIntegerField(default=0, help_text="Column order in tables")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["experiment", "key"], name="method_key_unique_in_experiment")
        ]
        ordering = ["experiment", "position"]

    def __str__(self):
        return self.key

    @property
    def family(self) -> str:
        return self.method.family

    @property
    def params(self) -> dict:
        return self.method.params


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class JobRow(models.Model):
    """What every job row has: its state, who holds it and since when (jobs.py)."""

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
        abstract = True

    @property
    def seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class FineTune(JobRow):
    """DreamPaint's fine-tuning of one product: a GPU job of its own, keyed by what decides
    its weights (the product's images, the base checkpoint, the recipe), so every later
    experiment and method that needs the same one reuses it. Its generation jobs wait for it."""

    identity = models.CharField(max_length=64, unique=True)
    product_id = models.CharField(max_length=200)
    category = models.CharField(max_length=200, blank=True)
    # PROTECT: its folder outlives no row (prune_fine_tunes deletes both).
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="fine_tunes",
                                help_text="Where its images were first found")
    images_hash = models.CharField(max_length=64, help_text="sha256 over the product's image files")
    image_count = models.PositiveIntegerField()
    base_checkpoint = models.CharField(max_length=1000, help_text="As written in the experiment file")
    base_hash = models.CharField(max_length=64)
    recipe = models.JSONField()
    recipe_hash = models.CharField(max_length=64)
    prompt = models.CharField(max_length=300)
    # Relative to EVALSITE_WEIGHTS_DIR; the folder exists whole once the job has succeeded.
    path = models.CharField(max_length=500)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    losses = models.JSONField(default=list, help_text="Training loss per step")

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["status", "queued_at"]),
        ]

    def __str__(self):
        return f"fine-tuning {self.pk} (product {self.product_id}, {self.recipe.get('mode')}, {self.status})"

    @property
    def mode(self) -> str:
        return self.recipe.get("mode", "")

    @property
    def last_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None


class GenerationJob(JobRow):
    """A batch of one dataset's samples for one method and seed. Jobs belong to the
    method, not to an experiment: every experiment that needs these images waits on it."""

    method = models.ForeignKey(Method, on_delete=models.CASCADE, related_name="jobs")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="jobs")
    seed = models.BigIntegerField()
    samples = models.ManyToManyField(Sample, related_name="jobs")
    # DreamPaint: the one product's fine-tuning this batch needs; it is sent once that succeeds.
    fine_tune = models.ForeignKey(FineTune, null=True, blank=True, on_delete=models.SET_NULL, related_name="generation_jobs")

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["status", "queued_at"]),
            models.Index(fields=["method", "dataset", "seed"]),
        ]

    def __str__(self):
        return f"job {self.pk} (method {self.method_id}, seed {self.seed}, {self.status})"


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
        ordering = ["method", "sample__sample_id", "seed"]

    def __str__(self):
        return f"{self.method}/{self.sample.sample_id}/seed{self.seed}"


class FileDigest(models.Model):
    """sha256 of a file, valid while its size and modification time are unchanged: a
    checkpoint's identity is computed once, not at every evaluate or job."""

    path = models.CharField(max_length=1000)
    size = models.BigIntegerField()
    mtime_ns = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["path", "size", "mtime_ns"], name="file_digest_unique")
        ]


class Worker(models.Model):
    """A live worker process says so here every sweep (on the database's clock), so that
    `evaluate --wait` and the pages can tell when no worker is running."""

    name = models.CharField(max_length=200, unique=True)
    queues = models.CharField(max_length=200)
    device = models.CharField(max_length=50, blank=True)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()

    def __str__(self):
        return self.name


class MetricJob(JobRow):
    """Computing an experiment's metrics: the scores its table is missing. Resumable: a
    score row, once written, is final, and features are cached per image on disk."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="metric_jobs")
    stage = models.CharField(max_length=300, blank=True, help_text="What it is doing now, for the page and the CLI")
    # Of the last attempt: what it computed, and what it found done (by an earlier attempt,
    # another experiment's job, or the feature cache).
    scores_computed = models.PositiveIntegerField(default=0)
    scores_reused = models.PositiveIntegerField(default=0)
    features_computed = models.PositiveIntegerField(default=0)
    features_reused = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"]), models.Index(fields=["status", "queued_at"])]

    def __str__(self):
        return f"metric job {self.pk} ({self.experiment}, {self.status})"


class Score(models.Model):
    """One number of a comparison table and how it was made. Keyed by the method identity,
    the metric, its scope (the samples, seeds and real set it was computed on) and the
    extractor's weights: experiments that score the same method the same way share it."""

    method = models.ForeignKey(Method, on_delete=models.CASCADE, related_name="scores")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="scores")
    metric = models.CharField(max_length=30)  # clip_score, fid, fid_clip, kid
    scope = models.CharField(max_length=64, help_text="sha256 of what the number depends on besides the method")
    value = models.FloatField()
    ci_low = models.FloatField(null=True, blank=True)
    ci_high = models.FloatField(null=True, blank=True)
    std = models.FloatField(null=True, blank=True, help_text="KID: standard deviation over its subsets")
    n_generated = models.PositiveIntegerField()
    n_real = models.PositiveIntegerField(null=True, blank=True)
    extractor = models.CharField(max_length=100)
    extractor_sha256 = models.CharField(max_length=64)
    protocol = models.TextField()
    seeds = models.JSONField()
    stand_in = models.BooleanField(default=False, help_text="Made with the project's stand-in weights (demo)")
    provenance = models.JSONField(default=dict)
    computed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["method", "metric", "scope", "extractor_sha256"], name="one_score_per_key")
        ]
        ordering = ["method", "metric"]

    def __str__(self):
        return f"{self.metric} {self.value:.4g} ({self.method})"


class SampleScore(models.Model):
    """A per-image value behind a score (region CLIP score), for paired tests and for
    finding the failures."""

    score = models.ForeignKey(Score, on_delete=models.CASCADE, related_name="per_sample")
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="+")
    seed = models.BigIntegerField()
    output = models.ForeignKey(Output, null=True, on_delete=models.SET_NULL, related_name="+")
    value = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["score", "sample", "seed"], name="one_value_per_score_sample_seed")]
