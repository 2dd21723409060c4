"""Reads of the studies app: progress, rater quality, and the ratings the results use."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import median

from django.db.models import Count, Q

from studies.models import Item, Rater, Rating, ResponseMode, Study, StudyMethod, Trial, TrialStatus
from studies.quality import ATTENTION_CRITERION, attention_check_passed


def study_list():
    return Study.objects.select_related("experiment").annotate(
        n_raters=Count("raters", distinct=True),
    ).order_by("-created_at")


@dataclass(frozen=True)
class Progress:
    methods: list[StudyMethod]
    rows: list[tuple[str, int, int]]  # (sample id, answered trials, in progress)
    wanted: int  # ratings wanted per (item, method)
    answered: int  # answered trials, all items
    in_progress: int
    total_wanted: int
    raters_started: int
    raters_finished: int

    @property
    def percent(self) -> float:
        return 100.0 * min(self.answered, self.total_wanted) / self.total_wanted if self.total_wanted else 100.0


def study_progress(study: Study) -> Progress:
    """Ratings per item (every trial of an item rates each of its methods once, so an
    item's count is its count for every method)."""
    items = (
        Item.objects.filter(study=study).order_by("position")
        .annotate(answered=Count("trials", filter=Q(trials__status=TrialStatus.ANSWERED)),
                  in_progress=Count("trials", filter=Q(trials__status=TrialStatus.ASSIGNED)))
        .values_list("sample__sample_id", "answered", "in_progress")
    )
    rows = list(items)
    raters = Rater.objects.filter(study=study).aggregate(
        started=Count("pk", filter=Q(consented_at__isnull=False)), finished=Count("pk", filter=Q(finished_at__isnull=False)))
    return Progress(
        methods=list(study.methods.all()), rows=rows, wanted=study.ratings_per_pair,
        answered=sum(r[1] for r in rows), in_progress=sum(r[2] for r in rows),
        total_wanted=study.ratings_per_pair * len(rows),
        raters_started=raters["started"], raters_finished=raters["finished"],
    )


@dataclass(frozen=True)
class RaterQuality:
    rater_id: int
    pseudonym: str
    platform: str
    external_id: str
    trials: int
    checks: int
    checks_failed: int
    median_seconds: float | None
    finished: bool
    excluded: bool
    reason: str


def attention_criterion_id(study: Study) -> int | None:
    """The criterion attention checks are judged on (the untouched scene shows no product)."""
    return study.criteria.filter(key=ATTENTION_CRITERION).values_list("pk", flat=True).first()


def rater_quality(study: Study) -> dict[int, RaterQuality]:
    """Each rater's attention checks (studies/quality.py says when one passes) and time per
    trial, and whether the study's rule excludes them."""
    criterion_id = attention_criterion_id(study)
    check_scores: dict[int, dict[str, object]] = defaultdict(lambda: {"scene": None, "others": []})
    checks = (Rating.objects.filter(trial__rater__study=study, trial__status=TrialStatus.ANSWERED,
                                    trial__attention_check=True, criterion_id=criterion_id)
              .values_list("trial_id", "candidate__method_id", "score"))
    for trial_id, method_id, score in checks:
        if method_id is None:
            check_scores[trial_id]["scene"] = score
        else:
            check_scores[trial_id]["others"].append(score)
    trials = defaultdict(list)
    for rater_id, trial_id, attention, shown, answered in (
        Trial.objects.filter(rater__study=study, status=TrialStatus.ANSWERED)
        .values_list("rater_id", "pk", "attention_check", "shown_at", "answered_at")
    ):
        trials[rater_id].append((trial_id, attention, shown, answered))
    result = {}
    for rater in Rater.objects.filter(study=study).order_by("created_at"):
        own = trials.get(rater.pk, [])
        failed = 0
        n_checks = 0
        for trial_id, attention, _, _ in own:
            if not attention:
                continue
            n_checks += 1
            check = check_scores.get(trial_id)
            if check is None or check["scene"] is None or not attention_check_passed(
                    check["scene"], check["others"], response_mode=study.response_mode):
                failed += 1
        seconds = [(a - s).total_seconds() for _, _, s, a in own if s is not None and a is not None]
        med = median(seconds) if seconds else None
        reasons = []
        if failed > study.max_attention_failures:
            reasons.append(f"failed {failed} of {n_checks} attention checks (allowed: {study.max_attention_failures})")
        if study.min_median_seconds and med is not None and med < study.min_median_seconds:
            reasons.append(f"median {med:.1f} s per item, below {study.min_median_seconds:g} s")
        result[rater.pk] = RaterQuality(
            rater_id=rater.pk, pseudonym=rater.pseudonym, platform=rater.platform, external_id=rater.external_id,
            trials=len(own), checks=n_checks, checks_failed=failed, median_seconds=med,
            finished=rater.finished_at is not None, excluded=bool(reasons), reason="; ".join(reasons),
        )
    return result


def included_ratings(study: Study, quality: dict[int, RaterQuality]) -> list[tuple[int, int, int, int, int, int]]:
    """(rater id, item id, study method id, criterion id, slot, score) of every answered
    rating of an output (attention candidates left out) by a rater who is not excluded.

    In rank mode an attention trial ranks the scene with the outputs; the outputs' ranks
    are taken among themselves there (1..K, as in every other trial)."""
    excluded = [pk for pk, q in quality.items() if q.excluded]
    rows = list(
        Rating.objects.filter(trial__rater__study=study, trial__status=TrialStatus.ANSWERED,
                              candidate__method__isnull=False)
        .exclude(trial__rater_id__in=excluded)
        .values_list("trial__rater_id", "trial__item_id", "candidate__method_id", "criterion_id", "slot", "score",
                     "trial_id", "trial__attention_check")
    )
    if study.response_mode == ResponseMode.RANK:
        groups = defaultdict(list)
        for index, row in enumerate(rows):
            if row[7]:
                groups[(row[6], row[3])].append(index)
        for indices in groups.values():
            for rank, index in enumerate(sorted(indices, key=lambda i: rows[i][5]), start=1):
                rows[index] = rows[index][:5] + (rank,) + rows[index][6:]
    return [row[:6] for row in rows]
