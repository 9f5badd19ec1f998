"""A throwaway PostgreSQL for the tests: one cluster per session (initdb into a temporary folder, listening on
127.0.0.1 and a Unix socket only), an empty store per test (a fresh schema of one database). As root the server
runs as the OS user `postgres` (PostgreSQL refuses to run as root). Missing binaries or psycopg skip the PostgreSQL
half of the store tests; MAGISTER_REQUIRE_POSTGRES=1 (CI) makes that a failure instead."""

from __future__ import annotations

import glob
import itertools
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])

BACKENDS = ["sqlite", "postgres"]
on_both_backends = pytest.mark.parametrize("backend", BACKENDS)  # a test that takes `store` or `store_url`


def sqlite_only(why: str) -> Callable[[F], F]:
    """Keep one test of an `on_both_backends` module on SQLite (its PostgreSQL case is skipped, saying why)."""
    def mark(test: F) -> F:
        test.sqlite_only = why  # type: ignore[attr-defined]  # read by conftest's `store_url`
        return test
    return mark


def binaries() -> Path | None:
    """The folder with initdb and pg_ctl: on PATH, or Debian's newest /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # a symlink in /usr/local/bin: the folder with pg_ctl beside it
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(debian[-1]).parent if debian else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """A PostgreSQL server of its own, with one database, `magister`; `new_store()` is the URL of an empty store."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="magister-pg-"))  # not under pytest's 0700 tmp: `postgres` reads it
        self.data, self.socket, self.port = self.root / "data", self.root / "sock", _free_port()
        self.password = secrets.token_urlsafe(12)  # for TCP (127.0.0.1); the socket folder is the owner's alone
        self._names = itertools.count()
        self._as_root = os.geteuid() == 0
        try:
            self.socket.mkdir(mode=0o700)
            (self.root / "pw").write_text(self.password)
            if self._as_root:
                for path in (self.root, self.socket, self.root / "pw"):
                    shutil.chown(path, "postgres", "postgres")
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--pwfile", str(self.root / "pw"),
                      "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
            options = (f"-k {self.socket} -h 127.0.0.1 -p {self.port} -c fsync=off -c synchronous_commit=off "
                       "-c full_page_writes=off")
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o", options, "start")
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        try:
            import psycopg

            with psycopg.connect(self.url_of("postgres"), autocommit=True) as admin:
                admin.execute("CREATE DATABASE magister")
        except BaseException:
            self.stop()
            raise

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode:
            log = self.root / "log"
            raise RuntimeError(f"{tool} failed: {done.stderr.strip()} {log.read_text() if log.exists() else ''}")

    def url_of(self, database: str, schema: str | None = None) -> str:
        """Over the Unix socket (trusted); `schema`: the tables' schema, as the connection's search_path."""
        path = f"&options=-csearch_path%3D{schema}" if schema else ""
        return f"postgresql://postgres@/{database}?host={self.socket}&port={self.port}{path}"

    def tcp_url_of(self, database: str, schema: str | None = None, password: str | None = None) -> str:
        """Over TCP to 127.0.0.1, with a password, as a team's server would be reached."""
        path = f"?options=-csearch_path%3D{schema}" if schema else ""
        return f"postgresql://postgres:{password or self.password}@127.0.0.1:{self.port}/{database}{path}"

    def new_store(self, *, tcp: bool = False) -> str:
        """The URL of an empty store, one per test so that none sees another's rows: a new schema of the tests'
        database, named by the URL's search_path (CREATE SCHEMA takes a millisecond; CREATE DATABASE up to a
        second on a busy machine, and all of it is migrated the same way)."""
        import psycopg

        schema = f"t{next(self._names)}"
        with psycopg.connect(self.url_of("magister"), autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {schema}")
        return self.tcp_url_of("magister", schema) if tcp else self.url_of("magister", schema)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> Cluster:
    """Start one, or skip (fail, where MAGISTER_REQUIRE_POSTGRES=1) saying why not."""
    required = os.environ.get("MAGISTER_REQUIRE_POSTGRES") == "1"

    def unavailable(why: str) -> None:
        if required:
            pytest.fail(f"MAGISTER_REQUIRE_POSTGRES=1 but {why}", pytrace=False)
        pytest.skip(f"the PostgreSQL store is not tested: {why}")

    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install 'magister[postgres]')")
    bin_dir = binaries()
    if bin_dir is None:
        unavailable("no PostgreSQL server binaries (initdb) on PATH or in /usr/lib/postgresql/*/bin "
                    "(apt-get install postgresql)")
    if os.geteuid() == 0 and (shutil.which("runuser") is None or _no_user("postgres")):
        unavailable("running as root, and there is no OS user `postgres` (or no runuser) to run the server")
    for attempt in range(3):  # the free port may be taken before the server binds it
        try:
            return Cluster(bin_dir)  # type: ignore[arg-type]
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            if attempt == 2:
                unavailable(f"the server did not start: {error}")
    raise AssertionError("unreachable")


def _no_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return True
    return False
