"""Worker start-up: import the model libraries (not the models) before the first job, and
start a side thread that sweeps stale jobs now and then, so that crash recovery needs no
separate beat process (several workers sweeping is harmless)."""
import logging
import threading

from celery.signals import worker_ready, worker_shutting_down
from django.conf import settings
from django.db import close_old_connections

log = logging.getLogger(__name__)
_stop = threading.Event()


@worker_ready.connect
def start_sweeper(**_):
    _import_model_libraries()
    _stop.clear()
    threading.Thread(target=_sweep_forever, name="evalsite-sweeper", daemon=True).start()


@worker_shutting_down.connect
def stop_sweeper(**_):
    _stop.set()


def _sweep_forever():
    from evalsite.services.jobs import jobs_recover

    while True:
        try:
            close_old_connections()
            requeued = jobs_recover()
            if requeued:
                log.warning("recovered jobs %s", requeued)
        except Exception:
            log.exception("stale-job sweep failed; will try again")
        if _stop.wait(settings.EVALSITE_SWEEP_SECONDS):
            return


def _import_model_libraries():
    """torch + diffusers take seconds to import; pay that at start-up, not in a job."""
    try:
        import generators.copy_paste  # noqa: F401
        import generators.pbe  # noqa: F401
    except Exception:
        log.exception("could not import the model libraries; jobs will report why")
