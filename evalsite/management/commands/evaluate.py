import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from evalsite import selectors
from evalsite.experiment_config import ExperimentConfigError, load_experiment_config
from evalsite.models import JobStatus
from evalsite.services.experiments import EvaluateReport, ExperimentError, experiment_cancel, experiment_evaluate
from evalsite.management.waiting import WorkerWatch
from evalsite.worker_process import manage_py_command


class Command(BaseCommand):
    help = ("Create or update an experiment from a TOML file and queue the images it is missing; "
            "--wait shows progress until done; --cancel NAME stops an experiment's queued work.")

    def add_arguments(self, parser):
        parser.add_argument("experiment", nargs="?", help="Experiment TOML file (see README)")
        parser.add_argument("--wait", action="store_true", help="Show a progress bar until every job has finished")
        parser.add_argument("--timeout", type=float, default=None, help="With --wait: give up after this many seconds")
        parser.add_argument("--cancel", metavar="NAME", help="Cancel the queued jobs of experiment NAME "
                            "(running jobs finish the batch in hand); `evaluate FILE` again resumes")

    def handle(self, *args, experiment, wait, timeout, cancel, **options):
        if cancel:
            return self._cancel(cancel)
        if not experiment:
            raise CommandError("give an experiment file (or --cancel NAME)")
        try:
            config = load_experiment_config(experiment)
            report = experiment_evaluate(config=config, on_message=self.stdout.write)
        except (ExperimentConfigError, ExperimentError) as exc:
            raise CommandError(str(exc)) from None
        self._describe(report)
        if wait:
            self._wait(report.experiment, timeout, quiet=options["verbosity"] == 0)

    def _describe(self, report: EvaluateReport) -> None:
        experiment = report.experiment
        if report.created:
            verb = "created"
        elif report.unchanged:
            verb = "is up to date with its file"
        else:
            verb = "updated"
        self.stdout.write(f"experiment {experiment.name!r} {verb} (id {experiment.pk})")
        for change in report.changes:
            if change.change == "added":
                self.stdout.write(f"  + {change.key}: added, {change.images} image(s) to generate")
            elif change.change == "changed":
                self.stdout.write(
                    f"  ~ {change.key}: changed (method {change.previous_identity[:12]} -> {change.identity[:12]}), "
                    f"{change.images} image(s) to generate; the old images stay stored"
                )
            else:
                self.stdout.write(f"  - {change.key}: removed from the tables; its {change.images} image(s) stay stored")
        if report.seeds_added:
            self.stdout.write(f"  + seeds {', '.join(map(str, report.seeds_added))}")
        if report.seeds_removed:
            self.stdout.write(f"  - seeds {', '.join(map(str, report.seeds_removed))} (their images stay stored)")
        self.stdout.write(
            f"{report.images_expected} image(s) in all: {report.images_existing} exist, {report.images_missing} to "
            f"generate; {report.jobs_created} new job(s), {len(report.jobs_sent)} job(s) sent"
            + (f"; {report.jobs_cancelled} queued job(s) no longer needed were cancelled" if report.jobs_cancelled else "")
        )
        if report.fine_tunes:
            self.stdout.write(
                f"DreamPaint: {report.fine_tunes} product fine-tuning(s) needed, {len(report.fine_tunes_sent)} queued now "
                f"(the others are done or on their way); a product's images are generated once its fine-tuning finishes"
                + (f"; {report.single_image_products} product(s) have a single image to learn from"
                   if report.single_image_products else "")
            )
        if report.metric_job:
            self.stdout.write(f"every image exists: metric job {report.metric_job} queued")

    def _cancel(self, name: str) -> None:
        try:
            report = experiment_cancel(name=name)
        except ExperimentError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"experiment {name!r} cancelled: {report.cancelled} queued job(s) will not run, {report.stopping} running "
            f"job(s) stop after their current batch"
            + (f", {report.kept_for_others} job(s) go on for other experiments that share them" if report.kept_for_others else "")
            + "; `evaluate` on its file again resumes it"
        )

    def _wait(self, experiment, timeout, quiet):
        watch = WorkerWatch(self.style)
        progress = selectors.experiment_progress(experiment)
        with tqdm(total=progress.expected, initial=progress.done, unit="img", desc=experiment.name, disable=quiet) as bar:
            while True:
                progress = selectors.experiment_progress(experiment)
                bar.update(progress.done - bar.n)
                running = progress.jobs_by_status.get(JobStatus.RUNNING, 0)
                postfix = dict(running=running, failed=progress.jobs_by_status.get(JobStatus.FAILED, 0))
                fine_tunes = selectors.experiment_fine_tunes(experiment, progress)
                if fine_tunes:
                    postfix["fine_tuned"] = f"{sum(f.status == JobStatus.SUCCEEDED for f in fine_tunes)}/{len(fine_tunes)}"
                bar.set_postfix(**postfix)
                if progress.finished:
                    break
                watch.tick(bar)
                if timeout is not None and watch.waited() > timeout:
                    raise CommandError(f"gave up waiting after {timeout:.0f} s; the jobs go on in the workers")
                time.sleep(0.5)
        failures = list(selectors.experiment_failures(experiment))
        for job in failures:
            self.stderr.write(self.style.ERROR(
                f"job {job.pk} ({job.method.family} {job.method.short_identity}, seed {job.seed}) failed: {job.error}"
            ))
        if failures:
            raise CommandError(f"{len(failures)} job(s) failed; fix the cause and run the same command again to retry them")
        if progress.status == "cancelled":
            raise CommandError(f"experiment {experiment.name!r} was cancelled with {progress.done} of {progress.expected} images")
        self.stdout.write(self.style.SUCCESS(f"all {progress.done} images generated"))
        if experiment.metrics:
            self.stdout.write(f"the metrics ({', '.join(experiment.metrics)}) are computed next on a worker; follow with:"
                              f"\n    {manage_py_command('compute_metrics', experiment.name, '--wait')}")
