"""A real PostgreSQL server for tests: initdb'd in a temp dir, run as an unprivileged user on a free
loopback port, one fresh database per test. Import the fixtures into a test module:
``from pg_server import pg_server, pg_url  # noqa: F401``.

Skips (with the reason) when PostgreSQL or psycopg is missing; fails under CI=true, where .ci/run
installs Debian's ``postgresql`` package.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason + " - but CI=true, where it must be present")
    pytest.skip(reason)


def _bindir() -> Path | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(d, "initdb").is_file() and Path(d, "postgres").is_file():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One PostgreSQL cluster: ``url(db)``, ``new_database()``, ``stop()``, ``start()``, ``restart()``."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="facefeat-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            import pwd

            user = "postgres" if _has_user("postgres") else "nobody"
            pw = pwd.getpwnam(user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            os.chmod(self.root, 0o755)
            self.as_user = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"]
        subprocess.run(self.as_user + [str(bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "facefeat",
                                       "--no-sync", "-E", "UTF8"], check=True, capture_output=True, timeout=120)
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.as_user + [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                            "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                            "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=open(self.root / "server.log", "ab"))
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("PostgreSQL did not start: " + (self.root / "server.log").read_text()[-2000:])
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, db: str) -> str:
        return f"postgresql://facefeat@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="session")
def pg_server():
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _skip_or_fail("needs psycopg (pip install 'facefeat[postgres]')")
    bindir = _bindir()
    if bindir is None:
        _skip_or_fail("needs a PostgreSQL server (Debian: apt-get install postgresql)")
    server = PgServer(bindir)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty database on the test server."""
    if pg_server.proc is None:
        pg_server.start()
    return pg_server.new_database()
