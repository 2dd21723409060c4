"""The experiment page in a real browser (Debian's Chromium driven by Playwright) while a
real worker generates: the progress updates in place, and the grid fills in when done."""
import shutil

import pytest
from django.db import connections

from tests.conftest import outputs_of, require_tool

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser_page(tmp_path, monkeypatch):
    require_tool("chromium", "Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls this test
    # makes between browser steps are ordinary blocking calls, which Django then refuses.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield context.new_page()
        finally:
            context.close()
            # While Playwright's loop runs, asgiref gives this test's ORM calls their own
            # connection, which Django's test-database teardown would not close.
            connections.close_all()


def test_progress_updates_live_and_the_grid_fills_in(
    live_server, browser_page, make_experiment, media_root, start_worker, django_user_model
):
    django_user_model.objects.create_user("rita", password="a-long-password")
    experiment = make_experiment(seeds=(0, 1), batch_size=2, steps=8, resolution=128)
    page = browser_page
    page.goto(f"{live_server.url}/experiments/{experiment.pk}/")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", "a-long-password")
    page.click("button[type=submit]")
    page.wait_for_url(f"**/experiments/{experiment.pk}/")
    assert page.text_content("#progress-text").startswith("0 / 24 images")
    assert page.locator("img.output").count() == 0
    page.evaluate("window.notReloaded = true")

    start_worker()  # the experiment's jobs wait in the broker since it was created
    # Part of the work done, shown without a page load.
    page.wait_for_function(
        """() => window.notReloaded === true && (() => {
              const done = parseInt(document.getElementById('progress-text').textContent);
              return done > 0 && done < 24; })()""",
        timeout=120_000,
    )
    succeeded = page.locator("#methods td.succeeded").all_text_contents()
    assert sum(int(n) for n in succeeded) >= 1
    # Finished: the page reloads itself, and the grid shows every output of the first seed.
    page.wait_for_function("() => window.notReloaded === undefined", timeout=180_000)
    page.wait_for_load_state("networkidle")
    assert page.text_content("#progress-text").startswith("24 / 24 images")
    images = page.locator("img.output")
    assert images.count() == outputs_of(experiment).filter(seed=0).count() == 12
    for index in range(images.count()):  # lazy images load once scrolled to
        images.nth(index).scroll_into_view_if_needed()
    page.wait_for_function("() => [...document.querySelectorAll('img.output')].every((img) => img.complete)")
    widths = images.evaluate_all("(all) => all.map((img) => img.naturalWidth)")
    assert widths == [128] * 12  # every image was served (behind the login) and decoded
    # The reload waited for the metrics: the table, its plots and the stand-in note are there.
    assert page.locator("#results-table tbody tr").count() == 2
    assert page.locator("svg.metric-plot").count() == 2
    assert "demo features: not comparable to published numbers" in page.text_content("#results")

