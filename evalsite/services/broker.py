"""What the broker can tell about its queues."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def broker_queue_size(queue: str) -> int | None:
    """Messages waiting in `queue`; 0 when the queue does not exist; None when the broker
    cannot say (then callers must assume messages are still on their way)."""
    from kombu.exceptions import ChannelError

    from evalsite.celery import app

    try:
        with app.connection_for_read() as conn:
            return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:
        return 0
    except Exception:
        log.warning("cannot read the size of queue %r from the broker", queue, exc_info=True)
        return None
