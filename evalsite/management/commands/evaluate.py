import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from evalsite import selectors
from evalsite.experiment_config import ExperimentConfigError, load_experiment_config
from evalsite.models import JobStatus
from evalsite.services.experiments import ExperimentError, experiment_create, experiment_enqueue, resolve_checkpoint
from generators.registry import validate_spec
from generators.types import GeneratorError, MethodSpec

WORKER_HINT_AFTER_SECONDS = 30


class Command(BaseCommand):
    help = "Create an experiment from a TOML file and queue its generation jobs; --wait shows progress until done."

    def add_arguments(self, parser):
        parser.add_argument("experiment", help="Experiment TOML file (see README)")
        parser.add_argument("--wait", action="store_true", help="Show a progress bar until every job has finished")
        parser.add_argument("--timeout", type=float, default=None, help="With --wait: give up after this many seconds")

    def handle(self, *args, experiment, wait, timeout, **options):
        try:
            config = load_experiment_config(experiment)
            record, created = experiment_create(config=config)
        except (ExperimentConfigError, ExperimentError) as exc:
            raise CommandError(str(exc)) from None
        for method in config.methods:
            spec = MethodSpec(method.family, method.params, resolve_checkpoint(method.checkpoint) or None)
            try:
                validate_spec(spec)
            except GeneratorError as exc:
                # Web and GPU machines may differ: the workers are the judges; say it early.
                self.stderr.write(self.style.WARNING(f"warning: method {method.key!r} on this machine: {exc}"))
        queued = experiment_enqueue(experiment=record)
        progress = selectors.experiment_progress(record)
        verb = "created" if created else "exists"
        self.stdout.write(
            f"experiment {record.name!r} {verb} (id {record.pk}): {len(queued)} job(s) queued, "
            f"{progress.done} of {progress.expected} images already exist"
        )
        if wait:
            self._wait(record, timeout, quiet=options["verbosity"] == 0)

    def _wait(self, experiment, timeout, quiet):
        started = time.monotonic()
        hinted = False
        progress = selectors.experiment_progress(experiment)
        with tqdm(total=progress.expected, initial=progress.done, unit="img", desc=experiment.name, disable=quiet) as bar:
            while True:
                progress = selectors.experiment_progress(experiment)
                bar.update(progress.done - bar.n)
                running = progress.jobs_by_status.get(JobStatus.RUNNING, 0)
                bar.set_postfix(running=running, failed=progress.jobs_by_status.get(JobStatus.FAILED, 0))
                if progress.finished:
                    break
                elapsed = time.monotonic() - started
                if not hinted and elapsed > WORKER_HINT_AFTER_SECONDS and progress.done == 0 and not running:
                    bar.write("no worker has picked up a job yet; start one with: "
                              "celery -A evalsite worker -Q gpu,cpu --pool solo")
                    hinted = True
                if timeout is not None and elapsed > timeout:
                    raise CommandError(f"gave up waiting after {timeout:.0f} s; the jobs go on in the workers")
                time.sleep(0.5)
        failures = list(selectors.experiment_failures(experiment))
        for job in failures:
            self.stderr.write(self.style.ERROR(f"job {job.pk} ({job.method.key}, seed {job.seed}) failed: {job.error}"))
        if failures:
            raise CommandError(f"{len(failures)} job(s) failed; fix the cause and run the same command again to retry them")
        self.stdout.write(self.style.SUCCESS(f"all {progress.done} images generated"))
