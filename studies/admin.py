from django.contrib import admin

from studies.models import Rater, Study, StudyMethod


class StudyMethodInline(admin.TabularInline):
    model = StudyMethod
    extra = 0
    readonly_fields = ["method", "key", "position"]
    can_delete = False


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["name", "experiment", "state", "response_mode", "layout", "ratings_per_pair", "created_at"]
    list_filter = ["state", "response_mode"]
    inlines = [StudyMethodInline]

    def get_readonly_fields(self, request, obj=None):
        """Texts may be edited; what shapes the ratings is fixed once raters may come, and the
        state changes on the study's page (which keeps to the allowed transitions)."""
        fixed = ["experiment", "seed", "token", "items_chosen", "created_by", "state"]
        if obj is not None and obj.state != "draft":
            fixed += ["response_mode", "layout", "ratings_per_pair", "trials_per_rater", "attention_checks",
                      "max_attention_failures", "min_median_seconds"]
        return fixed


@admin.register(Rater)
class RaterAdmin(admin.ModelAdmin):
    """Read-only: raters are made by the entry link, never by hand."""

    list_display = ["pseudonym", "study", "platform", "external_id", "consented_at", "finished_at"]
    list_filter = ["study", "platform"]
    search_fields = ["pseudonym", "external_id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
