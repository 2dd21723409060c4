"""Which item a rater rates next, and storing their answer exactly once.

Each trial shows an item's candidates (one per method), so an item rated by R raters gives
every (item, method) R ratings. Assignment takes the study row's lock, so concurrent raters
are handed items one after the other: an item is given while fewer than `ratings_per_pair`
of its trials are answered or in progress, the least-rated items first (ties at random), and
never twice to one rater. A trial with no activity for the study's timeout is abandoned, and
its slot goes back to the pool. Answering is a conditional update of the trial row (assigned
-> answered), so of a double click, a retried request or a late answer racing the timeout,
exactly one stores ratings, and an item never gets more answered trials than asked for.
"""
from __future__ import annotations

import random
import secrets
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from studies.models import (
    Candidate, Criterion, Item, Rater, Rating, ResponseMode, Study, Trial, TrialImage, TrialStatus,
)
from studies.quality import ATTENTION_CRITERION, attention_check_passed

_rng = random.SystemRandom()


class AnswerError(ValueError):
    """The answer is incomplete or out of range; the message says which field."""


def _token() -> str:
    return secrets.token_urlsafe(18)


def _abandon_stale(study: Study) -> int:
    cutoff = timezone.now() - timedelta(seconds=study.assignment_timeout_seconds)
    # The conditions must sit on the updated rows themselves: with a join Django writes
    # `WHERE id IN (subquery)`, and PostgreSQL re-checks only the outer WHERE after waiting
    # on a row lock, so a trial answered meanwhile would be marked abandoned.
    return Trial.objects.filter(
        item__in=Item.objects.filter(study=study).values("pk"), status=TrialStatus.ASSIGNED, active_at__lt=cutoff
    ).update(status=TrialStatus.ABANDONED)


def trial_current(*, rater: Rater) -> Trial | None:
    """The rater's open trial (a reload shows it again, slots unchanged), else a new one;
    None when they have answered their share or no item is left for them."""
    open_trial = rater.trials.filter(status=TrialStatus.ASSIGNED).first()
    if open_trial is not None:
        touched = Trial.objects.filter(pk=open_trial.pk, status=TrialStatus.ASSIGNED).update(active_at=timezone.now())
        if touched:
            return open_trial
    return _assign(study=rater.study, rater=rater)


def _assign(*, study: Study, rater: Rater) -> Trial | None:
    with transaction.atomic():
        Study.objects.select_for_update().filter(pk=study.pk).first()  # one assigner at a time
        # Checked again under the lock: two requests of one rater (a double click, two
        # tabs) may both have found no open trial, and only the first may assign one.
        open_trial = rater.trials.filter(status=TrialStatus.ASSIGNED).first()
        if open_trial is not None:
            return open_trial
        position = rater.trials.filter(status=TrialStatus.ANSWERED).count()
        if position >= study.trials_per_rater or rater_failed(rater):
            return None
        _abandon_stale(study)
        open_items = _open_items(study, rater)
        if not open_items:
            return None
        fewest = min(count for _, count in open_items)
        item_id = _rng.choice([pk for pk, count in open_items if count == fewest])
        return _create_trial(study=study, rater=rater, item_id=item_id, position=position)


def rater_failed(rater: Rater) -> bool:
    """More failed attention checks than the study allows: no more work for them."""
    return rater.failed_checks > rater.study.max_attention_failures


def _open_items(study: Study, rater: Rater) -> list[tuple[int, int]]:
    """(item id, trials taken) of the items this rater may get: not seen by them, with
    fewer answered or in-progress trials than asked for. Trials of raters who failed their
    attention checks do not count: their items are rated again by others."""
    taken = Q(trials__status__in=[TrialStatus.ASSIGNED, TrialStatus.ANSWERED],
              trials__rater__failed_checks__lte=study.max_attention_failures)
    return list(
        Item.objects.filter(study=study)
        .exclude(trials__rater=rater)
        .annotate(taken=Count("trials", filter=taken))
        .filter(taken__lt=study.ratings_per_pair)
        .values_list("pk", "taken")
    )


def work_left(*, rater: Rater) -> bool:
    """Whether the rater has an open trial or could be given one now (assigns nothing)."""
    if rater.trials.filter(status=TrialStatus.ASSIGNED).exists():
        return True
    answered = rater.trials.filter(status=TrialStatus.ANSWERED).count()
    if answered >= rater.study.trials_per_rater or rater_failed(rater):
        return False
    return bool(_open_items(rater.study, rater))


def _create_trial(*, study: Study, rater: Rater, item_id: int, position: int) -> Trial:
    item = Item.objects.get(pk=item_id)
    candidates = list(Candidate.objects.filter(item=item).values_list("pk", "method_id", "image"))
    attention = position in rater.attention_positions
    shown = [c for c in candidates if c[1] is not None or attention]
    _rng.shuffle(shown)
    # Made while its page is being served: shown from now (a reload keeps this time).
    trial = Trial.objects.create(
        rater=rater, item=item, position=position, token=_token(), attention_check=attention,
        slot_order=[pk for pk, _, _ in shown], shown_at=timezone.now(),
    )
    images = [
        TrialImage(trial=trial, token=_token(), role=TrialImage.Role.SCENE, path=item.scene),
        TrialImage(trial=trial, token=_token(), role=TrialImage.Role.SCENE_OUTLINED, path=item.scene_outlined),
        TrialImage(trial=trial, token=_token(), role=TrialImage.Role.REFERENCE, path=item.reference),
    ]
    images += [
        TrialImage(trial=trial, token=_token(), role=TrialImage.Role.CANDIDATE, slot=slot, path=path)
        for slot, (_, _, path) in enumerate(shown)
    ]
    TrialImage.objects.bulk_create(images)
    trial.created_images = images  # the page about to be rendered needs them: no read back
    return trial


def answer_parse(*, study: Study, criteria: list[Criterion], slots: int, data) -> dict[tuple[int, int], int]:
    """{(slot, criterion id): score} from form fields named `s<slot>-<criterion key>`.

    Score mode: an integer 1-5 for every image and criterion. Rank mode: per criterion, the
    ranks 1..slots, each once."""
    top = 5 if study.response_mode == ResponseMode.SCORE else slots
    answer = {}
    for criterion in criteria:
        for slot in range(slots):
            field = f"s{slot}-{criterion.key}"
            raw = (data.get(field) or "").strip()
            label = f"{criterion.label} of image {slot_label(slot)}"
            if not raw:
                raise AnswerError(f"{label}: missing; choose 1 to {top}")
            if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= top:
                raise AnswerError(f"{label}: {raw!r} is not a whole number from 1 to {top}")
            answer[(slot, criterion.pk)] = int(raw)
        if study.response_mode == ResponseMode.RANK:
            ranks = sorted(answer[(slot, criterion.pk)] for slot in range(slots))
            if ranks != list(range(1, slots + 1)):
                raise AnswerError(f"{criterion.label}: give each rank from 1 to {slots} to exactly one image")
    return answer


def slot_label(slot: int) -> str:
    return chr(ord("A") + slot)


def trial_answer(*, trial: Trial, answer: dict[tuple[int, int], int]) -> bool:
    """Store the ratings; False (and nothing stored) when the trial was already answered or
    was abandoned meanwhile."""
    now = timezone.now()
    with transaction.atomic():
        won = Trial.objects.filter(pk=trial.pk, status=TrialStatus.ASSIGNED).update(
            status=TrialStatus.ANSWERED, answered_at=now, active_at=now)
        if not won:
            return False
        Rating.objects.bulk_create([
            Rating(trial_id=trial.pk, candidate_id=trial.slot_order[slot], criterion_id=criterion_id, slot=slot,
                   score=score)
            for (slot, criterion_id), score in answer.items()
        ])
        if trial.attention_check and not _attention_passed(trial, answer):
            Rater.objects.filter(pk=trial.rater_id).update(failed_checks=F("failed_checks") + 1)
    return True


def _attention_passed(trial: Trial, answer: dict[tuple[int, int], int]) -> bool:
    study = trial.rater.study
    criterion = study.criteria.filter(key=ATTENTION_CRITERION).first()
    if criterion is None:
        return True  # study_create refuses attention checks without the criterion
    methods = dict(Candidate.objects.filter(pk__in=trial.slot_order).values_list("pk", "method_id"))
    scene, others = None, []
    for slot, candidate in enumerate(trial.slot_order):
        value = answer[(slot, criterion.pk)]
        if methods[candidate] is None:
            scene = value
        else:
            others.append(value)
    return scene is not None and attention_check_passed(scene, others, response_mode=study.response_mode)
