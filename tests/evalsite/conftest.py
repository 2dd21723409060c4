import pytest


@pytest.fixture(autouse=True)
def no_heartbeat_thread_writes(settings):
    """Tests here run services in-process inside the test's open transaction; a heartbeat
    thread has its own connection and would wait on that transaction's row locks. Real
    workers never run inside an outer transaction (tests/e2e covers heartbeats)."""
    settings.EVALSITE_HEARTBEAT_SECONDS = 3600
