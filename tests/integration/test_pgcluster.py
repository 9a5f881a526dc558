"""The throwaway TLS cluster admits only TLS connections with a client certificate,
and its URL carries every option a child process needs to connect."""

from collections.abc import Iterator
from contextlib import closing

import psycopg2
import pytest

from backend.env import POSTGRES_CLIENT_DEFAULTS, env_database
from tests.integration.pgcluster import TlsCluster, available, tls_cluster

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def cluster() -> Iterator[TlsCluster]:
    reason = available()
    if reason:
        pytest.skip(reason)
    with tls_cluster() as built:
        yield built


def test_it_accepts_tls_with_the_client_certificate(cluster):
    with closing(psycopg2.connect(cluster.url(connect_timeout="5"))) as conn:
        with conn.cursor() as cur:
            cur.execute("SHOW ssl")
            assert cur.fetchone() == ("on",)
            cur.execute(
                "SELECT current_user, current_database(), ssl, client_dn"
                " FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
            user, dbname, ssl, client_dn = cur.fetchone()
    assert (user, dbname, ssl) == ("collector", "market", True)
    assert "CN=collector" in client_dn


def test_it_refuses_a_connection_without_tls(cluster):
    with pytest.raises(psycopg2.OperationalError) as refused:
        psycopg2.connect(cluster.url(sslmode="disable", connect_timeout="5"))
    assert "pg_hba.conf rejects connection" in str(refused.value)
    assert "no encryption" in str(refused.value)


def test_it_refuses_tls_without_a_client_certificate(cluster):
    with pytest.raises(psycopg2.OperationalError) as refused:
        psycopg2.connect(cluster.url(cert=False, connect_timeout="5"))
    assert "requires a valid client certificate" in str(refused.value)


def test_it_hands_every_tls_option_to_django(cluster, monkeypatch):
    url = cluster.url(port=6543, connect_timeout="3", keepalives_idle="30")
    monkeypatch.setenv("DATABASE_URL", url)
    config = env_database("DATABASE_URL", "sqlite:///unused", conn_max_age=0)
    assert (config["HOST"], config["PORT"], config["NAME"], config["USER"]) == (
        "127.0.0.1",
        6543,
        "market",
        "collector",
    )
    assert config["OPTIONS"] == {
        **POSTGRES_CLIENT_DEFAULTS,  # bounds on every connection, unless given
        "sslmode": "verify-full",
        "sslrootcert": str(cluster.ca),
        "sslcert": str(cluster.client_cert),
        "sslkey": str(cluster.client_key),
        "connect_timeout": 3,  # dj-database-url makes numbers ints
        "keepalives_idle": 30,  # the URL's own value wins
    }
