"""Human rating studies in a real browser (Debian's Chromium driven by Playwright) against the
live server: a rater answering by mouse and by keyboard, one image per screen, rank mode, the
researcher's pages, everything a rater's browser receives (the blinding), and a phone."""
import csv
import random
import re
import shutil
import zlib
from urllib.parse import urlsplit

import pytest
from django.db import connections

from evalsite.models import Method, Output, Sample
from studies.exports import RATING_COLUMNS
from studies.models import Candidate, Rater, Rating, Study, Trial, TrialImage, TrialStatus
from studies.services import study_create
from tests.conftest import require_tool

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def no_heartbeat_thread_writes(settings):
    """`finished_experiment` runs its jobs in this process: no heartbeat thread needed."""
    settings.EVALSITE_HEARTBEAT_SECONDS = 3600


@pytest.fixture
def browser(monkeypatch):
    """One Chromium; each rater or researcher gets a context of their own (own cookies)."""
    require_tool("chromium", "Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls this test
    # makes between browser steps are ordinary blocking calls, which Django then refuses.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()
            # While Playwright's loop runs, asgiref gives this test's ORM calls their own
            # connection, which Django's test-database teardown would not close.
            connections.close_all()


def new_page(browser, **options):
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 1400}, **options})
    context.set_default_timeout(30_000)
    return context.new_page()


# --- A rater's steps -------------------------------------------------------------------------


def navigate(page, action):
    """Do `action` (a click, a key press) and wait until the page it leads to has loaded
    (images included); the main document's response."""
    with page.expect_navigation(wait_until="load") as navigation:
        action()
    return navigation.value


def enter_and_consent(page, live_server, study: Study) -> None:
    page.goto(f"{live_server.url}/r/{study.token}/")
    assert urlsplit(page.url).path == f"/r/{study.token}/consent/"
    navigate(page, lambda: page.click("#consent"))
    assert urlsplit(page.url).path == f"/r/{study.token}/rate/"


SHOWN = """() => {
  const scene = document.getElementById('scene');
  return {
    token: document.querySelector('#trial-form input[name=trial]').value,
    number: document.getElementById('trial-number').textContent.trim(),
    candidates: [...document.querySelectorAll('#trial-form img.candidate-image')].map((img) => img.getAttribute('src')),
    rows: [...document.querySelectorAll('#trial-form .row')].map((row) => row.querySelector('input').name),
    scene: scene.getAttribute('src'), plain: scene.dataset.plain, outlined: scene.dataset.outlined,
    reference: document.getElementById('reference').getAttribute('src'),
  };
}"""


def shown(page) -> dict:
    """What the trial page shows: its token, progress text, candidate image URLs in DOM
    order (slot A first) and its answer rows (`s<slot>-<criterion>`) in DOM order."""
    return page.evaluate(SHOWN)


def scene_loaded(page) -> None:
    page.wait_for_function("() => { const scene = document.getElementById('scene');"
                           " return scene.complete && scene.naturalWidth > 0; }")


def current_row(page) -> str:
    return page.evaluate("() => document.querySelector('#trial-form .row.current input').name")


def some_values(rows, seed: int, top: int = 5) -> dict[str, int]:
    rng = random.Random(seed)
    return {name: rng.randint(1, top) for name in rows}


def checked(page, name: str, value: int) -> bool:
    return page.is_checked(f"#trial-form input[name='{name}'][value='{value}']")


def answer_by_mouse(page, values: dict[str, int], rows) -> None:
    for name in rows:
        page.click(f"#trial-form input[name='{name}'][value='{values[name]}'] + span")
        assert checked(page, name, values[name])


def answer_by_keyboard(page, values: dict[str, int], rows) -> None:
    """Digits only: the highlighted row takes the digit, and the highlight moves on."""
    for index, name in enumerate(rows):
        assert current_row(page) == name, f"row {index}: {name} should be highlighted"
        page.keyboard.press(str(values[name]))
        assert checked(page, name, values[name])
        if index + 1 < len(rows):
            assert current_row(page) == rows[index + 1]


def assert_stored_as_shown(view: dict, values: dict[str, int], criteria: list[str]) -> Trial:
    """The trial's candidate image URLs, in the page's DOM order, are its slots 0..K-1; the
    image in slot s is the candidate slot_order[s]; and the ratings are what was typed for
    each slot, stored for that candidate, once per (candidate, criterion)."""
    trial = Trial.objects.get(token=view["token"])
    assert trial.status == TrialStatus.ANSWERED
    images = {image.token: image for image in TrialImage.objects.filter(trial=trial, role=TrialImage.Role.CANDIDATE)}
    tokens = [src.rsplit("/", 1)[1] for src in view["candidates"]]
    assert sorted(tokens) == sorted(images)
    assert [images[token].slot for token in tokens] == list(range(len(trial.slot_order)))
    candidates = Candidate.objects.in_bulk(trial.slot_order)
    for slot, token in enumerate(tokens):
        assert images[token].path == candidates[trial.slot_order[slot]].image
    assert sorted(view["rows"]) == sorted(f"s{slot}-{key}" for slot in range(len(tokens)) for key in criteria)
    ratings = list(Rating.objects.filter(trial=trial).select_related("criterion"))
    assert len(ratings) == len(trial.slot_order) * len(criteria)
    stored = {(r.slot, r.criterion.key): (r.candidate_id, r.score) for r in ratings}
    assert len(stored) == len(ratings)
    assert stored == {
        (slot, key): (trial.slot_order[slot], values[f"s{slot}-{key}"])
        for slot in range(len(tokens)) for key in criteria
    }
    return trial


# --- 1. Side by side, by mouse and by keyboard ------------------------------------------------


def test_a_rater_answers_by_mouse_and_by_keyboard_and_gets_the_completion_code(
    live_server, browser, finished_experiment
):
    study = study_create(name="walk", experiment=finished_experiment(), ratings_per_pair=2, trials_per_rater=3,
                         attention_checks=1, max_attention_failures=1, completion_code="WALK-7Q", live=True)
    criteria = list(study.criteria.values_list("key", flat=True))
    page = new_page(browser)
    enter_and_consent(page, live_server, study)
    done = []

    # Trial 1 by mouse: click the answer of every row, then the submit button.
    first = shown(page)
    assert first["number"] == "Item 1 of 3"
    assert len(first["candidates"]) in (3, 4) and len(first["rows"]) == 2 * len(first["candidates"])
    values = some_values(first["rows"], seed=1)
    answer_by_mouse(page, values, first["rows"])
    navigate(page, lambda: page.click("#submit-trial"))
    done.append((first, values))

    # Trial 2: a reload shows the same trial, slots unchanged, and the count does not move.
    second = shown(page)
    assert second["number"] == "Item 2 of 3" and second["token"] != first["token"]
    page.reload(wait_until="load")
    assert shown(page) == second
    # M switches the scene between its outlined and plain versions.
    assert second["scene"] == second["outlined"] != second["plain"]
    page.keyboard.press("m")
    assert page.get_attribute("#scene", "src") == second["plain"]
    assert page.get_attribute("#outline-toggle", "aria-pressed") == "false"
    scene_loaded(page)
    page.keyboard.press("m")
    assert page.get_attribute("#scene", "src") == second["outlined"]
    assert page.get_attribute("#outline-toggle", "aria-pressed") == "true"
    # Keyboard only: digits answer the highlighted row and move on; Enter submits.
    values = some_values(second["rows"], seed=2)
    answer_by_keyboard(page, values, second["rows"])
    navigate(page, lambda: page.keyboard.press("Enter"))
    done.append((second, values))

    # Trial 3 mixed: a click on a row moves the highlight past it, then the keys go on.
    third = shown(page)
    assert third["number"] == "Item 3 of 3"
    values = some_values(third["rows"], seed=3)
    half = len(third["rows"]) // 2
    answer_by_mouse(page, values, third["rows"][:half])
    assert current_row(page) == third["rows"][half]
    answer_by_keyboard(page, values, third["rows"][half:])
    navigate(page, lambda: page.keyboard.press("Enter"))
    done.append((third, values))

    assert urlsplit(page.url).path == f"/r/{study.token}/done/"
    assert page.text_content("#completion-code").strip() == "WALK-7Q"

    rater = Rater.objects.get(study=study)
    assert rater.finished_at is not None
    assert rater.trials.filter(status=TrialStatus.ANSWERED).count() == 3
    trials = [assert_stored_as_shown(view, values, criteria) for view, values in done]
    assert sum(t.attention_check for t in trials) == 1
    assert Rating.objects.filter(trial__rater=rater).count() == sum(len(view["rows"]) for view, _ in done)


# --- 2. One image per screen ------------------------------------------------------------------


def test_one_image_per_screen_by_keyboard(live_server, browser, finished_experiment):
    study = study_create(name="single", experiment=finished_experiment(), layout="single", ratings_per_pair=2,
                         trials_per_rater=2, attention_checks=1, max_attention_failures=1, live=True)
    criteria = list(study.criteria.values_list("key", flat=True))
    page = new_page(browser)
    enter_and_consent(page, live_server, study)
    visible = page.locator("#trial-form fieldset.candidate:visible")
    done = []
    for number in (1, 2):
        view = shown(page)
        assert view["number"] == f"Item {number} of 2"
        values = some_values(view["rows"], seed=10 + number)
        last = len(view["candidates"]) - 1
        if number == 2:
            # The buttons page through the images; submitting with answers missing on an
            # image out of sight brings that image back instead of sending.
            for slot in range(1, last + 1):
                page.click("#next-image")
                assert visible.count() == 1 and visible.get_attribute("data-index") == str(slot)
            page.evaluate("window.stayed = true")
            page.click("#submit-trial")
            assert visible.count() == 1 and visible.get_attribute("data-index") == "0"
            assert current_row(page) == view["rows"][0]
            page.wait_for_timeout(500)
            assert page.evaluate("window.stayed") is True and page.locator("#answer-error").count() == 0
            assert not Rating.objects.filter(trial__token=view["token"]).exists()
        for index, name in enumerate(view["rows"]):
            slot = int(name[1:].split("-")[0])
            assert current_row(page) == name
            assert visible.count() == 1 and visible.get_attribute("data-index") == str(slot)
            assert page.is_hidden("#previous-image") == (slot == 0)
            assert page.is_hidden("#next-image") == (slot == last)
            assert page.is_hidden("#submit-trial") == (slot != last)
            if number == 1 and index == len(criteria):
                # On image B's first row, Backspace goes back to A's last row; a new digit
                # there replaces A's answer and brings B back.
                page.keyboard.press("Backspace")
                assert current_row(page) == view["rows"][index - 1]
                assert visible.count() == 1 and visible.get_attribute("data-index") == "0"
                changed = values[view["rows"][index - 1]] % 5 + 1
                values[view["rows"][index - 1]] = changed
                page.keyboard.press(str(changed))
                assert checked(page, view["rows"][index - 1], changed)
                assert current_row(page) == name and visible.get_attribute("data-index") == str(slot)
            page.keyboard.press(str(values[name]))
            assert checked(page, name, values[name])
        assert visible.count() == 1 and visible.get_attribute("data-index") == str(last)
        navigate(page, lambda: page.keyboard.press("Enter"))
        done.append((view, values))

    assert urlsplit(page.url).path == f"/r/{study.token}/done/"
    trials = [assert_stored_as_shown(view, values, criteria) for view, values in done]
    assert sum(t.attention_check for t in trials) == 1


# --- 3. Rank mode -----------------------------------------------------------------------------


def test_rank_mode_takes_a_permutation_and_refuses_ties(live_server, browser, finished_experiment):
    study = study_create(name="rank", experiment=finished_experiment(), response_mode="rank", ratings_per_pair=2,
                         trials_per_rater=2, attention_checks=0, live=True)
    criteria = list(study.criteria.values_list("key", flat=True))
    page = new_page(browser)
    enter_and_consent(page, live_server, study)

    def ranks(*per_criterion):
        return {f"s{slot}-{key}": order[slot] for key, order in zip(criteria, per_criterion) for slot in range(3)}

    first = shown(page)
    assert len(first["candidates"]) == 3
    assert page.locator("#trial-form .row").first.locator("input").count() == 3  # ranks 1..3
    values = ranks([2, 3, 1], [3, 1, 2])
    answer_by_keyboard(page, values, first["rows"])
    navigate(page, lambda: page.keyboard.press("Enter"))
    assert_stored_as_shown(first, values, criteria)

    # Typing rank 1 for B when A has it takes it from A: the page keeps the ranks a
    # permutation, and the highlight comes back to A, now unranked.
    second = shown(page)
    assert second["number"] == "Item 2 of 2"
    tied = ranks([1, 1, 2], [1, 2, 3])
    answer_by_keyboard(page, tied, second["rows"])
    a_first = f"s0-{criteria[0]}"
    assert page.locator(f'input[name="{a_first}"]:checked').count() == 0
    assert current_row(page) == a_first

    # Ties posted around the page are refused by the server, and nothing is stored.
    trial = Trial.objects.get(token=second["token"])
    form = {"trial": second["token"], **{name: str(value) for name, value in tied.items()},
            "csrfmiddlewaretoken": page.input_value("input[name=csrfmiddlewaretoken]")}
    posted = page.request.post(f"{live_server.url}/r/{study.token}/rate/", form=form, max_redirects=0)
    label = study.criteria.get(key=criteria[0]).label
    assert posted.status == 400 and f"{label}: give each rank from 1 to 3 to exactly one image" in posted.text()
    assert trial.status == TrialStatus.ASSIGNED and not trial.ratings.exists()

    # A takes the rank left over, by keyboard, and the answer goes through.
    page.keyboard.press("3")
    fixed = {**tied, a_first: 3}
    navigate(page, lambda: page.keyboard.press("Enter"))
    assert urlsplit(page.url).path == f"/r/{study.token}/done/"
    assert_stored_as_shown(second, fixed, criteria)
    assert Rating.objects.filter(trial__rater__study=study).count() == 2 * 3 * len(criteria)


# --- 4. The researcher ------------------------------------------------------------------------


def test_a_researcher_creates_a_study_shares_the_link_and_downloads_the_ratings(
    live_server, browser, finished_experiment, django_user_model, tmp_path
):
    django_user_model.objects.create_user("rita", password="a-long-password")
    experiment = finished_experiment()
    page = new_page(browser, accept_downloads=True)
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    assert urlsplit(page.url).path == "/accounts/login/"
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", "a-long-password")
    navigate(page, lambda: page.click("button[type=submit]"))
    assert urlsplit(page.url).path == f"/experiments/{experiment.pk}/"

    navigate(page, lambda: page.click("#new-study"))
    assert urlsplit(page.url).path == f"/studies/new/{experiment.pk}/"
    page.fill("input[name=name]", "Browser study")
    assert page.locator("input[name=methods]").count() == 3
    page.uncheck("input[name=methods][value=pbe_b]")
    page.select_option("select[name=items]", "random")
    page.fill("input[name=n_items]", "4")
    # The rater below answers at random: a failed attention check must not end their work.
    page.fill("input[name=max_attention_failures]", "1")
    navigate(page, lambda: page.click("#create-study"))
    study = Study.objects.get(name="Browser study")
    assert urlsplit(page.url).path == f"/studies/{study.pk}/"
    assert list(study.methods.values_list("key", flat=True)) == ["copy_paste", "pbe_a"]
    assert study.items.count() == 4 and study.trials_per_rater == 4 and study.state == "live"
    assert study.created_by.username == "rita"
    link = page.input_value("#rater-link")
    assert link == f"{live_server.url}/r/{study.token}/"

    # A rater in a browser of their own answers two items and leaves the third open.
    rater_page = new_page(browser)
    rater_page.goto(link)
    navigate(rater_page, lambda: rater_page.click("#consent"))
    for number in (1, 2):
        view = shown(rater_page)
        assert view["number"] == f"Item {number} of 4"
        answer_by_keyboard(rater_page, some_values(view["rows"], seed=20 + number), view["rows"])
        navigate(rater_page, lambda: rater_page.keyboard.press("Enter"))
    assert shown(rater_page)["number"] == "Item 3 of 4"

    page.reload(wait_until="load")
    progress = page.text_content("#study-progress-text")
    assert progress.startswith("2 / 80 trials answered (")
    assert "1 in progress · 1 raters started, 0 finished" in progress
    assert page.locator("#table3 tbody tr").count() == 2
    assert page.locator("#table3 tbody tr").evaluate_all("(rows) => rows.map((r) => r.dataset.method)") == \
        ["copy_paste", "pbe_a"]

    with page.expect_download() as download_info:
        page.click("#download-ratings")
    download = download_info.value
    assert download.suggested_filename == "Browser_study-ratings.csv"
    saved = tmp_path / "ratings.csv"
    download.save_as(saved)
    with open(saved, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == RATING_COLUMNS
    stored = Rating.objects.filter(trial__rater__study=study).count()
    assert stored >= 2 * 2 * 2  # two trials, at least two images, two criteria
    assert len(rows) - 1 == stored
    assert {row[RATING_COLUMNS.index("method")] for row in rows[1:]} <= {"copy_paste", "pbe_a", ""}


# --- 5. Blinding ------------------------------------------------------------------------------


class Recorder:
    """Every request and response of one page, in the order the browser issued them, and
    the bodies of the responses (read after each page load, while they are at hand)."""

    def __init__(self, page):
        self.requests = []
        self.responses = []
        self.bodies = {}
        page.on("request", lambda request: self.requests.append(request))
        page.on("response", lambda response: self.responses.append(response))

    def read_bodies(self):
        for index, response in enumerate(self.responses):
            if index in self.bodies:
                continue
            self.bodies[index] = b"" if 300 <= response.status < 400 else response.body()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_ALLOWED = {b"IHDR", b"IDAT", b"IEND", b"sRGB", b"gAMA", b"pHYs"}


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, checking the CRCs and that nothing follows IEND."""
    assert data[:8] == PNG_SIGNATURE
    chunks, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        crc = int.from_bytes(data[at + 8 + length:at + 12 + length], "big")
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append((kind, body))
        at += 12 + length
        if kind == b"IEND":
            break
    assert at == len(data), "bytes after IEND"
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    return chunks


def _rate_everything(page, live_server, study, recorder, criteria, seed):
    """Consent, then every trial by keyboard (M pressed once, so the plain scene is loaded
    too); for each trial, what was shown and typed."""
    page.goto(f"{live_server.url}/r/{study.token}/")
    recorder.read_bodies()
    mark = len(recorder.requests)  # requests from here on are the next page's
    navigate(page, lambda: page.click("#consent"))
    trials = []
    while urlsplit(page.url).path.endswith("/rate/"):
        recorder.read_bodies()
        view = shown(page)
        view["requested_from"] = mark
        page.keyboard.press("m")
        scene_loaded(page)
        values = some_values(view["rows"], seed=seed + len(trials))
        answer_by_keyboard(page, values, view["rows"])
        recorder.read_bodies()
        mark = len(recorder.requests)
        navigate(page, lambda: page.keyboard.press("Enter"))
        trials.append((view, values))
    recorder.read_bodies()
    assert urlsplit(page.url).path == f"/r/{study.token}/done/"
    return trials


def test_a_raters_browser_receives_nothing_that_tells_the_methods_apart(live_server, browser, finished_experiment):
    experiment = finished_experiment(name="blinding-experiment")
    study = study_create(name="blinding-study", experiment=experiment, ratings_per_pair=2, trials_per_rater=6,
                         attention_checks=1, max_attention_failures=1, live=True)
    criteria = list(study.criteria.values_list("key", flat=True))
    sessions = []
    for seed in (100, 200):  # two raters, six trials each
        page = new_page(browser)
        recorder = Recorder(page)
        trials = _rate_everything(page, live_server, study, recorder, criteria, seed)
        sessions.append((page, recorder, trials))

    # What must not reach the browser: the methods' keys, families, identities and
    # checkpoints, the samples' ids, the outputs' and the copies' file names.
    methods = Method.objects.filter(pk__in=study.methods.values_list("method_id", flat=True))
    forbidden = {"copy_paste", "pbe_a", "pbe_b", "pbe", "paint", "outputs/", "blinding-experiment", "blinding-study"}
    for method in methods:
        forbidden |= {method.family, method.identity, method.identity[:12]}
        if method.checkpoint:
            forbidden |= {method.checkpoint, method.checkpoint.rsplit("/", 1)[-1]}
        if method.checkpoint_hash:
            forbidden |= {method.checkpoint_hash, method.checkpoint_hash[:12]}
    forbidden |= set(Sample.objects.values_list("sample_id", flat=True))
    for name in Output.objects.filter(method__in=methods).values_list("image", flat=True):
        forbidden |= {name, name.rsplit("/", 1)[-1].rsplit(".", 1)[0]}
    for path in TrialImage.objects.filter(trial__rater__study=study).values_list("path", flat=True):
        forbidden |= {path, path.rsplit("/", 1)[-1].rsplit(".", 1)[0]}
    assert "cat-face" in forbidden
    forbidden = {term.lower() for term in forbidden if term}
    # Random tokens the server issued are blanked first: a random string may contain "pbe".
    issued = {study.token}
    issued |= set(Rater.objects.filter(study=study).values_list("token", flat=True))
    issued |= set(Trial.objects.filter(rater__study=study).values_list("token", flat=True))
    issued |= set(TrialImage.objects.filter(trial__rater__study=study).values_list("token", flat=True))

    image_url = re.compile(rf"^/r/{re.escape(study.token)}/i/([A-Za-z0-9_-]+)$")
    seen_candidate_urls = set()
    method_sequences = []
    for page, recorder, trials in sessions:
        texts = []
        for request in recorder.requests:
            texts.append(request.url)
            texts += [f"{k}: {v}" for k, v in request.all_headers().items()]
            if request.method == "POST":  # the form posts say where they come from (CSRF needs it)
                assert request.all_headers().get("origin") == live_server.url
        image_headers, image_request_headers = set(), set()
        png = {}
        for index, response in enumerate(recorder.responses):
            headers = response.all_headers()
            texts.append(response.url)
            texts += [f"{k}: {v}" for k, v in headers.items()]
            body = recorder.bodies[index]
            content_type = headers.get("content-type", "")
            if content_type.startswith(("text/", "application/javascript")):
                texts.append(body.decode("utf-8"))
            path = urlsplit(response.url).path
            if "/i/" in path:
                assert image_url.match(path), path
                assert response.status == 200 and content_type == "image/png"
                assert "content-disposition" not in headers and "last-modified" not in headers
                image_headers.add(tuple(sorted((k, v) for k, v in headers.items()
                                               if k not in ("content-length", "date"))))
                image_request_headers.add(tuple(sorted(response.request.all_headers().items())))
                png[path] = png_chunks(body)
        # Every image is served with the same headers, asked for with the same headers.
        assert len(image_headers) == 1, image_headers
        assert len(image_request_headers) == 1, image_request_headers
        assert "referer" not in dict(next(iter(image_request_headers)))
        # Nothing names a method or a sample, in URLs, headers or pages.
        scrub = set(issued)
        for text in texts:
            scrub |= set(re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', text))
            scrub |= set(re.findall(r"(?:^|[;,:]\s*)(?:csrftoken|evalsite_rater)=([^;,\s]+)", text))
        scrub = sorted(scrub, key=len, reverse=True)
        for text in texts:
            for value in scrub:
                text = text.replace(value, "")
            text = text.lower()
            leaked = sorted(term for term in forbidden if term in text)
            assert not leaked, f"{leaked} in {text[:300]!r}"

        request_paths = [urlsplit(request.url).path for request in recorder.requests]
        for view, values in trials:
            trial = assert_stored_as_shown(view, values, criteria)
            candidates = view["candidates"]
            # Same URL shape for every image, a new URL for every image of every trial.
            for url in candidates + [view["plain"], view["outlined"], view["reference"]]:
                assert image_url.match(url), url
                assert url in png, f"{url} was not loaded"
            assert len({len(url) for url in candidates}) == 1
            assert not seen_candidate_urls & set(candidates)
            seen_candidate_urls |= set(candidates)
            # PNG: no text, time or EXIF chunks; the same header and extra chunks for every
            # candidate of the trial (so the same width and height).
            for url in candidates:
                kinds = {kind for kind, _ in png[url]}
                assert kinds <= PNG_ALLOWED, (url, kinds)
            assert len({png[url][0][1] for url in candidates}) == 1  # IHDR
            assert len({tuple(c for c in png[url] if c[0] != b"IDAT") for url in candidates}) == 1
            width = int.from_bytes(png[candidates[0]][0][1][:4], "big")
            height = int.from_bytes(png[candidates[0]][0][1][4:8], "big")
            assert (width, height) == (experiment.resolution, experiment.resolution)
            # The browser asks for the candidates in slot order (A first), whichever method is where.
            asked = [path for path in request_paths[view["requested_from"]:] if path in set(candidates)]
            assert asked[:len(candidates)] == candidates
            slot_methods = dict(Candidate.objects.filter(pk__in=trial.slot_order).values_list("pk", "method__key"))
            method_sequences.append(tuple(slot_methods[pk] for pk in trial.slot_order))

    assert len(method_sequences) == 12
    assert len(set(method_sequences)) > 1
    assert len({sequence[0] for sequence in method_sequences}) > 1  # slot A holds different methods
    assert Rater.objects.filter(study=study, finished_at__isnull=False).count() == 2


# --- 6. On a phone -----------------------------------------------------------------------------


def test_on_a_phone_the_trial_fits_the_screen_and_answers_by_tapping(live_server, browser, finished_experiment):
    study = study_create(name="phone", experiment=finished_experiment(), ratings_per_pair=1, trials_per_rater=1,
                         attention_checks=0, completion_code="TAP-1", live=True)
    page = new_page(browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    enter_and_consent(page, live_server, study)
    # Nothing wider than the screen, and the candidates stacked in one column, each as wide as it.
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    boxes = [page.locator(".candidate").nth(i).bounding_box() for i in range(page.locator(".candidate").count())]
    assert len(boxes) == 3 and len({round(b["x"]) for b in boxes}) == 1
    assert all(b["width"] > 300 for b in boxes)
    # Every scale choice is a tap target of a usable size.
    spans = page.locator("#trial-form .row label span")
    assert all(box["height"] >= 32 and box["width"] >= 32
               for box in (spans.nth(i).bounding_box() for i in range(spans.count())))
    view = shown(page)
    values = some_values(view["rows"], seed=5)
    for name in view["rows"]:
        page.locator(f"#trial-form input[name='{name}'][value='{values[name]}'] + span").tap()
    navigate(page, lambda: page.locator("#submit-trial").tap())
    assert page.text_content("#completion-code") == "TAP-1"
    assert_stored_as_shown(view, values, list(study.criteria.values_list("key", flat=True)))
