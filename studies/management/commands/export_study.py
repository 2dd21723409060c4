"""A study's raw ratings, aggregates or pairwise tests as CSV, to a file or stdout."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evalsite.management.files import write_whole
from studies.exports import EXPORTS
from studies.models import Study


class Command(BaseCommand):
    help = ("Export a study as CSV: ratings (every rating, excluded raters flagged), aggregates (mean, 95% CI, "
            "Friedman, Kendall's W, Krippendorff's alpha per method and criterion, with the experiment's metrics) "
            "or pairwise (Wilcoxon with Holm).")

    def add_arguments(self, parser):
        parser.add_argument("study", help="Study name")
        parser.add_argument("--what", choices=list(EXPORTS), default="ratings")
        parser.add_argument("-o", "--output", type=Path, help="Write to this file (default: stdout)")

    def handle(self, *args, study, what, output, **options):
        found = Study.objects.filter(name=study).first()
        if found is None:
            names = ", ".join(Study.objects.values_list("name", flat=True)[:20]) or "none yet"
            raise CommandError(f"no study named {study!r} (studies: {names})")
        lines = EXPORTS[what](found)
        if output is None:
            for line in lines:
                self.stdout.write(line, ending="")
            return
        write_whole(output, lines)
        self.stdout.write(f"wrote {output}")
