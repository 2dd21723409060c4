from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from evalsite.dataset_manifest import ManifestError
from evalsite.services.datasets import dataset_import


class Command(BaseCommand):
    help = "Import a dataset folder with manifest.csv (columns sample_id, scene, mask, reference; optional ground_truth, product_id, caption, category)."

    def add_arguments(self, parser):
        parser.add_argument("path", help="Folder containing manifest.csv (or the manifest file itself)")
        parser.add_argument("--name", required=True, help="Dataset name used by experiment files")

    def handle(self, *args, path, name, **options):
        bar = None

        def on_progress(done, total):
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, unit="sample", desc=f"importing {name}", disable=options["verbosity"] == 0)
            bar.update(done - bar.n)

        try:
            result = dataset_import(path=path, name=name, on_progress=on_progress)
        except ManifestError as exc:
            raise CommandError(str(exc)) from None
        except (ValueError, OSError) as exc:
            # A file changed or vanished after the manifest was checked; nothing was kept.
            raise CommandError(f"import of {path} stopped, nothing was imported: {exc}") from None
        finally:
            if bar is not None:
                bar.close()
        for warning in result.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        dataset = result.dataset
        count = dataset.samples.count()
        if result.created:
            self.stdout.write(self.style.SUCCESS(f"imported {dataset} ({count} samples)"))
        else:
            self.stdout.write(f"{dataset} is already imported with identical content ({count} samples); nothing to do")
