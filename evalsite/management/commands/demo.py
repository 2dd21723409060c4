import io
import signal
import socket
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.urls import reverse

from evalsite.demo_data import build_demo_dataset
from evalsite.models import Experiment
from evalsite.worker_process import BASE_DIR, start_site, start_worker
from generators.tiny import build_all as build_tiny_checkpoints
from metrics.standins import build_clip_stand_in, build_inception_stand_in
from metrics.weights import CLIP_FOLDER, INCEPTION_FILE

DEMO_USER = "demo"
# The human study's experiment, finished before the site is served; DTC's Tables 1 and 2
# (which reuse its images) fill in on the worker while the site is up.
DEMO_EXPERIMENT = ("demo", "demo.toml")
DEMO_TABLES = (("demo-table1", "demo_table1.toml"), ("demo-table2", "demo_table2.toml"))
DEMO_PASSWORD = "demo-password"


class Command(BaseCommand):
    help = ("Build the demo data and tiny models, run the demo experiment through a real Celery "
            "worker, and serve the site.")

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-serve", action="store_true", help="Stop after the experiment has finished")
        parser.add_argument("--create-user", action="store_true",
                            help=f"Create the {DEMO_USER!r} account even on a database named by DATABASE_URL "
                                 f"(by default only on the embedded SQLite database)")

    def handle(self, *args, port, no_serve, create_user, **options):
        var = Path(settings.VAR_DIR)
        self._step("migrating the database")
        call_command("migrate", interactive=False, verbosity=0)

        self._step(f"building tiny random-weight checkpoints in {settings.EVALSITE_WEIGHTS_DIR / 'tiny'}")
        build_tiny_checkpoints(Path(settings.EVALSITE_WEIGHTS_DIR) / "tiny")

        self._ensure_metric_weights(Path(settings.EVALSITE_WEIGHTS_DIR))

        self._step("building the demo dataset from scikit-image's photographs")
        folder = build_demo_dataset(var / "demo" / "dataset")
        call_command("import_dataset", str(folder), name="demo")

        user = demo_user_ensure(create=demo_user_should_be_created(create_user=create_user))
        # SIGTERM (e.g. from a supervisor) ends like Ctrl-C, so the worker is stopped too.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        log_path = var / "demo" / "worker.log"
        self._step(f"starting a Celery worker (log: {log_path})")
        worker = start_worker(log_path=log_path, name="demo")
        try:
            name, file = DEMO_EXPERIMENT
            self._step(f"running the {name} experiment")
            call_command("evaluate", str(BASE_DIR / "examples" / file), wait=True, timeout=600)
            self._step(f"computing the {name} experiment's metrics")
            call_command("compute_metrics", name, wait=True, timeout=600)
            port = _free_port(port)
            # By command name: evalsite never imports the studies app.
            self._step("creating the demo human study")
            study = io.StringIO()
            call_command("create_study", "demo", name="demo-study", ratings_per_pair=5, trials_per_rater=4,
                         attention_checks=1, live=True, exist_ok=True, base_url=f"http://127.0.0.1:{port}",
                         stdout=study)
            links = [line for line in study.getvalue().splitlines() if line.startswith(("rater link", "researcher page"))]
            self._step("queuing DTC's Tables 1 and 2 (their images and metrics follow on the worker)")
            tables = []
            for name, file in DEMO_TABLES:
                # Queued, not awaited: their metrics are queued when their last image is made.
                call_command("evaluate", str(BASE_DIR / "examples" / file), stdout=io.StringIO())
                page = reverse("experiment-detail", args=[Experiment.objects.get(name=name).pk])
                tables.append(f"  {name}: http://127.0.0.1:{port}{page}\n")
            if no_serve:  # a finished demo: the tables too
                for name, file in DEMO_TABLES:
                    call_command("evaluate", str(BASE_DIR / "examples" / file), wait=True, timeout=600)
                    call_command("compute_metrics", name, wait=True, timeout=600)
                return
            sign_in = (
                f"sign in as {user.username!r} with password {DEMO_PASSWORD!r}" if user is not None else
                "sign in with your own account (this database is not the embedded one, so no demo account "
                "was made; create one with `manage.py createsuperuser`, or rerun with --create-user)"
            )
            self.stdout.write(self.style.SUCCESS(
                f"\nThe site is at http://127.0.0.1:{port}/  {sign_in}  (Ctrl-C stops the site and the worker)\n"
                + "".join(f"  demo study {line}\n" for line in links)
                + "DTC's Tables 1 and 2, filling in over the next half minute:\n" + "".join(tables)
            ))
            # The site runs in a child process of its own: a SIGTERM here then never lands
            # inside the server's request handling, and both children are stopped below.
            site = start_site(port=port)
            try:
                site.wait()
            finally:
                _stop(site, timeout=10)
        finally:
            _stop(worker, timeout=30)

    def _ensure_metric_weights(self, weights: Path) -> None:
        """Stand-ins for the metric weights that are not there; real ones are left alone."""
        missing = [name for name, path in ((INCEPTION_FILE, weights / INCEPTION_FILE),
                                            (CLIP_FOLDER, weights / CLIP_FOLDER / "config.json")) if not path.exists()]
        if not missing:
            return
        self._step(f"building stand-in metric weights ({', '.join(missing)}) in {weights}: the demo's numbers "
                   f"are not comparable to published ones; put the real files there for real numbers")
        if INCEPTION_FILE in missing:
            build_inception_stand_in(weights)
        if CLIP_FOLDER in missing:
            build_clip_stand_in(weights)

    def _step(self, text):
        self.stdout.write(self.style.MIGRATE_HEADING(f"==> {text}"))


def demo_user_should_be_created(*, create_user: bool) -> bool:
    return create_user or settings.EMBEDDED_DATABASE


def demo_user_ensure(*, create: bool):
    """The demo account, with its known password; None when it may not be made here (a
    known password on a production database would be an open door)."""
    if not create:
        return None
    users = get_user_model()
    user, created = users.objects.get_or_create(username=DEMO_USER, defaults={"is_staff": True, "is_superuser": True})
    if created or not user.check_password(DEMO_PASSWORD):
        user.set_password(DEMO_PASSWORD)
        user.save()
    return user


def _stop(process, *, timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except Exception:
        process.kill()


def _free_port(preferred: int) -> int:
    for port in range(preferred, preferred + 20):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise SystemExit(f"ports {preferred}-{preferred + 19} are all in use; pass --port")
