"""Human-study tests build on the shared `finished_experiment` fixture (tests/conftest.py)."""
import pytest


@pytest.fixture(autouse=True)
def no_heartbeat_thread_writes(settings):
    """As in tests/evalsite: in-process jobs inside the test's transaction need no heartbeat thread."""
    settings.EVALSITE_HEARTBEAT_SECONDS = 3600
