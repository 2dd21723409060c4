"""50 raters at once over real HTTP against the live server (PostgreSQL in CI): every
submitted rating is stored exactly once, double clicks included, and no item gets more
answered trials than asked for."""
import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.cookiejar import CookieJar
from urllib.parse import urlencode
from urllib.request import HTTPCookieProcessor, build_opener

import pytest
from django.db import connections

from studies.models import Candidate, Rating, Trial, TrialStatus
from studies.services import study_create

pytestmark = pytest.mark.django_db(transaction=True)
RATERS = 50
RATINGS_PER_PAIR = 5


class RaterClient:
    def __init__(self, base: str):
        self.base = base
        self.jar = CookieJar()
        self.opener = build_opener(HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> tuple[str, str]:
        with self.opener.open(self.base + path, timeout=60) as response:
            return response.url, response.read().decode()

    def post(self, path: str, data: dict) -> tuple[str, str]:
        with self.opener.open(self.base + path, data=urlencode(data).encode(), timeout=60) as response:
            return response.url, response.read().decode()


def csrf(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def run_rater(base: str, token: str, start: threading.Barrier, submitted: list, lock: threading.Lock):
    client = RaterClient(base)
    start.wait()
    url, html = client.get(f"/r/{token}/")
    assert "/consent/" in url, url
    url, html = client.post(f"/r/{token}/consent/", {"csrfmiddlewaretoken": csrf(html)})
    number = 0
    while "/rate/" in url and 'name="trial"' in html:
        trial = re.search(r'name="trial" value="([^"]+)"', html).group(1)
        fields = sorted(set(re.findall(r'name="(s\d+-[a-z_]+)"', html)))
        data = {"csrfmiddlewaretoken": csrf(html), "trial": trial, **{f: "2" for f in fields}}
        number += 1
        if number % 2:  # a double click: the same answer twice at once
            with ThreadPoolExecutor(2) as pool:
                results = list(pool.map(lambda _: client.post(f"/r/{token}/rate/", data), range(2)))
            url, html = results[-1]
        else:
            url, html = client.post(f"/r/{token}/rate/", data)
        with lock:
            submitted.append((trial, len(fields)))
    connections.close_all()  # this thread's connection, if the ORM opened one
    return url, (re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S) or re.search("", "")).group(0)


def test_fifty_raters_at_once_store_every_rating_exactly_once(live_server, finished_experiment):
    study = study_create(name="crowd", experiment=finished_experiment(), ratings_per_pair=RATINGS_PER_PAIR,
                         trials_per_rater=2, attention_checks=1, max_attention_failures=1, live=True)
    start = threading.Barrier(RATERS)
    submitted: list[tuple[str, int]] = []
    lock = threading.Lock()
    with ThreadPoolExecutor(RATERS) as pool:
        ends = list(pool.map(lambda _: run_rater(live_server.url, study.token, start, submitted, lock), range(RATERS)))
    # 6 items x 5 ratings = 30 trials for 100 wanted: the quotas fill, and the rest find no work.
    answered = Trial.objects.filter(item__study=study, status=TrialStatus.ANSWERED)
    per_item = Counter(answered.values_list("item_id", flat=True))
    assert sorted(per_item.values()) == [RATINGS_PER_PAIR] * 6
    assert len(submitted) == len({t for t, _ in submitted}) == answered.count() == 30
    stored = Counter(Rating.objects.filter(trial__item__study=study).values_list("trial__token", flat=True))
    assert stored == Counter({trial: fields for trial, fields in submitted})  # each once, none lost
    assert Rating.objects.count() == len(set(Rating.objects.values_list("trial_id", "candidate_id", "criterion_id")))
    pairs = list(Trial.objects.filter(item__study=study).values_list("rater_id", "item_id"))
    assert len(pairs) == len(set(pairs))  # no rater saw an item twice
    # Every rater ends on the completion page (they answered something) or "no work left".
    assert all(url.endswith("/done/") or "No work left" in h1 for url, h1 in ends), [e for e in ends if not e[0].endswith("/done/")]
    assert Trial.objects.filter(item__study=study, status=TrialStatus.ASSIGNED).count() == 0
    # Every answered trial rated each method's candidate of its item once per criterion.
    for trial in answered:
        methods = Counter(Candidate.objects.get(pk=pk).method_id for pk in trial.slot_order)
        assert methods[None] == int(trial.attention_check) and len(methods) - (None in methods) == 3


def test_an_answer_committed_while_the_stale_sweep_waits_stays_answered(finished_experiment):
    """The sweep's UPDATE waits on the row an answer is writing; once the answer commits, the
    sweep must see it answered (on PostgreSQL only the UPDATE's own WHERE is re-checked)."""
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from studies.assignment import _abandon_stale, trial_current
    from studies.services import Entry, rater_enter

    study = study_create(name="race", experiment=finished_experiment(), ratings_per_pair=1, attention_checks=0,
                         assignment_timeout_seconds=60, live=True)
    trial = trial_current(rater=rater_enter(study=study, entry=Entry(platform="anonymous"), cookie_rater=None))
    Trial.objects.filter(pk=trial.pk).update(active_at=timezone.now() - timedelta(seconds=120))
    locked, release = threading.Event(), threading.Event()

    def answer():
        with transaction.atomic():
            Trial.objects.filter(pk=trial.pk, status=TrialStatus.ASSIGNED).update(status=TrialStatus.ANSWERED)
            locked.set()
            release.wait(10)
        connections.close_all()

    writer = threading.Thread(target=answer)
    writer.start()
    assert locked.wait(10)
    threading.Timer(1.0, release.set).start()  # the sweep below blocks on the row until then
    with transaction.atomic():
        swept = _abandon_stale(study)
    writer.join()
    assert swept == 0 and Trial.objects.get(pk=trial.pk).status == TrialStatus.ANSWERED
