"""`make demo`'s command on the embedded defaults only (no DATABASE_URL, no broker URL),
from nothing to a served site with a finished experiment and a live human study."""
import csv
import io
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def test_demo_serves_a_finished_experiment_on_embedded_defaults(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT"}}
    env.update(EVALSITE_VAR_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1")
    log = tmp_path / "demo.log"
    began = time.monotonic()
    with open(log, "wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--port", "8765"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        address = None
        while time.monotonic() - began < 300 and address is None:
            assert demo.poll() is None, log.read_text()[-4000:]
            found = re.search(r"The site is at (http://127\.0\.0\.1:\d+/)", log.read_text())
            address = found.group(1) if found else None
            time.sleep(0.5)
        assert address, log.read_text()[-4000:]
        text = log.read_text()
        assert "all 24 images generated" in text and "sign in as 'demo'" in text
        assert "DreamPaint: 6 product fine-tuning(s) needed, 6 queued now" in text
        assert re.search(r"demo-table1: http://127\.0\.0\.1:\d+/experiments/\d+/", text)

        def get(path):
            for _ in range(50):  # runserver starts listening just after the message
                try:
                    return urllib.request.urlopen(address + path, timeout=10)
                except (ConnectionError, urllib.error.URLError):
                    time.sleep(0.2)
            raise AssertionError("site not reachable")

        login = get("accounts/login/")
        assert login.status == 200 and b"Sign in" in login.read()
        assert get("experiments/").url.endswith("/accounts/login/?next=/experiments/")
        # The demo study's rater link is printed beside the site's address, and it opens.
        rater_link = re.search(r"demo study rater link: +(http://127\.0\.0\.1:\d+/r/[\w-]+/)", text).group(1)
        assert re.search(r"demo study researcher page: +http://127\.0\.0\.1:\d+/studies/\d+/", text)
        assert rater_link.startswith(address)
        from http.cookiejar import CookieJar

        rater = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        consent = rater.open(rater_link, timeout=10)
        assert "/consent/" in consent.url and b"I agree, start" in consent.read()
        adapters = list((tmp_path / "var" / "models" / "dreampaint").glob("*/pytorch_lora_weights.safetensors"))
        assert len(adapters) == 6
        # DTC's Tables 1 and 2 fill in on the worker while the site is up: every row, their
        # images partly the demo experiment's own (by identity), their metrics computed.
        for name, rows in (("demo-table1", ("PBE_best", "DTC_addition", "DTC_cross-attention", "DTC_FiLM")),
                           ("demo-table2", ("PBE_CLIP_cls", "PBE+CLIP_all", "PBE+DINOv2", "PBE+DINOv2+perceptual", "DTC"))):
            for _ in range(240):
                table = subprocess.run([sys.executable, "manage.py", "export_results", name, "--format", "csv"], cwd=ROOT,
                                       env=env, capture_output=True, text=True).stdout
                scored = [row["method"] for row in csv.DictReader(io.StringIO(table))
                          if row["metric"] == "clip_score" and row["value"]]
                if len(scored) == len(rows):
                    break
                time.sleep(0.5)
            assert scored == list(rows), table
        outputs = list((tmp_path / "var" / "media" / "outputs").rglob("*.png"))
        assert len(outputs) == 24 + 12 + 18  # the tables generated only what demo had not
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=60)
    worker_log = (tmp_path / "var" / "demo" / "worker.log").read_text()
    assert "ready." in worker_log
    # The worker went down with the demo: no celery process is left on this var folder.
    leftover = subprocess.run(["pgrep", "-f", "demo@"], capture_output=True, text=True).stdout.split()
    assert not [pid for pid in leftover if Path(f"/proc/{pid}/environ").exists()
                and str(tmp_path) in Path(f"/proc/{pid}/environ").read_text(errors="replace")]
