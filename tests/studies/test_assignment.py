"""Assignment and answers in-process: quotas, balance, no item twice, reclaiming abandoned
trials, idempotent answers, attention checks and study creation's checks."""
from datetime import timedelta

import pytest
from django.utils import timezone

from studies.assignment import AnswerError, answer_parse, trial_answer, trial_current
from studies.models import Candidate, Rating, Trial, TrialStatus
from studies.services import Entry, ItemChoice, StudyError, rater_enter, study_create

pytestmark = pytest.mark.django_db


def new_rater(study):
    return rater_enter(study=study, entry=Entry(platform="anonymous"), cookie_rater=None)


def full_answer(study, trial, score=2):
    criteria = list(study.criteria.all())
    data = {f"s{slot}-{c.key}": str(score) for slot in range(len(trial.slot_order)) for c in criteria}
    return answer_parse(study=study, criteria=criteria, slots=len(trial.slot_order), data=data)


def test_every_item_gets_the_ratings_asked_for_and_no_more(finished_experiment):
    experiment = finished_experiment()
    study = study_create(name="s", experiment=experiment, ratings_per_pair=2, trials_per_rater=3, attention_checks=0,
                         live=True)
    assert study.items.count() == 6 and study.methods.count() == 3
    seen = []
    for _ in range(5):  # 5 raters x 3 items >= 6 items x 2 ratings: the last ones find little
        rater = new_rater(study)
        while (trial := trial_current(rater=rater)) is not None:
            assert trial_answer(trial=trial, answer=full_answer(study, trial))
            seen.append((rater.pk, trial.item_id))
    assert len(seen) == len(set(seen)) == 12  # no rater saw an item twice; every slot filled once
    per_item = Trial.objects.filter(status=TrialStatus.ANSWERED).values_list("item_id", flat=True)
    assert sorted({i: list(per_item).count(i) for i in per_item}.values()) == [2] * 6
    assert Rating.objects.count() == 12 * 3 * 2  # 3 methods x 2 criteria per trial
    assert trial_current(rater=new_rater(study)) is None  # full


def test_items_are_balanced_while_they_fill(finished_experiment):
    study = study_create(name="s", experiment=finished_experiment(), ratings_per_pair=3, trials_per_rater=2,
                         attention_checks=0, live=True)
    for _ in range(3):  # 6 trials over 6 items: least-rated first gives each item one
        rater = new_rater(study)
        while (trial := trial_current(rater=rater)) is not None:
            trial_answer(trial=trial, answer=full_answer(study, trial))
    counts = [item.trials.filter(status=TrialStatus.ANSWERED).count() for item in study.items.all()]
    assert counts == [1] * 6


def test_a_reload_shows_the_same_trial_and_slots(finished_experiment):
    study = study_create(name="s", experiment=finished_experiment(), ratings_per_pair=1, attention_checks=0, live=True)
    rater = new_rater(study)
    first = trial_current(rater=rater)
    again = trial_current(rater=rater)
    assert (again.pk, again.slot_order) == (first.pk, first.slot_order)
    assert sorted(first.slot_order) == sorted(Candidate.objects.filter(item=first.item, method__isnull=False)
                                              .values_list("pk", flat=True))


def test_an_abandoned_trial_goes_to_another_rater_and_its_late_answer_is_refused(finished_experiment):
    study = study_create(name="s", experiment=finished_experiment(), items=ItemChoice(how="random", n=1, seed=3),
                         ratings_per_pair=1, attention_checks=0, assignment_timeout_seconds=60, live=True)
    slow, fast = new_rater(study), new_rater(study)
    stale = trial_current(rater=slow)
    assert trial_current(rater=fast) is None  # the only slot is taken
    Trial.objects.filter(pk=stale.pk).update(active_at=timezone.now() - timedelta(seconds=61))
    taken_over = trial_current(rater=fast)
    assert taken_over is not None and taken_over.item_id == stale.item_id
    assert Trial.objects.get(pk=stale.pk).status == TrialStatus.ABANDONED
    assert not trial_answer(trial=stale, answer=full_answer(study, stale))  # too late: nothing stored
    assert trial_answer(trial=taken_over, answer=full_answer(study, taken_over))
    assert Rating.objects.filter(trial=stale).count() == 0
    assert Trial.objects.filter(item=stale.item, status=TrialStatus.ANSWERED).count() == 1


def test_an_answer_is_stored_once(finished_experiment):
    study = study_create(name="s", experiment=finished_experiment(), ratings_per_pair=1, attention_checks=0, live=True)
    trial = trial_current(rater=new_rater(study))
    answer = full_answer(study, trial)
    assert trial_answer(trial=trial, answer=answer)
    assert not trial_answer(trial=trial, answer=answer)
    assert Rating.objects.filter(trial=trial).count() == 6


def test_attention_checks_add_the_untouched_scene_at_the_chosen_positions(finished_experiment):
    study = study_create(name="s", experiment=finished_experiment(), ratings_per_pair=2, trials_per_rater=4,
                         attention_checks=2, live=True)
    rater = new_rater(study)
    assert len(rater.attention_positions) == 2
    while (trial := trial_current(rater=rater)) is not None:
        kinds = [Candidate.objects.get(pk=pk).is_attention_check for pk in trial.slot_order]
        assert trial.attention_check == (trial.position in rater.attention_positions)
        assert sum(kinds) == int(trial.attention_check) and len(kinds) == 3 + int(trial.attention_check)
        trial_answer(trial=trial, answer=full_answer(study, trial))


@pytest.mark.parametrize("data, message", [
    ({}, "Similarity of image A: missing"),
    ({"s0-similarity": "6"}, "'6' is not a whole number from 1 to 5"),
    ({"s0-similarity": "x"}, "'x' is not a whole number"),
])
def test_incomplete_or_out_of_range_answers_name_the_field(finished_experiment, data, message):
    study = study_create(name="s", experiment=finished_experiment(), ratings_per_pair=1, attention_checks=0, live=True)
    with pytest.raises(AnswerError, match=message):
        answer_parse(study=study, criteria=list(study.criteria.all()), slots=3, data=data)


def test_rank_mode_wants_each_rank_once(finished_experiment):
    study = study_create(name="s", experiment=finished_experiment(), response_mode="rank", ratings_per_pair=1,
                         attention_checks=0, live=True)
    criteria = list(study.criteria.all())
    ties = {f"s{slot}-{c.key}": "1" for slot in range(3) for c in criteria}
    with pytest.raises(AnswerError, match="give each rank from 1 to 3 to exactly one image"):
        answer_parse(study=study, criteria=criteria, slots=3, data=ties)
    ranks = {f"s{slot}-{c.key}": str(slot + 1) for slot in range(3) for c in criteria}
    assert set(answer_parse(study=study, criteria=criteria, slots=3, data=ranks).values()) == {1, 2, 3}


@pytest.mark.parametrize("kwargs, message", [
    ({"method_keys": ["copy_paste", "nope"]}, "methods nope: not in experiment 'rated' \\(it has copy_paste, pbe_a, pbe_b\\)"),
    ({"items": ItemChoice(how="list", sample_ids=("cat-face", "dog"))}, "sample ids dog are not in dataset 'demo'"),
    ({"items": ItemChoice(how="random", n=7)}, "random:7 asks for more than the 6 samples ready"),
    ({"seed": 5}, "seed 5: not one of the experiment's seeds"),
    ({"trials_per_rater": 7}, "trials per rater: 7 is more than the 6 items"),
    ({"attention_checks": 3, "trials_per_rater": 2}, "attention checks: 3 is more than the 2 trials"),
    ({"response_mode": "rank", "method_keys": ["pbe_a"]}, "ranking needs at least two methods"),
    ({"completion_url": "ftp://x"}, "expected an http\\(s\\) address"),
])
def test_study_creation_names_what_is_wrong_and_leaves_nothing(finished_experiment, media_root, kwargs, message):
    experiment = finished_experiment()
    with pytest.raises(StudyError, match=message):
        study_create(name="s", experiment=experiment, **kwargs)
    assert not (media_root / "studies").exists() or not any((media_root / "studies").rglob("*.png"))


def test_item_choices(finished_experiment):
    experiment = finished_experiment()
    picked = study_create(name="a", experiment=experiment, items=ItemChoice(how="list", sample_ids=("patch-logo", "cat-face")))
    assert list(picked.items.values_list("sample__sample_id", flat=True)) == ["patch-logo", "cat-face"]
    one = study_create(name="b", experiment=experiment, items=ItemChoice(how="random", n=3, seed=7))
    two = study_create(name="c", experiment=experiment, items=ItemChoice(how="random", n=3, seed=7))
    ids = lambda s: list(s.items.values_list("sample__sample_id", flat=True))  # noqa: E731
    assert ids(one) == ids(two) and len(ids(one)) == 3
    assert ItemChoice.parse("random:3:7") == ItemChoice(how="random", n=3, seed=7)
    assert ItemChoice.parse("list:a, b") == ItemChoice(how="list", sample_ids=("a", "b"))
    with pytest.raises(StudyError, match="expected all, random:N"):
        ItemChoice.parse("some")


def test_a_rater_failing_an_attention_check_gets_no_more_work_and_their_trials_are_rated_again(finished_experiment):
    from studies.assignment import work_left
    from studies.services import rater_finish

    study = study_create(name="s", experiment=finished_experiment(), items=ItemChoice(how="random", n=2, seed=0),
                         ratings_per_pair=1, trials_per_rater=2, attention_checks=1, live=True)
    careless = new_rater(study)
    careless.attention_positions = [0]
    careless.save()
    trial = trial_current(rater=careless)
    assert trial.attention_check
    assert trial_answer(trial=trial, answer=full_answer(study, trial, score=1))  # the scene scored best: failed
    careless.refresh_from_db()
    assert careless.failed_checks == 1
    assert trial_current(rater=careless) is None and not work_left(rater=careless)
    assert rater_finish(rater=careless)  # they answered something: they get the code
    # Their item goes back to the pool: two more raters rate both items.
    others = [new_rater(study) for _ in range(2)]
    items = []
    for rater in others:
        rater.attention_positions = []
        rater.save()
        while (t := trial_current(rater=rater)) is not None:
            assert trial_answer(trial=t, answer=full_answer(study, t))
            items.append(t.item_id)
    assert sorted(items).count(trial.item_id) == 1 and len(items) == 2


@pytest.mark.parametrize("scene, others, mode, passed", [
    (5, [5, 5, 5], "score", True), (4, [2, 3, 4], "score", True), (3, [3, 3, 3], "score", False),
    (2, [1, 3, 4], "score", False), (4, [1, 2, 3], "rank", True), (3, [1, 2, 4], "rank", False),
])
def test_the_attention_check_rule(scene, others, mode, passed):
    from studies.quality import attention_check_passed

    assert attention_check_passed(scene, others, response_mode=mode) is passed


def test_a_completion_code_needs_the_raters_share_answered(finished_experiment):
    from studies.services import rater_finish

    study = study_create(name="s", experiment=finished_experiment(), ratings_per_pair=2, trials_per_rater=3,
                         attention_checks=0, live=True)
    rater = new_rater(study)
    trial = trial_current(rater=rater)
    trial_answer(trial=trial, answer=full_answer(study, trial))
    assert not rater_finish(rater=rater)  # 1 of 3: work is left
    from studies.services import study_state_set

    study_state_set(study=study, state="closed")
    rater.study.refresh_from_db()
    assert rater_finish(rater=rater)  # closed on them: paid for what they did
