"""A real PostgreSQL server for the tests: Debian's postgresql, in a temporary data directory.

`postgres` (session-scoped) starts one server on a free loopback port with initdb + pg_ctl,
as the `postgres` user when the tests run as root (the server refuses to run as root), and
stops it and removes its files at the end. `postgres.new_database()` makes an empty database
for one test and returns its SHOP_DATABASE_URL. `.ci/run` installs the package when missing;
without it these tests skip and say so.

Durability settings are off (fsync, synchronous_commit): the tests are about concurrency and
correctness, not crash safety, and this keeps the server quick on a shared machine.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gunicorn_server import free_port


def _binaries() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


class PostgresServer:
    """One running server; `new_database()` for each test that needs one."""

    def __init__(self, bin_dir: Path, root: Path, port: int, as_user: str | None) -> None:
        self.bin_dir, self.root, self.port, self.as_user = bin_dir, root, port, as_user
        self._names = itertools.count(1)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_user:
            command = ["runuser", "-u", self.as_user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)

    def start(self) -> None:
        data = self.root / "data"
        done = self.run("initdb", "-D", str(data), "-A", "trust", "-U", "shop", "--no-sync",
                        "-E", "UTF8", "--locale", "C")  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr}")
        options = (
            f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        done = self.run("pg_ctl", "-D", str(data), "-o", options, "-l",
                        str(self.root / "server.log"), "-w", "start")  # fmt: skip
        if done.returncode:
            log = (self.root / "server.log").read_text(errors="replace")
            raise RuntimeError(f"PostgreSQL did not start: {done.stderr}\n{log}")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "stop")

    def new_database(self) -> str:
        """Create an empty database; return its SHOP_DATABASE_URL."""
        name = f"shop_{os.getpid()}_{next(self._names)}"
        done = self.run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "shop", name)
        if done.returncode:
            raise RuntimeError(f"createdb failed: {done.stderr}")
        return f"postgresql://shop@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test session (skips, saying why, when not installed)."""
    bin_dir = _binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
    as_user = None
    root = Path(tempfile.mkdtemp(prefix="shop-postgres-"))
    if os.geteuid() == 0:
        as_user = "postgres"  # the server refuses to run as root
        user = pwd.getpwnam(as_user)
        os.chown(root, user.pw_uid, user.pw_gid)
    server = PostgresServer(bin_dir, root, free_port(), as_user)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
