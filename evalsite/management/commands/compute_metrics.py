"""Queue an experiment's metric job (or find the one queued), and with --wait follow it
and print the comparison table."""
import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from evalsite import exports, selectors
from evalsite.management.waiting import WorkerWatch
from evalsite.models import ACTIVE_JOB_STATUSES, Experiment, JobStatus, MetricJob
from evalsite.results import experiment_results
from evalsite.services.metric_requests import metrics_request


class Command(BaseCommand):
    help = ("Compute the metrics of an experiment (its file's `metrics` key) on a worker; --wait shows progress "
            "and prints the comparison table. Scores already computed are reused, so running it again is cheap.")

    def add_arguments(self, parser):
        parser.add_argument("experiment", help="Experiment name (see `manage.py experiments`)")
        parser.add_argument("--wait", action="store_true", help="Follow the job and print the table")
        parser.add_argument("--timeout", type=float, default=None, help="With --wait: give up after this many seconds")

    def handle(self, *args, experiment, wait, timeout, **options):
        found = Experiment.objects.select_related("dataset").filter(name=experiment).first()
        if found is None:
            names = ", ".join(Experiment.objects.order_by("name").values_list("name", flat=True)[:20]) or "none yet"
            raise CommandError(f"no experiment named {experiment!r}; experiments: {names}")
        if not found.metrics:
            raise CommandError(f"experiment {found.name!r} lists no metrics; add e.g. metrics = [\"clip_score\", \"fid\"] "
                               f"to its file and run `evaluate` on it")
        progress = selectors.experiment_progress(found)
        if not progress.finished:
            self.stderr.write(self.style.WARNING(
                f"generation is still running ({progress.done} of {progress.expected} images): the metrics are "
                f"computed on the samples every method has so far, and again by themselves when generation ends"
            ))
        job, created = metrics_request(experiment=found)
        verb = "queued" if created else f"already {job.status}"
        self.stdout.write(f"metric job {job.pk} for experiment {found.name!r} {verb} "
                          f"(metrics: {', '.join(found.metrics)})")
        if wait:
            self._wait(job, timeout, quiet=options["verbosity"] == 0)
            self.stdout.write("\n" + exports.results_text(experiment_results(found)))

    def _wait(self, job: MetricJob, timeout, quiet):
        watch = WorkerWatch(self.style)
        with tqdm(total=max(job.progress_total, 1), unit="score", desc="metrics", disable=quiet) as bar:
            while True:
                job.refresh_from_db()
                if job.progress_total and bar.total != job.progress_total:
                    bar.total = job.progress_total
                bar.update(job.progress_done - bar.n)
                bar.set_postfix_str(job.stage[:60])
                if job.status not in ACTIVE_JOB_STATUSES:
                    break
                watch.tick(bar, what="metric jobs")
                if timeout is not None and watch.waited() > timeout:
                    raise CommandError(f"gave up waiting after {timeout:.0f} s; the metric job goes on in the workers")
                time.sleep(0.5)
        if job.status == JobStatus.FAILED:
            self.stderr.write(self.style.ERROR(f"metric job {job.pk} finished with problems:\n{job.error}"))
            raise CommandError("some metrics could not be computed (above); the others are in the table. Fix the "
                               "cause and run the same command again: computed scores are kept")
        if job.status == JobStatus.CANCELLED:
            raise CommandError(f"metric job {job.pk} was cancelled")
