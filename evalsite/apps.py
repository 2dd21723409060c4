from django.apps import AppConfig


class EvalsiteConfig(AppConfig):
    name = "evalsite"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from evalsite import signals  # noqa: F401  worker start-up hooks

        _ensure_broker_folders()


def _ensure_broker_folders():
    """The embedded filesystem broker needs its folders before the first message."""
    from pathlib import Path

    from django.conf import settings

    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get(key)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
