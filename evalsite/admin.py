from django.contrib import admin

from evalsite.models import Dataset, Experiment, GenerationJob, Method, Output, Sample


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "source_path", "created_at")
    search_fields = ("name", "content_hash")


@admin.register(Sample)
class SampleAdmin(admin.ModelAdmin):
    list_display = ("sample_id", "dataset", "category", "product_id", "width", "height")
    list_filter = ("dataset",)
    search_fields = ("sample_id", "product_id", "caption")


class MethodInline(admin.TabularInline):
    model = Method
    extra = 0


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ("name", "dataset", "resolution", "num_inference_steps", "guidance_scale", "created_at")
    inlines = [MethodInline]


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ("id", "experiment", "method", "seed", "status", "progress_done", "progress_total", "attempts", "heartbeat_at")
    list_filter = ("status", "experiment")
    readonly_fields = ("claim", "heartbeat_at", "started_at", "finished_at")


@admin.register(Output)
class OutputAdmin(admin.ModelAdmin):
    list_display = ("id", "method", "sample", "seed", "device", "seconds", "created_at")
    list_filter = ("method__experiment", "method__key")
