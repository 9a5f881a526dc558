import pytest

from django.db import connection

from tests.integration.process import STARTED
from tests.integration.proxy import TcpProxy


@pytest.fixture(autouse=True)
def no_collector_left_running():
    """A test that failed half-way must not leave its collector process writing
    into the next test's database."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def proxy():
    """A TCP proxy in front of the test database, for outages the test controls."""
    settings = connection.settings_dict
    proxy = TcpProxy(settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432))
    yield proxy.start()
    proxy.stop()
