import signal
import socket
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from evalsite.demo_data import build_demo_dataset
from evalsite.worker_process import BASE_DIR, start_worker
from generators.tiny import build_all as build_tiny_checkpoints

DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"


class Command(BaseCommand):
    help = ("Build the demo data and tiny models, run the demo experiment through a real Celery "
            "worker, and serve the site.")

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-serve", action="store_true", help="Stop after the experiment has finished")

    def handle(self, *args, port, no_serve, **options):
        var = Path(settings.VAR_DIR)
        self._step("migrating the database")
        call_command("migrate", interactive=False, verbosity=0)

        self._step(f"building tiny random-weight checkpoints in {settings.EVALSITE_WEIGHTS_DIR / 'tiny'}")
        build_tiny_checkpoints(Path(settings.EVALSITE_WEIGHTS_DIR) / "tiny")

        self._step("building the demo dataset from scikit-image's photographs")
        folder = build_demo_dataset(var / "demo" / "dataset")
        call_command("import_dataset", str(folder), name="demo")

        user = self._demo_user()
        # SIGTERM (e.g. from a supervisor) ends like Ctrl-C, so the worker is stopped too.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        log_path = var / "demo" / "worker.log"
        self._step(f"starting a Celery worker (log: {log_path})")
        worker = start_worker(log_path=log_path, name="demo")
        try:
            self._step("running the demo experiment")
            call_command("evaluate", str(BASE_DIR / "examples" / "demo.toml"), wait=True, timeout=600)
            if no_serve:
                return
            port = _free_port(port)
            self.stdout.write(self.style.SUCCESS(
                f"\nThe site is at http://127.0.0.1:{port}/  sign in as {user.username!r} "
                f"with password {DEMO_PASSWORD!r}  (Ctrl-C stops the site and the worker)\n"
            ))
            call_command("runserver", f"127.0.0.1:{port}", use_reloader=False)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except Exception:
                worker.kill()

    def _demo_user(self):
        users = get_user_model()
        user, created = users.objects.get_or_create(username=DEMO_USER, defaults={"is_staff": True, "is_superuser": True})
        if created or not user.check_password(DEMO_PASSWORD):
            user.set_password(DEMO_PASSWORD)
            user.save()
        return user

    def _step(self, text):
        self.stdout.write(self.style.MIGRATE_HEADING(f"==> {text}"))


def _free_port(preferred: int) -> int:
    for port in range(preferred, preferred + 20):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise SystemExit(f"ports {preferred}-{preferred + 19} are all in use; pass --port")
