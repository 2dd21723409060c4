"""Create a human study of an experiment's outputs and print the link for raters."""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evalsite.models import Experiment
from studies import services
from studies.forms import criteria_parse
from studies.models import Layout, ResponseMode, Study


class Command(BaseCommand):
    help = ("Create a human study of an experiment: which methods and items, the criteria (default: DTC's "
            "Similarity and Semantic Blending), score or rank, the layout, ratings wanted, attention checks; "
            "prints the rater link.")

    def add_arguments(self, parser):
        parser.add_argument("experiment", help="Experiment name")
        parser.add_argument("--name", required=True, help="Study name (unique)")
        parser.add_argument("--methods", help="Comma-separated method keys (default: all of the experiment's)")
        parser.add_argument("--items", default="all", help="all | random:N[:SEED] | list:ID,ID,...  (default: all)")
        parser.add_argument("--seed", type=int, help="Whose outputs are rated (default: the experiment's first seed)")
        parser.add_argument("--criterion", action="append", metavar="KEY|LABEL|QUESTION",
                            help="A criterion; repeat for several (default: similarity and semantic_blending)")
        parser.add_argument("--mode", choices=ResponseMode.values, default=ResponseMode.SCORE)
        parser.add_argument("--layout", choices=Layout.values, default=Layout.SIDE_BY_SIDE)
        parser.add_argument("--ratings-per-pair", type=int, default=20, help="Ratings wanted per (item, method)")
        parser.add_argument("--trials-per-rater", type=int, help="Items per rater (default: every item)")
        parser.add_argument("--attention-checks", type=int, default=1, help="Trials per rater with a check")
        parser.add_argument("--max-attention-failures", type=int, default=0)
        parser.add_argument("--min-median-seconds", type=float, default=0.0)
        parser.add_argument("--timeout", type=int, default=1200,
                            help="Seconds without activity before an assigned item goes to another rater")
        parser.add_argument("--instructions-file", type=Path)
        parser.add_argument("--consent-file", type=Path)
        parser.add_argument("--completion-code", default="")
        parser.add_argument("--completion-url", default="", help="Prolific's completion URL")
        parser.add_argument("--live", action="store_true", help="Open it to raters at once (default: draft)")
        parser.add_argument("--exist-ok", action="store_true",
                            help="When a study of this name exists, print its links instead of failing")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="The site's address, for the link")

    def handle(self, *args, **o):
        experiment = Experiment.objects.filter(name=o["experiment"]).first()
        if experiment is None:
            raise CommandError(f"no experiment named {o['experiment']!r} (see `manage.py experiments`)")
        base = o["base_url"].rstrip("/")
        existing = Study.objects.filter(name=o["name"].strip()).first()
        if existing is not None and o["exist_ok"]:
            self.stdout.write(f"study {existing.name!r} exists ({existing.state})")
            self._links(base, existing)
            return
        try:
            criteria = criteria_parse("\n".join(o["criterion"])) if o["criterion"] else services.DEFAULT_CRITERIA
        except Exception as exc:  # forms.ValidationError
            raise CommandError(f"--criterion: {getattr(exc, 'message', exc)}") from None
        texts = {}
        for key in ("instructions_file", "consent_file"):
            if o[key] is not None:
                try:
                    texts[key] = o[key].read_text(encoding="utf-8")
                except OSError as exc:
                    raise CommandError(f"--{key.replace('_', '-')} {o[key]}: {exc.strerror}") from None
        try:
            study = services.study_create(
                name=o["name"], experiment=experiment,
                method_keys=[k.strip() for k in o["methods"].split(",") if k.strip()] if o["methods"] else None,
                items=services.ItemChoice.parse(o["items"]), seed=o["seed"], criteria=criteria,
                response_mode=o["mode"], layout=o["layout"], ratings_per_pair=o["ratings_per_pair"],
                trials_per_rater=o["trials_per_rater"], attention_checks=o["attention_checks"],
                max_attention_failures=o["max_attention_failures"], min_median_seconds=o["min_median_seconds"],
                assignment_timeout_seconds=o["timeout"],
                instructions=texts.get("instructions_file", services.DEFAULT_INSTRUCTIONS),
                consent_text=texts.get("consent_file", services.DEFAULT_CONSENT),
                completion_code=o["completion_code"], completion_url=o["completion_url"], live=o["live"],
            )
        except services.StudyError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(
            f"created study {study.name!r} ({study.state}): {study.items.count()} items x {study.methods.count()} "
            f"methods, {study.ratings_per_pair} ratings each, completion code {study.completion_code}"))
        self._links(base, study)
        if study.state == "draft":
            self.stdout.write("it is a draft: open it on its page (or pass --live) before sharing the link")

    def _links(self, base: str, study: Study) -> None:
        self.stdout.write(f"rater link:      {base}/r/{study.token}/")
        self.stdout.write(f"researcher page: {base}/studies/{study.pk}/")
