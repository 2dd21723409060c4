"""The rater's pages through Django's test client: entry from each platform, consent, trials,
completion, what a rater may and may not read, and CSRF."""
import re

import pytest
from django.test import Client

from studies.models import Rater, Rating, Trial, TrialStatus
from studies.services import study_create, study_state_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(finished_experiment):
    return study_create(name="s", experiment=finished_experiment(), ratings_per_pair=2, trials_per_rater=2,
                        attention_checks=1, max_attention_failures=1, completion_code="DONE42", live=True)


def enter(client, study, query=""):
    response = client.get(f"/r/{study.token}/{query}")
    assert response.status_code == 302, response.content[:300]
    return response


def consent(client, study):
    response = client.post(f"/r/{study.token}/consent/")
    assert response.status_code == 303


def trial_form(client, study):
    response = client.get(f"/r/{study.token}/rate/")
    assert response.status_code == 200, response
    html = response.content.decode()
    token = re.search(r'name="trial" value="([^"]+)"', html).group(1)
    fields = sorted(set(re.findall(r'name="(s\d+-[a-z_]+)"', html)))
    return html, token, fields


def answer_all(client, study, score="1"):
    while True:
        response = client.get(f"/r/{study.token}/rate/")
        if response.status_code == 302:
            return response
        _, token, fields = trial_form(client, study)
        posted = client.post(f"/r/{study.token}/rate/", {"trial": token, **{f: score for f in fields}})
        assert posted.status_code == 303


def test_a_rater_goes_from_the_link_to_the_completion_code(study):
    client = Client()
    assert enter(client, study)["Location"] == f"/r/{study.token}/consent/?entered=1"
    consent(client, study)
    html, _, fields = trial_form(client, study)
    assert "Item 1 of 2" in html and len(fields) in (6, 8)
    done = answer_all(client, study)
    assert done["Location"] == f"/r/{study.token}/done/"
    page = client.get(done["Location"]).content.decode()
    assert "DONE42" in page
    rater = Rater.objects.get()
    assert rater.finished_at is not None and rater.trials.filter(status=TrialStatus.ANSWERED).count() == 2


def test_prolific_entry_keeps_its_ids_and_sends_the_rater_back_with_the_code(finished_experiment):
    study = study_create(name="p", experiment=finished_experiment(), ratings_per_pair=1, trials_per_rater=1,
                         attention_checks=0, completion_code="CC1", live=True,
                         completion_url="https://app.prolific.com/submissions/complete")
    client = Client()
    enter(client, study, "?PROLIFIC_PID=pid1&STUDY_ID=st1&SESSION_ID=se1")
    rater = Rater.objects.get()
    assert (rater.platform, rater.external_id, rater.external_study_id, rater.external_session_id) == \
        ("prolific", "pid1", "st1", "se1")
    consent(client, study)
    answer_all(client, study)
    page = client.get(f"/r/{study.token}/done/").content.decode()
    assert 'href="https://app.prolific.com/submissions/complete?cc=CC1"' in page
    # The same person from another browser continues as the same rater.
    other = Client()
    enter(other, study, "?PROLIFIC_PID=pid1&STUDY_ID=st1&SESSION_ID=se2")
    assert Rater.objects.count() == 1 and Rater.objects.get().external_session_id == "se2"


def test_mturk_preview_takes_no_answers_and_the_accepted_hit_posts_back_to_mturk(finished_experiment):
    study = study_create(name="m", experiment=finished_experiment(), ratings_per_pair=1, trials_per_rater=1,
                         attention_checks=0, live=True)
    client = Client()
    preview = client.get(f"/r/{study.token}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=h1")
    assert preview.status_code == 200 and b"preview" in preview.content and Rater.objects.count() == 0
    assert "frame-ancestors 'self' https://www.mturk.com https://workersandbox.mturk.com" == \
        preview["Content-Security-Policy"] and "X-Frame-Options" not in preview
    enter(client, study, "?assignmentId=a1&hitId=h1&workerId=w1&turkSubmitTo=https%3A%2F%2Fworkersandbox.mturk.com")
    consent(client, study)
    answer_all(client, study)
    page = client.get(f"/r/{study.token}/done/").content.decode()
    assert 'action="https://workersandbox.mturk.com/mturk/externalSubmit"' in page
    assert 'name="assignmentId" value="a1"' in page


def test_turk_submit_to_elsewhere_is_ignored(finished_experiment):
    study = study_create(name="m", experiment=finished_experiment(), ratings_per_pair=1, trials_per_rater=1,
                         attention_checks=0, live=True)
    client = Client()
    enter(client, study, "?assignmentId=a1&hitId=h1&workerId=w1&turkSubmitTo=https%3A%2F%2Fevil.example")
    assert Rater.objects.get().turk_submit_to == ""


def test_a_rater_reads_only_their_own_images_and_trials(study):
    alice, bob = Client(), Client()
    for client in (alice, bob):
        enter(client, study)
        consent(client, study)
    html, token, fields = trial_form(alice, study)
    images = re.findall(r'src="(/r/[^"]+/i/[^"]+)"', html)
    assert len(images) >= 5
    assert all(alice.get(url).status_code == 200 for url in images)
    assert all(bob.get(url).status_code == 404 for url in images)
    assert Client().get(images[0]).status_code == 404
    # Bob cannot answer Alice's trial.
    assert bob.post(f"/r/{study.token}/rate/", {"trial": token, **{f: "1" for f in fields}}).status_code == 404
    assert Rating.objects.count() == 0


def test_a_double_submission_stores_one_rating_each(study):
    client = Client()
    enter(client, study)
    consent(client, study)
    _, token, fields = trial_form(client, study)
    data = {"trial": token, **{f: "3" for f in fields}}
    assert client.post(f"/r/{study.token}/rate/", data).status_code == 303
    assert client.post(f"/r/{study.token}/rate/", data).status_code == 303
    assert Rating.objects.count() == len(fields)
    assert Trial.objects.filter(status=TrialStatus.ANSWERED).count() == 1


def test_an_incomplete_answer_is_shown_again_with_its_error_and_nothing_stored(study):
    client = Client()
    enter(client, study)
    consent(client, study)
    _, token, fields = trial_form(client, study)
    response = client.post(f"/r/{study.token}/rate/", {"trial": token, fields[0]: "2"})
    assert response.status_code == 400
    assert b"missing; choose 1 to 5" in response.content and Rating.objects.count() == 0
    assert b'value="2" required checked' in response.content  # what was given is kept


def test_forms_need_the_csrf_token(study):
    client = Client(enforce_csrf_checks=True)
    enter(client, study)
    assert client.post(f"/r/{study.token}/consent/").status_code == 403


def test_a_full_study_says_no_work_left_and_a_paused_one_says_so(finished_experiment):
    study = study_create(name="f", experiment=finished_experiment(), ratings_per_pair=1, trials_per_rater=6,
                         attention_checks=0, live=True)
    first = Client()
    enter(first, study)
    consent(first, study)
    answer_all(first, study)
    late = Client()
    enter(late, study)
    consent(late, study)
    assert b"No work left" in late.get(f"/r/{study.token}/rate/").content
    study_state_set(study=study, state="paused")
    assert b"This study is paused" in Client().get(f"/r/{study.token}/").content


def test_researcher_pages_need_a_login(study):
    for url in ("/studies/", f"/studies/{study.pk}/", f"/studies/{study.pk}/ratings.csv",
                f"/studies/new/{study.experiment.pk}/"):
        response = Client().get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


def test_a_browser_refusing_the_cookie_is_told_so_instead_of_looping(study):
    client = Client()
    response = client.get(f"/r/{study.token}/")
    client.cookies.clear()  # as a browser blocking third-party cookies would
    page = client.get(response["Location"])
    assert page.status_code == 200 and b"blocked this page's cookie" in page.content
    assert f'href="/r/{study.token}/" target="_blank"'.encode() in page.content


def test_the_done_page_before_the_share_is_answered_sends_back_to_the_trials(study):
    client = Client()
    enter(client, study)
    consent(client, study)
    _, token, fields = trial_form(client, study)
    client.post(f"/r/{study.token}/rate/", {"trial": token, **{f: "5" for f in fields}})
    response = client.get(f"/r/{study.token}/done/")
    assert response.status_code == 302 and response["Location"] == f"/r/{study.token}/rate/"


def test_a_crafted_digit_is_refused_not_a_server_error(study):
    client = Client()
    enter(client, study)
    consent(client, study)
    _, token, fields = trial_form(client, study)
    response = client.post(f"/r/{study.token}/rate/", {"trial": token, **{f: "\u00b2" for f in fields}})
    assert response.status_code == 400 and b"is not a whole number from 1 to 5" in response.content


def test_the_no_cookie_page_keeps_the_platform_ids(study):
    client = Client()
    response = client.get(f"/r/{study.token}/?PROLIFIC_PID=p9&STUDY_ID=s9&SESSION_ID=x9")
    client.cookies.clear()
    page = client.get(response["Location"]).content.decode()
    assert f'href="/r/{study.token}/?PROLIFIC_PID=p9&amp;STUDY_ID=s9&amp;SESSION_ID=x9"' in page
