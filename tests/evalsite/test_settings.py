"""Settings come from the environment only, with embedded defaults that need nothing."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; from django.conf import settings; django.setup(); "
    "print(json.dumps({'engine': settings.DATABASES['default']['ENGINE'], "
    "'db': str(settings.DATABASES['default']['NAME']), 'broker': settings.CELERY_BROKER_URL, "
    "'media': str(settings.MEDIA_ROOT), 'debug': settings.DEBUG, 'weights': str(settings.EVALSITE_WEIGHTS_DIR)}))"
)
OURS = {"DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT", "DJANGO_SECRET_KEY", "DJANGO_DEBUG",
        "EVALSITE_VAR_DIR", "EVALSITE_WEIGHTS_DIR", "EVALSITE_BROKER_DIR", "DJANGO_SECURE", "DJANGO_ALLOWED_HOSTS"}


def probe(**env):
    base = {k: v for k, v in os.environ.items() if k not in OURS}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
        env={**base, "DJANGO_SETTINGS_MODULE": "evalsite.settings", **env},
    )
    return result


def test_no_environment_means_sqlite_and_the_embedded_broker(tmp_path):
    result = probe(EVALSITE_VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["db"] == str(tmp_path / "evalsite.sqlite3")
    assert values["broker"] == "filesystem://localhost/"
    assert values["media"] == str(tmp_path / "media")
    assert values["weights"] == str(tmp_path / "models")


def test_environment_overrides(tmp_path):
    result = probe(
        DATABASE_URL="postgresql://u@db.example:5433/evals", CELERY_BROKER_URL="redis://cache:6379/2",
        MEDIA_ROOT=str(tmp_path / "m"), DJANGO_DEBUG="0", DJANGO_SECRET_KEY="s" * 50,
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["engine"] == "django.db.backends.postgresql" and values["db"] == "evals"
    assert values["broker"] == "redis://cache:6379/2" and values["media"] == str(tmp_path / "m")
    assert values["debug"] is False


KEY_PROBE = (
    "import hashlib, django; from django.conf import settings; django.setup(); "
    "print(settings.DEBUG, hashlib.sha256(settings.SECRET_KEY.encode()).hexdigest())"
)


def test_debug_is_off_by_default_and_a_random_key_is_made_once_and_kept(tmp_path):
    base = {k: v for k, v in os.environ.items() if k not in OURS}
    env = {**base, "DJANGO_SETTINGS_MODULE": "evalsite.settings", "EVALSITE_VAR_DIR": str(tmp_path)}

    def key():
        result = subprocess.run([sys.executable, "-c", KEY_PROBE], cwd=ROOT, capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr
        debug, digest = result.stdout.split()
        assert debug == "False"
        return digest

    first = key()
    key_file = tmp_path / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert len(key_file.read_text().strip()) >= 50
    assert key() == first  # reused, so sessions survive a restart
    other = tmp_path / "other"
    env["EVALSITE_VAR_DIR"] = str(other)
    assert key() != first  # random per installation


def test_check_deploy_passes_with_the_documented_production_settings(tmp_path):
    base = {k: v for k, v in os.environ.items() if k not in OURS}
    env = {
        **base,
        "EVALSITE_VAR_DIR": str(tmp_path),
        "DJANGO_SECURE": "1",
        "DJANGO_ALLOWED_HOSTS": "evalsite.example.org",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://evalsite.example.org",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    probe_result = subprocess.run(
        [sys.executable, "-c", "import django; from django.conf import settings; django.setup(); "
         "print(settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, settings.SESSION_COOKIE_HTTPONLY, "
         "settings.CSRF_COOKIE_HTTPONLY, settings.SECURE_SSL_REDIRECT)"],
        cwd=ROOT, capture_output=True, text=True, env={**env, "DJANGO_SETTINGS_MODULE": "evalsite.settings"},
    )
    assert probe_result.stdout.split() == ["True"] * 5, probe_result.stderr


def test_a_malformed_value_is_named():
    result = probe(DJANGO_DEBUG="maybe")
    assert result.returncode != 0 and "DJANGO_DEBUG='maybe'" in result.stderr
    result = probe(EVALSITE_STALE_SECONDS="15", EVALSITE_HEARTBEAT_SECONDS="10")
    assert result.returncode != 0 and "EVALSITE_STALE_SECONDS (15) must be at least twice" in result.stderr


def test_no_module_outside_settings_reads_the_environment():
    offenders = []
    for path in list((ROOT / "evalsite").rglob("*.py")) + list((ROOT / "generators").rglob("*.py")):
        if path.name == "settings.py":
            continue
        text = path.read_text()
        if "os.environ" in text or "os.getenv" in text:
            offenders.append(str(path.relative_to(ROOT)))
    # The Celery entry points only default DJANGO_SETTINGS_MODULE, as Django's own do.
    allowed = {"evalsite/celery.py", "evalsite/wsgi.py", "evalsite/worker_process.py"}
    assert sorted(set(offenders) - allowed) == []
