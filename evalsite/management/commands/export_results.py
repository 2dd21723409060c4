"""An experiment's comparison table as CSV, LaTeX or JSON, to a file or stdout."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evalsite import exports
from evalsite.management.files import write_whole
from evalsite.models import Experiment
from evalsite.results import experiment_results
from metrics.weights import STAND_IN_NOTE

FORMATS = ("csv", "latex", "json")


class Command(BaseCommand):
    help = ("Export an experiment's comparison table: csv (one row per method and metric), latex (a booktabs "
            "table, best in bold) or json (everything, per-sample values included); --per-sample for the "
            "per-sample CSV.")

    def add_arguments(self, parser):
        parser.add_argument("experiment", help="Experiment name")
        parser.add_argument("--format", choices=FORMATS, default="csv")
        parser.add_argument("--per-sample", action="store_true",
                            help="CSV of the per-sample values (region CLIP score of every output) instead")
        parser.add_argument("-o", "--output", type=Path, help="Write to this file (default: stdout)")

    def handle(self, *args, experiment, format, per_sample, output, **options):
        found = Experiment.objects.select_related("dataset").filter(name=experiment).first()
        if found is None:
            raise CommandError(f"no experiment named {experiment!r} (see `manage.py experiments`)")
        table = experiment_results(found)
        if not table.has_scores:
            raise CommandError(f"experiment {found.name!r} has no scores yet; run `manage.py compute_metrics "
                               f"{found.name} --wait` first")
        if per_sample:
            if format != "csv":
                raise CommandError("--per-sample writes CSV; leave out --format or use --format csv")
            chunks = exports.csv_lines(exports.sample_rows(table), exports.SAMPLE_COLUMNS)
        else:
            chunks = [{"csv": exports.results_csv, "latex": exports.results_latex, "json": exports.results_json}[format](table)]
        if output is None:
            for chunk in chunks:
                self.stdout.write(chunk, ending="")
            return
        write_whole(output, chunks)
        if table.stand_in:
            self.stderr.write(self.style.WARNING(f"note: {STAND_IN_NOTE}"))
        self.stdout.write(f"wrote {output}")
