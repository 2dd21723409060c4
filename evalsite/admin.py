from django.contrib import admin
from django.template.defaultfilters import filesizeformat

from evalsite.models import (
    Dataset, Experiment, ExperimentMethod, FineTune, GenerationJob, Method, MetricJob, Output, Sample, Score, Worker,
)


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "source_path", "created_at")
    search_fields = ("name", "content_hash")


@admin.register(Sample)
class SampleAdmin(admin.ModelAdmin):
    list_display = ("sample_id", "dataset", "category", "product_id", "width", "height")
    list_filter = ("dataset",)
    search_fields = ("sample_id", "product_id", "caption")


class ExperimentMethodInline(admin.TabularInline):
    model = ExperimentMethod
    extra = 0
    raw_id_fields = ("method",)


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ("name", "dataset", "resolution", "num_inference_steps", "guidance_scale", "cancelled_at", "updated_at")
    inlines = [ExperimentMethodInline]


@admin.register(Method)
class MethodAdmin(admin.ModelAdmin):
    list_display = ("identity", "family", "params", "checkpoint", "resolution", "num_inference_steps", "created_at")
    list_filter = ("family",)
    search_fields = ("identity", "checkpoint", "checkpoint_hash")
    readonly_fields = ("identity", "checkpoint_hash")


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ("id", "method", "dataset", "seed", "status", "progress_done", "progress_total", "attempts", "heartbeat_at")
    list_filter = ("status", "method__family")
    raw_id_fields = ("method", "samples", "fine_tune")
    readonly_fields = ("claim", "heartbeat_at", "started_at", "finished_at")


@admin.register(FineTune)
class FineTuneAdmin(admin.ModelAdmin):
    """DreamPaint's per-product weights: what they cost on disk, how they were made, who uses
    them. `manage.py prune_fine_tunes` deletes the unused ones."""

    list_display = ("id", "product_id", "mode", "status", "steps_done", "size", "recipe_summary", "used_by", "finished_at")
    list_filter = ("status",)
    search_fields = ("product_id", "identity")
    readonly_fields = [field.name for field in FineTune._meta.fields]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("generation_jobs__method__experiment_methods__experiment")

    @admin.display(description="steps")
    def steps_done(self, obj):
        return f"{obj.progress_done} / {obj.progress_total}"

    @admin.display(description="size", ordering="size_bytes")
    def size(self, obj):
        return filesizeformat(obj.size_bytes) if obj.size_bytes else ""

    @admin.display(description="recipe")
    def recipe_summary(self, obj):
        recipe = obj.recipe
        return ", ".join(f"{key} {recipe[key]}" for key in ("mode", "steps", "learning_rate", "rank", "resolution") if key in recipe)

    @admin.display(description="experiments")
    def used_by(self, obj):
        names = sorted({column.experiment.name for job in obj.generation_jobs.all()
                        for column in job.method.experiment_methods.all()})
        return ", ".join(names) or "none (prune_fine_tunes deletes it)"


@admin.register(Output)
class OutputAdmin(admin.ModelAdmin):
    list_display = ("id", "method", "sample", "seed", "device", "seconds", "created_at")
    list_filter = ("method__family",)
    raw_id_fields = ("method", "sample", "job")


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("name", "queues", "device", "started_at", "seen_at")


@admin.register(MetricJob)
class MetricJobAdmin(admin.ModelAdmin):
    list_display = ("id", "experiment", "status", "stage", "progress_done", "progress_total", "scores_computed",
                    "scores_reused", "features_computed", "features_reused", "attempts", "heartbeat_at")
    list_filter = ("status",)
    raw_id_fields = ("experiment",)
    readonly_fields = ("claim", "heartbeat_at", "started_at", "finished_at")


@admin.register(Score)
class ScoreAdmin(admin.ModelAdmin):
    """Every stored number with its provenance (read-only: numbers are computed, not typed)."""

    list_display = ("id", "metric", "value", "ci_low", "ci_high", "std", "n_generated", "n_real", "method", "extractor",
                    "stand_in", "computed_at")
    list_filter = ("metric", "stand_in", "method__family")
    search_fields = ("method__identity", "extractor_sha256", "scope")
    raw_id_fields = ("method", "dataset")

    def has_change_permission(self, request, obj=None):
        return False
