import pytest

from django.db import connection

from tests.integration.proxy import TcpProxy


@pytest.fixture
def proxy():
    """A TCP proxy in front of the test database, for outages the test controls."""
    settings = connection.settings_dict
    proxy = TcpProxy(settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432))
    yield proxy.start()
    proxy.stop()
