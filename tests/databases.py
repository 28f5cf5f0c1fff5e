"""Real databases for storage tests: a fresh database per test on SQLite, MariaDB and PostgreSQL, and private
server instances that a fault test may stop and start without disturbing the shared servers.

Shared servers default to the loopback ones CI starts (.ci/run); point elsewhere with AI_SERVICE_TEST_MYSQL_URL and
AI_SERVICE_TEST_POSTGRES_URL. A missing server or binary is a failure under CI=true and a skip elsewhere.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

BACKENDS = ("sqlite", "mariadb", "postgresql")
#: The server backends (every backend but the embedded one).
SERVERS = ("mariadb", "postgresql")
MYSQL_URL = os.environ.get("AI_SERVICE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
POSTGRES_URL = os.environ.get("AI_SERVICE_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")
#: How long a private server may take to initialize or start, and a shared one to answer (s).
START_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 5
POSTGRES_BIN = Path(os.environ.get("AI_SERVICE_TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
MARIADBD = Path(os.environ.get("AI_SERVICE_TEST_MARIADBD", "/usr/sbin/mariadbd"))
MARIADB_INSTALL_DB = Path(os.environ.get("AI_SERVICE_TEST_MARIADB_INSTALL_DB", "/usr/bin/mariadb-install-db"))


def in_ci() -> bool:
    """CI must run every database test: there a missing server is a failure, not a skip."""
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str, kind: str = "database") -> NoReturn:
    """Missing server, binary or browser: a failure in CI, a skip on a developer machine."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: {kind} tests must run; see .ci/run)")
    pytest.skip(reason)


def server_url(backend: str) -> str:
    """The shared server's admin URL for a backend (mariadb or postgresql)."""
    return {"mariadb": MYSQL_URL, "postgresql": POSTGRES_URL}[backend]


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_name() -> str:
    """A name no other test (or concurrent helper) uses."""
    return f"ai_test_{secrets.token_hex(6)}"


def _admin_engine(url: str | URL) -> tuple[Engine, str]:
    """An autocommit engine on the server's admin database (CREATE/DROP DATABASE run outside transactions)."""
    parsed = make_url(url)
    args = {"connect_timeout": CONNECT_TIMEOUT_S}
    engine = create_engine(parsed, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args=args)
    return engine, parsed.get_backend_name()


def create_database(url: str, name: str) -> str:
    """CREATE DATABASE `name` on the server of `url`; returns the URL of the new database."""
    engine, kind = _admin_engine(url)
    try:
        with engine.connect() as connection:
            if kind == "mysql":
                connection.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
            else:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str, name: str) -> None:
    """DROP DATABASE `name`, closing whatever connections a failed test left open (PostgreSQL: WITH FORCE)."""
    engine, kind = _admin_engine(url)
    try:
        with engine.connect() as connection:
            if kind == "mysql":
                connection.execute(text("SET SESSION lock_wait_timeout = 30"))
                connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
            else:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def check_server(url: str, backend: str) -> None:
    """Fail (CI) or skip when the shared server does not answer."""
    engine, _ = _admin_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any reason it cannot be used means the same here
        unavailable(
            f"{backend} server at {make_url(url).render_as_string(hide_password=True)} unreachable: "
            f"{str(error).splitlines()[0][:200]}"
        )
    finally:
        engine.dispose()


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of its own for one test, dropped afterwards (SQLite: a file under tmp_path)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / f'{database_name()}.db'}"
        return
    url = server_url(backend)
    check_server(url, backend)
    name = database_name()
    database = create_database(url, name)
    try:
        yield database
    finally:
        drop_database(url, name)


def wait_until_connectable(
    url: str | URL, timeout: float, alive: Callable[[], bool] | None = None, log: Path | None = None
) -> None:
    """Poll until `url` accepts a connection and answers SELECT 1; bounded by `timeout` (and by `alive`)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            break
        engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 2})
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return
        except Exception as error:  # noqa: BLE001 - not up yet
            last = str(error).splitlines()[0][:200]
        finally:
            engine.dispose()
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"server at {url} not ready within {timeout:g} s ({last})\n{tail}")


def _run(command: list[str], timeout: float, what: str) -> None:
    """A set-up command that must succeed; its output goes into the failure message."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{what} failed ({done.returncode}): {' '.join(command)}\n{done.stdout}\n{done.stderr}")


class PrivateServer:
    """A MariaDB or PostgreSQL instance of one test's own (data and socket in a temporary directory, a free
    loopback port): stopping it, as fault tests do, never touches the shared servers other tests use.

    `url` names its database `test` (root, no password, over TCP); `stop()` and `start()` may repeat, on the same
    port; `close()` kills it and removes the directory.
    """

    def __init__(self, backend: str) -> None:
        if backend not in SERVERS:
            raise ValueError(backend)
        self.backend = backend
        self.port = free_port()
        self.as_postgres = backend == "postgresql" and os.geteuid() == 0
        self._check_binaries()
        # Not under pytest's tmp_path: its 0700 parents keep the postgres user out, and socket paths must be short.
        self.root = Path(tempfile.mkdtemp(prefix=f"ai-{backend[:2]}-"))
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.log = self.root / "server.log"
        self.process: subprocess.Popen | None = None
        driver = "mysql+pymysql" if backend == "mariadb" else "postgresql+psycopg"
        self.url = URL.create(
            driver, username="root", host="127.0.0.1", port=self.port, database="test"
        ).render_as_string(hide_password=False)
        self.sockets.mkdir()
        if self.as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")

    def _check_binaries(self) -> None:
        """Fail (CI) or skip when the server binaries are not installed."""
        if self.backend == "postgresql":
            needed = [POSTGRES_BIN / "initdb", POSTGRES_BIN / "postgres"]
            package = "postgresql"
        else:
            needed = [MARIADBD, MARIADB_INSTALL_DB]
            package = "mariadb-server"
        if self.as_postgres:
            needed.append(Path(shutil.which("runuser") or "/usr/sbin/runuser"))
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                unavailable(
                    "private postgresql server impossible as root without a postgres user (apt-get install postgresql)"
                )
        missing = [str(path) for path in needed if not path.exists()]
        if missing:
            unavailable(
                f"private {self.backend} server impossible: {', '.join(missing)} missing (apt-get install {package})"
            )

    def _as_owner(self, command: list[str]) -> list[str]:
        """PostgreSQL refuses to run as root: run it as the postgres user then."""
        return ["runuser", "-u", "postgres", "--", *command] if self.as_postgres else command

    # -- life cycle ------------------------------------------------------------------------------------------

    def initialize(self) -> PrivateServer:
        """Create the data directory, start the server, create the database `test`."""
        if self.backend == "postgresql":
            _run(
                self._as_owner(
                    [str(POSTGRES_BIN / "initdb"), "-D", str(self.data), "-U", "root", "-A", "trust", "-E", "UTF8"]
                    + ["--no-sync", "--no-instructions"]
                ),
                START_TIMEOUT_S,
                "initdb",
            )
        else:
            _run(
                [
                    str(MARIADB_INSTALL_DB),
                    "--no-defaults",
                    f"--datadir={self.data}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--skip-name-resolve",
                    *(["--user=root"] if os.geteuid() == 0 else []),
                ],
                START_TIMEOUT_S,
                "mariadb-install-db",
            )
        self.start()
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with engine.connect() as connection:
                if self.backend == "mariadb":
                    # --skip-name-resolve: TCP logins are matched by address, and install-db made root@localhost only.
                    connection.execute(text("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'"))
                    connection.execute(text("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION"))
                    connection.execute(text("CREATE DATABASE test CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"))
                else:
                    connection.execute(text("CREATE DATABASE test"))
        finally:
            engine.dispose()
        return self

    def start(self) -> None:
        """Start the server on its port (as a child of this process, so that it is reaped) and wait until it
        accepts connections."""
        if self.running():
            return
        owner: dict[str, object] = {}
        if self.backend == "postgresql":
            command = [
                str(POSTGRES_BIN / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.sockets),
                *"-c listen_addresses=127.0.0.1 -c max_connections=50 -c logging_collector=off".split(),
                # No fsync (speed), but every commit reaches the OS before it is acknowledged: a killed server
                # (stop(kill=True)) must keep what it confirmed, as a real one does.
                *"-c fsync=off -c full_page_writes=off -c synchronous_commit=on".split(),
            ]
            if self.as_postgres:  # PostgreSQL refuses to run as root
                owner = {"user": "postgres", "group": "postgres", "extra_groups": []}
        else:
            command = [
                str(MARIADBD),
                "--no-defaults",
                f"--datadir={self.data}",
                f"--port={self.port}",
                f"--socket={self.sockets / 'mysqld.sock'}",
                f"--pid-file={self.root / 'mysqld.pid'}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
                "--innodb-flush-log-at-trx-commit=2",  # written to the OS at commit: a killed server keeps it
                "--max-connections=100",
                *(["--user=root"] if os.geteuid() == 0 else []),
            ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, **owner)  # type: ignore[call-overload]
        wait_until_connectable(self.admin_url, START_TIMEOUT_S, self.running, self.log)

    @property
    def admin_url(self) -> URL:
        """Where set-up connects: MariaDB's unix socket (root@127.0.0.1 exists only once set up), PostgreSQL's
        maintenance database."""
        if self.backend == "mariadb":
            return URL.create(
                "mysql+pymysql", username="root", query={"unix_socket": str(self.sockets / "mysqld.sock")}
            )
        return make_url(self.url).set(database="postgres")

    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self, kill: bool = False) -> None:
        """Shut the server down (fast: open sessions are cut) or, with `kill`, crash it (SIGKILL); waits until gone."""
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            # PostgreSQL's backends first: a new postmaster refuses to start while they hold the old shared memory.
            for child in [*_children(self.process.pid), self.process.pid]:
                with suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
        else:
            # SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for every session); SIGTERM is MariaDB's.
            self.process.send_signal(signal.SIGINT if self.backend == "postgresql" else signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def close(self) -> None:
        """Kill the server whatever state it is in and remove its directory."""
        try:
            self.stop(kill=True)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _children(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    try:
        return [int(item) for item in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


@contextmanager
def private_server(backend: str) -> Iterator[PrivateServer]:
    """A started private server, killed and removed afterwards whatever the test did."""
    server = PrivateServer(backend)
    try:
        server.initialize()
        yield server
    finally:
        server.close()
