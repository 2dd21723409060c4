"""Delete DreamPaint fine-tunings that no experiment uses any more (weights and rows)."""
from django.core.management.base import BaseCommand
from django.template.defaultfilters import filesizeformat

from evalsite.services.fine_tuning import fine_tune_delete, fine_tune_folder, fine_tunes_unused


class Command(BaseCommand):
    help = ("Delete the DreamPaint fine-tunings (per-product adapters or UNets under EVALSITE_WEIGHTS_DIR/dreampaint) "
            "that no experiment uses; --dry-run lists them.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="List what would be deleted, delete nothing")

    def handle(self, *args, dry_run, **options):
        unused = fine_tunes_unused()
        if not unused:
            self.stdout.write("nothing to delete: every fine-tuning is used by an experiment (or still running)")
            return
        freed = 0
        for fine_tune in unused:
            size = fine_tune.size_bytes or 0
            self.stdout.write(f"  {fine_tune.product_id} ({fine_tune.mode}, {fine_tune.status}) "
                              f"{filesizeformat(size)} {fine_tune_folder(fine_tune)}")
            freed += size if dry_run else fine_tune_delete(fine_tune=fine_tune)
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"{verb} {len(unused)} fine-tuning(s), {filesizeformat(freed)}")
