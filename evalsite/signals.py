"""Worker start-up: import the model libraries (not the models) before the first job, and
start a side thread that reports this worker alive and sweeps stale jobs now and then, so
that crash recovery needs no separate beat process (several workers sweeping is harmless)."""
import logging
import threading
import time

from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings
from django.db import close_old_connections, connection

log = logging.getLogger(__name__)
_stop = threading.Event()
_identity = {}


@worker_ready.connect
def start_sweeper(sender=None, **_):
    _import_model_libraries()
    _identity.update(
        name=getattr(sender, "hostname", "") or "worker",
        queues=",".join(sorted(q.name for q in sender.task_consumer.queues)) if _has_queues(sender) else "",
    )
    _stop.clear()
    threading.Thread(target=_report_and_sweep_forever, name="evalsite-sweeper", daemon=True).start()


@worker_shutting_down.connect
def stop_sweeper(**_):
    _stop.set()
    if _identity:
        try:
            from evalsite.services.workers import worker_gone

            worker_gone(name=_identity["name"])
            connection.close()
        except Exception:
            log.warning("could not remove this worker's row; it expires by itself", exc_info=True)


def _has_queues(sender) -> bool:
    return getattr(getattr(sender, "task_consumer", None), "queues", None) is not None


def _report_and_sweep_forever():
    from evalsite.services.generator_cache import worker_device
    from evalsite.services.jobs import jobs_recover
    from evalsite.services.workers import worker_report, worker_started

    first, last_sweep = True, 0.0
    while True:
        try:
            close_old_connections()
            if first:
                worker_started(device=worker_device(), **_identity)
                first = False
            else:
                worker_report(device=worker_device(), **_identity)
            if time.monotonic() - last_sweep >= settings.EVALSITE_SWEEP_SECONDS:
                last_sweep = time.monotonic()
                requeued = jobs_recover()
                if requeued:
                    log.warning("recovered jobs %s", requeued)
        except Exception:
            log.exception("worker report or stale-job sweep failed; will try again")
        if _stop.wait(min(settings.EVALSITE_HEARTBEAT_SECONDS, settings.EVALSITE_SWEEP_SECONDS)):
            return


def _import_model_libraries():
    """torch + diffusers take seconds to import; pay that at start-up, not in a job."""
    try:
        import generators.copy_paste  # noqa: F401
        import generators.pbe  # noqa: F401
    except Exception:
        log.exception("could not import the model libraries; jobs will report why")
