"""A throwaway PostgreSQL cluster that accepts only TLS connections presenting a
client certificate signed by its own CA, so end-to-end tests can prove the
collector connects with every TLS option carried in DATABASE_URL."""

import functools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

OS_USER = "postgres"  # initdb refuses root; the server runs as this user
SUPERUSER = "postgres"
USER = "collector"
DBNAME = "market"
HOST = "127.0.0.1"

# One config for every certificate: `req` needs a distinguished-name section even
# when -subj gives the name, and our own extension sections keep the result
# independent of the system's openssl.cnf.
_OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
"""

# Only the superuser may use the unix socket (for setup); TCP must be TLS with a
# client certificate whose CN is the role name.
_PG_HBA = """\
local     all  postgres  trust
hostssl   all  all       127.0.0.1/32  cert
hostssl   all  all       ::1/128       cert
hostnossl all  all       0.0.0.0/0     reject
hostnossl all  all       ::/0          reject
"""


@dataclass
class TlsCluster:
    port: int
    directory: Path
    ca: Path
    client_cert: Path
    client_key: Path
    user: str = USER
    dbname: str = DBNAME

    def url(
        self,
        *,
        cert: bool = True,
        sslmode: str = "verify-full",
        port: int | None = None,
        **extra: str,
    ) -> str:
        """The database URL with every TLS option in its query string, so a child
        process given only DATABASE_URL connects the same way. `cert=False`
        leaves out the client certificate; `port` targets e.g. a proxy."""
        params = {"sslmode": sslmode, "sslrootcert": str(self.ca)}
        if cert:
            params |= {"sslcert": str(self.client_cert), "sslkey": str(self.client_key)}
        params |= extra
        query = urlencode(params, quote_via=quote, safe="/")
        return (
            f"postgres://{quote(self.user)}@{HOST}:{port or self.port}/"
            f"{quote(self.dbname)}?{query}"
        )

    def psql(self, sql: str) -> str:
        """Run SQL as the superuser over the unix socket (which skips TLS), for
        test setup and inspection; returns unaligned, tuples-only output."""
        return _psql(self.directory, self.port, sql)


def available() -> str | None:
    """None when a cluster can be built here, else the reason to skip."""
    if os.geteuid() != 0:
        return "needs root (to run the server as the postgres OS user)"
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        return f"no {OS_USER!r} OS user"
    for tool in ("runuser", "openssl"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    bindir = _bindir()
    for tool in ("initdb", "pg_ctl", "psql"):
        if bindir is None or not (bindir / tool).exists():
            return f"PostgreSQL's {tool} not found"
    return None


@contextmanager
def tls_cluster() -> Iterator[TlsCluster]:
    """Build and start a cluster in a fresh directory; always stop it and remove
    the directory afterwards, even when building fails half-way."""
    # Not pytest's tmp_path: /tmp/pytest-of-root is 0700, so the postgres user
    # could not reach a cluster inside it.
    directory = Path(tempfile.mkdtemp(prefix="pgtls-"))
    data = directory / "data"
    try:
        directory.chmod(0o755)
        _chown(directory)  # initdb and the server write here (data, socket, log)
        ca, client_cert, client_key = _make_certificates(directory / "tls")
        # --no-sync: a throwaway cluster need not wait for the disk.
        initdb = [_tool("initdb"), "-D", data, "-U", SUPERUSER, "--auth=trust"]
        created = _run(
            "runuser", "-u", OS_USER, "--", *initdb, "--no-sync", cwd=directory
        )
        if created.returncode != 0:
            raise RuntimeError(f"initdb failed: {created.stdout}{created.stderr}")
        (data / "pg_hba.conf").write_text(_PG_HBA)
        port = _start(directory)
        _psql(directory, port, f"CREATE ROLE {USER} LOGIN;")
        _psql(directory, port, f"CREATE DATABASE {DBNAME} OWNER {USER};")
        yield TlsCluster(port, directory, ca, client_cert, client_key)
    finally:
        if (data / "postmaster.pid").exists():  # even if `start` gave up waiting
            _pg_ctl(directory, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(directory, ignore_errors=True)


def _start(directory: Path, attempts: int = 3) -> int:
    """Start on a free port; another process may grab the port between our probe
    and the server's bind, so try a few."""
    conf = directory / "data" / "postgresql.conf"
    initial = conf.read_text()
    log = directory / "log"
    tls = directory / "tls"
    for _ in range(attempts):
        port = _free_port()
        settings = {
            "listen_addresses": f"'{HOST}'",
            "port": str(port),
            "unix_socket_directories": f"'{directory}'",
            "ssl": "on",
            "ssl_cert_file": f"'{tls / 'server.crt'}'",
            "ssl_key_file": f"'{tls / 'server.key'}'",
            "ssl_ca_file": f"'{tls / 'ca.crt'}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            "max_connections": "40",
        }
        # Appended to what initdb wrote: later lines win.
        conf.write_text(
            initial + "".join(f"{key} = {value}\n" for key, value in settings.items())
        )
        logged = log.stat().st_size if log.exists() else 0
        result = _pg_ctl(directory, "-l", log, "-w", "-t", "30", "start", check=False)
        if result.returncode == 0:
            return port
        if b"could not bind" not in log.read_bytes()[logged:]:
            break
    raise RuntimeError(
        f"PostgreSQL did not start: {result.stdout}{result.stderr}\n"
        + log.read_text(errors="replace")
    )


def _make_certificates(tls: Path) -> tuple[Path, Path, Path]:
    """A CA, a server certificate valid for 127.0.0.1 and localhost (so that
    verify-full passes), and a client certificate for USER; returns the paths
    the client needs: CA, client certificate, client key."""
    tls.mkdir(mode=0o755)
    cnf = tls / "openssl.cnf"
    cnf.write_text(_OPENSSL_CNF)
    # P-256 keys: generated instantly, unlike RSA.
    new = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    new += ["-config", cnf]
    ca_key, ca_crt = tls / "ca.key", tls / "ca.crt"
    ca = ["-x509", "-extensions", "ca", "-days", "2", "-subj", "/CN=pgcluster CA"]
    _openssl("req", *new, *ca, "-keyout", ca_key, "-out", ca_crt)
    sign = ["-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-days", "2"]
    sign += ["-extfile", cnf]
    for name, cn in (("server", HOST), ("client", USER)):
        key, csr, crt = (tls / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        _openssl("req", *new, "-subj", f"/CN={cn}", "-keyout", key, "-out", csr)
        _openssl("x509", "-req", *sign, "-extensions", name, "-in", csr, "-out", crt)
    # The server and libpq both refuse a key that others can read. The client key
    # stays root's: the test process and the collector it starts run as root.
    for path in tls.iterdir():
        path.chmod(0o600 if path.suffix == ".key" else 0o644)
    _chown(tls / "server.key")
    return ca_crt, tls / "client.crt", tls / "client.key"


def _psql(directory: Path, port: int, sql: str) -> str:
    # SQL on stdin rather than -c: statements then run one by one, each in its own
    # transaction, so CREATE DATABASE is allowed.
    socket_ = ["-h", directory, "-p", str(port), "-U", SUPERUSER, "-d", "postgres"]
    flags = ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"]
    result = _run(_tool("psql"), *socket_, *flags, input=sql)
    if result.returncode != 0:
        raise RuntimeError(f"psql failed on {sql!r}: {result.stderr}")
    return result.stdout


def _pg_ctl(
    directory: Path, *args: str | Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """pg_ctl as the postgres user, from a directory it may enter (elsewhere it
    fails with "could not identify current directory")."""
    cmd = ["runuser", "-u", OS_USER, "--", _tool("pg_ctl"), "-D", directory / "data"]
    result = _run(*cmd, *args, cwd=directory)
    if check and result.returncode != 0:
        raise RuntimeError(f"pg_ctl failed: {result.stdout}{result.stderr}")
    return result


def _run(
    *cmd: str | Path, input: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    # Without libpq's PG* variables, which could steer the tools to another server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run(
        [str(part) for part in cmd],
        input=input,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _openssl(*args: str | Path) -> None:
    result = _run("openssl", *args)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr}")


def _chown(path: Path) -> None:
    entry = pwd.getpwnam(OS_USER)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _bindir() -> Path | None:
    """PostgreSQL's own bin directory: the server binaries are not all on PATH."""
    try:
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        out = ""
    if out and Path(out).is_dir():
        return Path(out)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@functools.cache
def _tool(name: str) -> str:
    bindir = _bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL binaries not found")
    return str(bindir / name)
