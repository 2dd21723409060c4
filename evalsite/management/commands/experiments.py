from django.core.management.base import BaseCommand

from evalsite import selectors


class Command(BaseCommand):
    help = "List experiments with their progress and status."

    def handle(self, *args, **options):
        experiments = selectors.experiment_list()
        if not experiments:
            self.stdout.write("no experiments yet; create one with: python manage.py evaluate EXPERIMENT.toml")
            return
        rows = [("name", "dataset", "methods", "seeds", "images", "jobs q/r/f", "status", "updated")]
        for e in experiments:
            p = e.progress
            jobs = p.jobs_by_status
            rows.append((
                e.name,
                str(e.dataset),
                str(e.method_count),
                ",".join(map(str, e.seeds)),
                f"{p.done}/{p.expected} ({p.percent:.0f}%)",
                f"{jobs['queued']}/{jobs['running']}/{jobs['failed']}",
                p.status,
                f"{e.updated_at:%Y-%m-%d %H:%M}",
            ))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
