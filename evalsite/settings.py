"""Settings: the only module that reads the environment (12-factor).

With no environment at all the site runs on embedded defaults: SQLite under var/, the
kombu filesystem broker under var/broker, media under var/media.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from evalsite.queues import CPU_QUEUE, TASK_ROUTES

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: expected one of 1/0, true/false, yes/no, on/off")


def _env_number(name: str, default: float, cast=int):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return cast(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected a {cast.__name__}") from None


def _secret_key_file(var_dir: Path) -> str:
    """A random key made once into var/secret_key (mode 0600) and reused, so that sessions
    survive restarts without anyone choosing a key; several processes may race to make it."""
    path = var_dir / "secret_key"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        temp = var_dir / f".secret_key.{os.getpid()}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
        try:
            os.link(temp, path)  # fails when another process made it first: use theirs
        except FileExistsError:
            pass
        finally:
            os.unlink(temp)
    return path.read_text().strip()


VAR_DIR = Path(os.environ.get("EVALSITE_VAR_DIR") or BASE_DIR / "var")

DEBUG = _env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or _secret_key_file(VAR_DIR)
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",") if h] or [
    "localhost", "127.0.0.1", "[::1]",
]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# HTTPS (DJANGO_SECURE=1, behind a proxy that sets X-Forwarded-Proto): cookies only over
# HTTPS, HTTP redirected, HSTS. Without it (the demo, a laptop) plain HTTP works.
SECURE = _env_bool("DJANGO_SECURE", False)
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True  # no script of ours reads it; forms carry the token
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE
if SECURE:
    # Study pages run inside MTurk's iframe, where a SameSite=Lax CSRF cookie is not sent
    # with the rater's form posts; the token in each form still guards them.
    CSRF_COOKIE_SAMESITE = "None"
SECURE_SSL_REDIRECT = SECURE
if SECURE:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = _env_number("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "evalsite",
    "studies",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

if not DEBUG:
    # Collected static files are served by the site itself (runserver does it in DEBUG,
    # and with --insecure, which the demo uses).
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "evalsite.urls"
WSGI_APPLICATION = "evalsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# True on the embedded SQLite database under var/ (no DATABASE_URL): the demo may create
# its account there, never on a production database.
EMBEDDED_DATABASE = not os.environ.get("DATABASE_URL")
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'evalsite.sqlite3'}",
        # 0 = a connection per request or task. runserver (the demo) starts a thread per
        # request, where persistent connections pile up; gunicorn and workers may set it.
        conn_max_age=_env_number("DATABASE_CONN_MAX_AGE", 0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, CLI and worker processes share the file: WAL lets readers run beside the
    # writer, IMMEDIATE takes the write lock up front instead of failing mid-transaction.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not memory, so that worker processes started by tests see the test data.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-evalsite.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "experiment-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or VAR_DIR / "static")
# Before `collectstatic` has filled STATIC_ROOT, WhiteNoise serves from the apps' folders.
WHITENOISE_USE_FINDERS = not STATIC_ROOT.is_dir()
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or VAR_DIR / "media")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Celery ----------------------------------------------------------------------------
# "localhost" only because kombu warns about a URL without a host; the folder is below.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "filesystem://localhost/"
BROKER_DIR = Path(os.environ.get("EVALSITE_BROKER_DIR") or VAR_DIR / "broker")
# Longer than the longest job: Redis redelivers an unacked message only after this long.
# Crash recovery does not wait for it; the job-row sweep below re-queues silent jobs.
BROKER_VISIBILITY_TIMEOUT = _env_number("EVALSITE_BROKER_VISIBILITY_TIMEOUT", 6 * 3600)
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "polling_interval": 0.1,
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": BROKER_VISIBILITY_TIMEOUT}
CELERY_TASK_IGNORE_RESULT = True  # the job rows are the truth, not a result backend
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = CPU_QUEUE
CELERY_TASK_ROUTES = TASK_ROUTES
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Generation workers ----------------------------------------------------------------
# Where checkpoint paths in experiment files are resolved when they are relative.
EVALSITE_WEIGHTS_DIR = Path(os.environ.get("EVALSITE_WEIGHTS_DIR") or VAR_DIR / "models")
# "auto" = first CUDA device when there is one, else the CPU. One worker per GPU:
# start each with CUDA_VISIBLE_DEVICES=N (or EVALSITE_DEVICE=cuda:N).
EVALSITE_DEVICE = os.environ.get("EVALSITE_DEVICE") or "auto"
EVALSITE_HEARTBEAT_SECONDS = _env_number("EVALSITE_HEARTBEAT_SECONDS", 10.0, float)
# A running job whose heartbeat is older than this is taken to have lost its worker.
EVALSITE_STALE_SECONDS = _env_number("EVALSITE_STALE_SECONDS", 120.0, float)
EVALSITE_SWEEP_SECONDS = _env_number("EVALSITE_SWEEP_SECONDS", 30.0, float)
if EVALSITE_STALE_SECONDS < 2 * EVALSITE_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        f"EVALSITE_STALE_SECONDS ({EVALSITE_STALE_SECONDS:g}) must be at least twice "
        f"EVALSITE_HEARTBEAT_SECONDS ({EVALSITE_HEARTBEAT_SECONDS:g}), or live jobs look dead"
    )
# A job whose worker died this many times is marked failed instead of re-queued.
EVALSITE_MAX_ATTEMPTS = _env_number("EVALSITE_MAX_ATTEMPTS", 3)
