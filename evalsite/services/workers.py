"""Which workers are alive. Each worker process reports on a row every heartbeat interval
(on the database's clock); a worker that stopped reporting for three intervals is gone.
A ping over the broker is the second opinion, for workers that cannot reach the row."""
from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models.functions import Now

from evalsite.models import Worker

log = logging.getLogger(__name__)


def alive_window() -> timedelta:
    return timedelta(seconds=3 * settings.EVALSITE_HEARTBEAT_SECONDS)


def worker_report(*, name: str, queues: str, device: str = "") -> None:
    updated = Worker.objects.filter(name=name).update(seen_at=Now(), queues=queues, device=device)
    if not updated:
        Worker.objects.bulk_create(
            [Worker(name=name, queues=queues, device=device, started_at=Now(), seen_at=Now())], ignore_conflicts=True
        )


def worker_started(*, name: str, queues: str, device: str = "") -> None:
    Worker.objects.filter(name=name).delete()
    worker_report(name=name, queues=queues, device=device)


def worker_gone(*, name: str) -> None:
    Worker.objects.filter(name=name).delete()


def workers_alive() -> list[Worker]:
    return list(Worker.objects.filter(seen_at__gte=Now() - alive_window()).order_by("name"))


def workers_answering_ping(timeout: float = 1.0) -> list[str]:
    """Names of workers that answer a broadcast ping; [] when none does or the broker
    cannot broadcast."""
    from evalsite.celery import app

    try:
        replies = app.control.ping(timeout=timeout) or []
    except Exception:
        log.debug("ping over the broker failed", exc_info=True)
        return []
    return sorted(name for reply in replies for name in reply)


def any_worker_alive() -> bool:
    return bool(workers_alive()) or bool(workers_answering_ping())
